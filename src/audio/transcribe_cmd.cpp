#include "audio/transcribe_cmd.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include "audio/decode.h"
#include "audio/microphone.h"
#include "audio/multipart.h"
#include "audio/transcript.h"
#include "audio/wer.h"
#include "client/assistant.h"
#include "client/cli.h"
#include "client/endpoint_auto.h"
#include "common/cli_error.h"
#include "common/http_client.h"
#include "common/json_read.h"

namespace clawbot::audio {
namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;

struct TranscribeCommand {
  client::ConfigSearch search;
  client::ClientOverrides overrides;
  std::string file;
  std::string format = "txt";
  std::string output;
  std::string language;
  std::string prompt;
  bool translate = false;
  bool words = false;
  std::string eval_dir;
  std::string input;  // --input FILE: through the live path
  bool realtime = false;
  bool live = false;  // the microphone
  int device = -1;
  bool list_devices = false;
};

class CommandError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CommandError("cannot read " + path.string());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The endpoint's base URL (model_endpoint may end in /v1).
std::string base_url(std::string endpoint) {
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  if (endpoint.ends_with("/v1")) endpoint.resize(endpoint.size() - 3);
  return endpoint;
}

// One node (or gateway) and the key clawbot.json gives; uploads go through it one at a time.
class AudioClient {
 public:
  explicit AudioClient(const client::ClientConfig& config) : config_(config) {
    const std::string endpoint =
        config.model_endpoint == "auto" ? client::resolve_auto_endpoint().url : config.model_endpoint;
    auto url = http::parse_url(base_url(endpoint));
    if (!url) throw CommandError("model_endpoint: " + url.error().message);
    http::ClientOptions options;
    options.connect_timeout = config.network_timeout;
    // The node answers once the whole file is transcribed: minutes for a long one.
    options.read_timeout =
        std::max<std::chrono::milliseconds>(config.network_timeout, std::chrono::minutes(30));
    options.tls_ca_file = config.tls_ca_file;
    const std::string key = config.resolved_api_key();
    if (!key.empty()) options.headers.emplace_back("Authorization", "Bearer " + key);
    options.headers.emplace_back("User-Agent", "clawbot-transcribe");
    client_ = std::make_unique<http::Client>(io_.get_executor(), *url, std::move(options));
  }

  // POSTs the form; retries (clawbot.json's retry_policy) when the node is busy (429, 503) or unreachable.
  http::Response post(const std::string& target, const FormBody& form) {
    for (int attempt = 0;; ++attempt) {
      std::optional<http::Result<http::Response>> result;
      asio::co_spawn(
          io_,
          [&]() -> asio::awaitable<void> {
            boost::beast::http::fields headers;
            headers.set(boost::beast::http::field::content_type, form.content_type);
            auto reader = co_await client_->send(boost::beast::http::verb::post, target, form.body, headers);
            if (!reader) {
              result = reader.error();
              co_return;
            }
            http::Response response;
            response.status = reader->status();
            response.headers = reader->headers();
            char scratch[16384];
            auto rest = co_await reader->read_rest(response.body, scratch, sizeof scratch);
            if (!rest) {
              result = rest.error();
              co_return;
            }
            result = std::move(response);
          },
          asio::detached);
      io_.restart();
      io_.run();
      const bool busy = *result && ((*result)->status == 429 || (*result)->status == 503);
      if ((*result && !busy) || attempt >= config_.retry_policy.max_retries) {
        if (!*result) throw CommandError(result->error().message);
        return std::move(result->value());
      }
      const auto delay = config_.retry_policy.delay(attempt + 1, 1.0);
      std::fprintf(
          stderr, "clawbot transcribe: %s; retrying in %.1f s\n",
          *result ? ("HTTP " + std::to_string((*result)->status)).c_str() : result->error().message.c_str(),
          static_cast<double>(delay.count()) / 1000.0);
      std::this_thread::sleep_for(delay);
    }
  }

 private:
  const client::ClientConfig& config_;
  asio::io_context io_;
  std::unique_ptr<http::Client> client_;
};

std::string api_format(const std::string& format) {
  if (format == "txt" || format == "text" || format == "md") return "text";
  return format;
}

// The node's error body's message, or the status.
std::string failure_text(const http::Response& response) {
  const auto parsed = json_read::parse(response.body);
  if (parsed) {
    const auto& body = *parsed.value;
    if (body.is_object() && body.contains("error") && body["error"].is_object() &&
        body["error"].contains("message") && body["error"]["message"].is_string())
      return "HTTP " + std::to_string(response.status) + ": " + body["error"]["message"].get<std::string>();
  }
  return "HTTP " + std::to_string(response.status);
}

std::string transcribe_file(AudioClient& client, const TranscribeCommand& cmd, const fs::path& file,
                            const std::string& format) {
  std::vector<std::pair<std::string, std::string>> fields = {{"model", "whisper-1"},
                                                             {"response_format", api_format(format)}};
  if (!cmd.language.empty()) fields.emplace_back("language", cmd.language);
  if (!cmd.prompt.empty()) fields.emplace_back("prompt", cmd.prompt);
  if (cmd.words) fields.emplace_back("timestamp_granularities[]", "word");
  if (cmd.words) fields.emplace_back("timestamp_granularities[]", "segment");
  const FormBody form = build_form(fields, file.filename().string(), read_file(file));
  const http::Response response =
      client.post(cmd.translate ? "/v1/audio/translations" : "/v1/audio/transcriptions", form);
  if (!response.ok()) throw CommandError(file.string() + ": " + failure_text(response));
  return response.body;
}

bool is_audio_file(const fs::path& path) {
  static const std::vector<std::string> extensions = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".oga"};
  return std::find(extensions.begin(), extensions.end(), path.extension().string()) != extensions.end();
}

// DIR's audio files with their references: FILE.txt beside each, or a Sphinx `transcription` file.
std::vector<std::pair<fs::path, std::string>> eval_set(const fs::path& dir) {
  std::map<std::string, std::string> sphinx;
  if (fs::exists(dir / "transcription"))
    for (auto& [id, words] : parse_sphinx_transcription(read_file(dir / "transcription"))) sphinx[id] = words;
  std::vector<std::pair<fs::path, std::string>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file() || !is_audio_file(entry.path())) continue;
    fs::path reference = entry.path();
    reference.replace_extension(".txt");
    if (fs::exists(reference)) {
      out.emplace_back(entry.path(), read_file(reference));
    } else if (auto it = sphinx.find(entry.path().stem().string()); it != sphinx.end()) {
      out.emplace_back(entry.path(), it->second);
    }
  }
  if (ec) throw CommandError("cannot list " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end());
  if (out.empty())
    throw CommandError(dir.string() +
                       " has no audio file with a reference (FILE.txt beside FILE.wav, or a Sphinx "
                       "'transcription' file)");
  return out;
}

int run_eval(AudioClient& client, const TranscribeCommand& cmd) {
  WordErrors total;
  std::printf("%-48s %6s %6s %7s\n", "file", "words", "errors", "WER");
  for (const auto& [file, reference] : eval_set(cmd.eval_dir)) {
    const std::string hypothesis = transcribe_file(client, cmd, file, "text");
    const WordErrors errors = word_errors(reference, hypothesis);
    total += errors;
    std::printf("%-48s %6zu %6zu %6.1f%%\n", file.filename().string().c_str(), errors.reference_words,
                errors.errors(), errors.rate() * 100);
  }
  std::printf("%-48s %6zu %6zu %6.1f%%  (%zu substitutions, %zu deletions, %zu insertions)\n", "total",
              total.reference_words, total.errors(), total.rate() * 100, total.substitutions, total.deletions,
              total.insertions);
  return 0;
}

// ------------------------------------------------------------------------------------------- live path

// The live WebSocket (GET /v1/audio/live): the file's audio sent in 100 ms frames (at speaking speed with
// --realtime), partials shown as they come, finals printed with their lag after the end of their speech.
class LiveClient {
 public:
  LiveClient(const client::ClientConfig& config, const TranscribeCommand& cmd) : config_(config), cmd_(cmd) {}

  using Source = std::function<std::optional<std::vector<float>>()>;

  int run(Source source) {
    const std::string endpoint =
        config_.model_endpoint == "auto" ? client::resolve_auto_endpoint().url : config_.model_endpoint;
    auto url = http::parse_url(base_url(endpoint));
    if (!url) throw CommandError("model_endpoint: " + url.error().message);
    if (url->is_https())
      throw CommandError("the live path speaks ws:// only for now; use an http:// endpoint");
    asio::co_spawn(io_, session(*url, std::move(source)), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
    io_.run();
    if (!error_.empty()) throw CommandError(error_);
    return 0;
  }

  const Transcript& transcript() const { return transcript_; }
  const std::vector<double>& lags() const { return lags_; }

 private:
  using Socket = websocket::stream<beast::tcp_stream>;

  asio::awaitable<void> session(http::Url url, Source source) {
    asio::ip::tcp::resolver resolver(io_);
    auto [resolve_error, endpoints] =
        co_await resolver.async_resolve(url.host, url.port, asio::as_tuple(asio::use_awaitable));
    if (resolve_error) {
      error_ = url.host + ": " + resolve_error.message();
      co_return;
    }
    Socket ws(io_);
    beast::get_lowest_layer(ws).expires_after(config_.network_timeout);
    auto [connect_error, connected] =
        co_await beast::get_lowest_layer(ws).async_connect(endpoints, asio::as_tuple(asio::use_awaitable));
    if (connect_error) {
      error_ = "cannot connect to " + url.origin() + ": " + connect_error.message();
      co_return;
    }
    beast::get_lowest_layer(ws).expires_never();
    ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    const std::string key = config_.resolved_api_key();
    ws.set_option(websocket::stream_base::decorator([key](websocket::request_type& request) {
      request.set(beast::http::field::user_agent, "clawbot-transcribe");
      if (!key.empty()) request.set(beast::http::field::authorization, "Bearer " + key);
    }));
    std::string target = url.path + "/v1/audio/live";
    if (!cmd_.language.empty()) target += "?language=" + cmd_.language;
    websocket::response_type answer;
    auto [handshake_error] = co_await ws.async_handshake(answer, url.host + ":" + url.port, target,
                                                         asio::as_tuple(asio::use_awaitable));
    if (handshake_error) {
      error_ = url.origin() + target + ": " +
               (answer.result_int() ? "HTTP " + std::to_string(answer.result_int()) + " " + answer.body()
                                    : handshake_error.message());
      co_return;
    }
    started_ = std::chrono::steady_clock::now();
    asio::co_spawn(io_, send(ws, std::move(source)), asio::detached);
    co_await receive(ws);
  }

  // Frames from `source`: a frame, an empty vector for "nothing yet" (asked again shortly), nullopt at the
  // end.
  asio::awaitable<void> send(Socket& ws, Source source) {
    asio::steady_timer pace(io_);
    std::string bytes;
    std::size_t sent = 0;
    ws.binary(true);
    for (;;) {
      std::optional<std::vector<float>> frame = source();
      if (!frame) break;
      if (frame->empty()) {
        pace.expires_after(std::chrono::milliseconds(20));
        co_await pace.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      bytes.resize(frame->size() * 2);
      for (std::size_t i = 0; i < frame->size(); ++i) {
        const auto v =
            static_cast<std::int16_t>(std::lround(std::clamp((*frame)[i], -1.0f, 1.0f) * 32767.0f));
        bytes[2 * i] = static_cast<char>(v & 0xFF);
        bytes[2 * i + 1] = static_cast<char>((v >> 8) & 0xFF);
      }
      sent += frame->size();
      if (cmd_.realtime) {  // the frame is sent once it has been "spoken"
        pace.expires_at(started_ + std::chrono::microseconds(static_cast<long long>(
                                       static_cast<double>(sent) * 1e6 / kSampleRate)));
        co_await pace.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      auto [ec, written] = co_await ws.async_write(asio::buffer(bytes), asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
    }
    ws.text(true);
    const std::string stop = R"({"type":"stop"})";
    co_await ws.async_write(asio::buffer(stop), asio::as_tuple(asio::use_awaitable));
  }

  asio::awaitable<void> receive(Socket& ws) {
    beast::flat_buffer buffer;
    for (;;) {
      buffer.clear();
      auto [ec, n] = co_await ws.async_read(buffer, asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (ec != websocket::error::closed) error_ = "the live session ended: " + ec.message();
        co_return;
      }
      const auto parsed = json_read::parse(beast::buffers_to_string(buffer.data()));
      if (!parsed || !parsed.value->is_object()) continue;
      const auto& m = *parsed.value;
      const std::string type = m.value("type", "");
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
      if (type == "partial") {
        std::fprintf(stderr, "  ... [%.2f s] %s\n", elapsed, m.value("text", "").c_str());
      } else if (type == "final") {
        const double start = m.value("start", 0.0);
        const double end = m.value("end", 0.0);
        Segment segment{start, end, m.value("text", ""), {}, 0, 0, 0, {}};
        std::printf("[%s --> %s] %s\n", clock_time(start, '.').c_str(), clock_time(end, '.').c_str(),
                    segment.text.c_str());
        std::fflush(stdout);
        if (cmd_.realtime) {
          lags_.push_back(elapsed - end);
          std::fprintf(stderr, "  (final at %.2f s, %.2f s after the end of its speech)\n", elapsed,
                       elapsed - end);
        }
        transcript_.segments.push_back(std::move(segment));
      } else if (type == "error") {
        std::fprintf(stderr, "clawbot transcribe: node: %s\n", m.value("message", "").c_str());
      } else if (type == "done") {
        transcript_.duration = m.value("audio_seconds", 0.0);
        co_await ws.async_close(websocket::close_code::normal, asio::as_tuple(asio::use_awaitable));
        co_return;
      }
    }
  }

  const client::ClientConfig& config_;
  const TranscribeCommand& cmd_;
  asio::io_context io_;
  std::chrono::steady_clock::time_point started_;
  std::string error_;
  Transcript transcript_;
  std::vector<double> lags_;
};

std::atomic<bool> interrupted = false;

void stop_recording(int) {
  interrupted = true;
}

int run_live(const client::ClientConfig& config, const TranscribeCommand& cmd) {
  LiveClient live(config, cmd);
  if (cmd.input.empty()) {  // the microphone, until Ctrl-C
    Microphone microphone(cmd.device);
    std::fprintf(stderr, "clawbot transcribe: listening on %s; Ctrl-C ends\n",
                 microphone.device_name().c_str());
    std::mutex mutex;
    std::deque<std::vector<float>> frames;
    std::atomic<bool> done = false;
    std::signal(SIGINT, stop_recording);
    // Recording goes on while the connection is slow or retried: frames wait here, none is lost.
    std::jthread recorder([&](std::stop_token stop) {
      while (!stop.stop_requested() && !interrupted) {
        std::vector<float> frame;
        microphone.read(frame);
        std::lock_guard lock(mutex);
        frames.push_back(std::move(frame));
      }
      done = true;
    });
    live.run([&]() -> std::optional<std::vector<float>> {
      std::lock_guard lock(mutex);
      if (frames.empty()) return done ? std::nullopt : std::optional(std::vector<float>{});
      std::vector<float> frame = std::move(frames.front());
      frames.pop_front();
      return frame;
    });
  } else {
    const std::vector<float> audio = decode_all(read_file(cmd.input), {.max_seconds = 24 * 3600});
    std::size_t at = 0;
    live.run([&]() -> std::optional<std::vector<float>> {
      if (at >= audio.size()) return std::nullopt;
      const std::size_t n = std::min<std::size_t>(kSampleRate / 10, audio.size() - at);
      std::vector<float> frame(audio.begin() + static_cast<std::ptrdiff_t>(at),
                               audio.begin() + static_cast<std::ptrdiff_t>(at + n));
      at += n;
      return frame;
    });
  }
  Transcript transcript = live.transcript();
  tidy(transcript);
  if (!live.lags().empty()) {
    std::vector<double> lags = live.lags();
    std::sort(lags.begin(), lags.end());
    std::fprintf(
        stderr,
        "clawbot transcribe: %zu final segments; lag after the end of speech: median %.2f s, max %.2f s\n",
        lags.size(), lags[lags.size() / 2], lags.back());
  }
  if (!cmd.output.empty()) {
    const auto format = parse_response_format(api_format(cmd.format));
    std::ofstream out(cmd.output, std::ios::binary | std::ios::trunc);
    out << render(transcript, format ? *format : ResponseFormat::text, {}).body;
    if (!out) throw CommandError("cannot write " + cmd.output);
  }
  return 0;
}

int run_transcribe(const TranscribeCommand& cmd) {
  try {
    const client::ClientConfig config = client::load_client_config(cmd.search, cmd.overrides);
    if (cmd.list_devices) {
      for (const auto& d : capture_devices())
        std::printf("%3d  %s%s (%d channels, %.0f Hz)\n", d.index, d.name.c_str(),
                    d.is_default ? " [default]" : "", d.channels, d.sample_rate);
      return 0;
    }
    if (!cmd.input.empty() || cmd.live) return run_live(config, cmd);
    AudioClient client(config);
    if (!cmd.eval_dir.empty()) return run_eval(client, cmd);
    if (cmd.file.empty()) return cli_error("clawbot transcribe", "name an audio FILE (or --eval DIR)", 2);
    const std::string text = transcribe_file(client, cmd, cmd.file, cmd.format);
    if (cmd.output.empty()) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      if (!text.empty() && text.back() != '\n') std::fputc('\n', stdout);
      return 0;
    }
    std::ofstream out(cmd.output, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) return cli_error("clawbot transcribe", "cannot write " + cmd.output, 1);
    std::fprintf(stderr, "clawbot transcribe: wrote %s\n", cmd.output.c_str());
    return 0;
  } catch (const std::exception& e) {
    return cli_error("clawbot transcribe", e.what(), 1);
  }
}

}  // namespace

std::function<std::optional<int>()> add_transcribe_command(CLI::App& app) {
  auto cmd = std::make_shared<TranscribeCommand>();
  auto* sub =
      app.add_subcommand("transcribe", "Speech to text on the node: an audio file, or --eval DIR (WER)");
  client::add_client_flags(*sub, cmd->search, cmd->overrides);
  sub->add_option("file", cmd->file, "Audio file (WAV, FLAC, MP3, OGG/Opus)");
  sub->add_option("--format", cmd->format, "txt, json, verbose_json, srt or vtt")
      ->capture_default_str()
      ->check(CLI::IsMember({"txt", "text", "md", "json", "verbose_json", "srt", "vtt"}));
  sub->add_option("-o,--output", cmd->output, "Write the transcript to this file instead of stdout");
  sub->add_option("--language", cmd->language, "Spoken language (ISO code, e.g. en); default: detected");
  sub->add_option("--prompt", cmd->prompt, "Text that came before, or words to spell the same way");
  sub->add_flag("--translate", cmd->translate, "Translate to English (/v1/audio/translations)");
  sub->add_flag("--words", cmd->words, "Word timestamps (with --format verbose_json)");
  sub->add_option(
      "--eval", cmd->eval_dir,
      "Directory of audio files with reference transcripts (FILE.txt, or a Sphinx 'transcription' "
      "file): prints the word error rate of each and in all");
  sub->add_option("--input", cmd->input,
                  "Audio file sent through the live path (the WebSocket a microphone would use)");
  sub->add_flag("--realtime", cmd->realtime, "With --input: send the audio at speaking speed; print the lag");
  sub->add_flag("--live", cmd->live, "Transcribe the microphone as you speak, until Ctrl-C");
  sub->add_option("--device", cmd->device,
                  "Microphone to record from (--list-devices; default: the system's)");
  sub->add_flag("--list-devices", cmd->list_devices, "List the devices that can record");
  return [=]() -> std::optional<int> {
    if (!sub->parsed()) return std::nullopt;
    return run_transcribe(*cmd);
  };
}

}  // namespace clawbot::audio
