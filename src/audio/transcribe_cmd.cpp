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
#include <random>
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
#include "audio/minutes.h"
#include "audio/multipart.h"
#include "audio/transcript.h"
#include "audio/wer.h"
#include "client/api_client.h"
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
  double resend_buffer_s = 600;  // audio kept for a reconnection to resend
  bool minutes = false;
  std::string minutes_endpoint;  // the chat model's, when not model_endpoint
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

// The live WebSocket (GET /v1/audio/live): the audio sent in 100 ms frames (at speaking speed with
// --realtime), partials shown as they come, finals printed with their lag after the end of their speech.
//
// The connection may drop (the node restarts, the network goes): the client reconnects under clawbot.json's
// retry policy and resends the audio that no final segment covers yet, so nothing spoken meanwhile is lost.
// Captured audio waits in a resend buffer (the PCM bytes as sent) from the end of the last final segment on;
// it is bounded (--resend-buffer seconds): past the bound the oldest audio goes, and a reconnection says
// which stretch could not be resent. A new connection's times start at 0: they are offset by where its
// audio starts in the stream, so the transcript's times stay those of the original stream.
class LiveClient {
 public:
  LiveClient(const client::ClientConfig& config, const TranscribeCommand& cmd)
      : config_(config), cmd_(cmd), wake_(io_), rng_(std::random_device{}()) {}

  using Source = std::function<std::optional<std::vector<float>>()>;

  // Throws CommandError when the node cannot be reached after the retries; transcript() keeps what came.
  int run(Source source) {
    const std::string endpoint =
        config_.model_endpoint == "auto" ? client::resolve_auto_endpoint().url : config_.model_endpoint;
    auto url = http::parse_url(base_url(endpoint));
    if (!url) throw CommandError("model_endpoint: " + url.error().message);
    if (url->is_https())
      throw CommandError("the live path speaks ws:// only for now; use an http:// endpoint");
    max_buffer_samples_ = static_cast<std::size_t>(cmd_.resend_buffer_s * kSampleRate);
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

  // How a connection ended: the node said done, or it broke (`why`; `retryable` when another try may work).
  struct Ended {
    bool done = false;
    bool retryable = true;
    bool progressed = false;  // the node answered something on it
    std::string why;
  };

  static double seconds(std::size_t samples) { return static_cast<double>(samples) / kSampleRate; }
  std::size_t captured() const { return buffer_start_ + buffer_.size() / 2; }

  asio::awaitable<void> session(http::Url url, Source source) {
    int failures = 0;  // in a row, since the last connection that made progress
    bool ever_connected = false;
    for (;;) {
      Ended ended;
      std::unique_ptr<Socket> ws;
      const std::string reason = co_await connect(url, ws, ended);
      if (ws) {
        const std::size_t from = std::max(committed_, buffer_start_);
        if (ever_connected) {
          std::fprintf(stderr, "clawbot transcribe: reconnected; resending %.1f s of audio from %.2f s\n",
                       seconds(captured() - from), seconds(from));
          if (from > committed_)
            std::fprintf(stderr,
                         "clawbot transcribe: audio from %.2f s to %.2f s was past the resend buffer "
                         "(%.0f s) and is not transcribed\n",
                         seconds(committed_), seconds(from), cmd_.resend_buffer_s);
        } else {
          started_ = std::chrono::steady_clock::now();
          asio::co_spawn(io_, capture(std::move(source)), asio::detached);
        }
        ever_connected = true;
        ended = co_await stream(*ws, from);
        if (ended.done) break;
        if (ended.progressed) failures = 0;
      }
      if (!ended.retryable || failures >= config_.retry_policy.max_retries) {
        const std::string why = ws ? ended.why : reason;
        // no done will say how long the stream was: what was captured is its length
        transcript_.duration = seconds(captured());
        error_ = failures == 0 ? why
                               : why + " (gave up after " + std::to_string(failures) + " " +
                                     (failures == 1 ? "retry" : "retries") + ": retry_policy.max_retries)";
        break;
      }
      ++failures;
      const auto delay = config_.retry_policy.delay(failures, std::uniform_real_distribution(0.8, 1.2)(rng_));
      std::fprintf(stderr, "clawbot transcribe: %s; reconnecting in %.1f s (retry %d of %d)\n",
                   (ws ? ended.why : reason).c_str(), static_cast<double>(delay.count()) / 1000.0, failures,
                   config_.retry_policy.max_retries);
      asio::steady_timer wait(io_);
      wait.expires_after(delay);
      co_await wait.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    stopping_ = true;  // the capture ends
    wake_.cancel();
  }

  // A connected, upgraded socket in `ws`, or why not (ended.retryable false for an answer that will not
  // change).
  asio::awaitable<std::string> connect(const http::Url& url, std::unique_ptr<Socket>& ws, Ended& ended) {
    asio::ip::tcp::resolver resolver(io_);
    auto [resolve_error, endpoints] =
        co_await resolver.async_resolve(url.host, url.port, asio::as_tuple(asio::use_awaitable));
    if (resolve_error) co_return url.host + ": " + resolve_error.message();
    auto socket = std::make_unique<Socket>(io_);
    beast::get_lowest_layer(*socket).expires_after(config_.network_timeout);
    auto [connect_error, connected] = co_await beast::get_lowest_layer(*socket).async_connect(
        endpoints, asio::as_tuple(asio::use_awaitable));
    if (connect_error) co_return "cannot connect to " + url.origin() + ": " + connect_error.message();
    beast::get_lowest_layer(*socket).expires_never();
    socket->set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    const std::string key = config_.resolved_api_key();
    socket->set_option(websocket::stream_base::decorator([key](websocket::request_type& request) {
      request.set(beast::http::field::user_agent, "clawbot-transcribe");
      if (!key.empty()) request.set(beast::http::field::authorization, "Bearer " + key);
    }));
    std::string target = url.path + "/v1/audio/live";
    if (!cmd_.language.empty()) target += "?language=" + cmd_.language;
    websocket::response_type answer;
    auto [handshake_error] = co_await socket->async_handshake(answer, url.host + ":" + url.port, target,
                                                              asio::as_tuple(asio::use_awaitable));
    if (handshake_error) {
      const unsigned status = answer.result_int();
      // a refusal that says why (a bad parameter, a key) stays; a busy or restarting node may answer later
      ended.retryable = status == 0 || status == 429 || status == 502 || status == 503 || status == 504;
      co_return url.origin() + target + ": " +
          (status ? "HTTP " + std::to_string(status) + " " + failure_text_of(answer.body())
                  : handshake_error.message());
    }
    ws = std::move(socket);
    co_return std::string();
  }

  static std::string failure_text_of(const std::string& body) {
    const auto parsed = json_read::parse(body);
    if (parsed && parsed.value->is_object() && parsed.value->contains("error") &&
        (*parsed.value)["error"].is_object())
      return (*parsed.value)["error"].value("message", body.substr(0, 200));
    return body.substr(0, 200);
  }

  // Audio from `source` into the resend buffer: paced at speaking speed with --realtime (the frame exists
  // once it has been "spoken"), else no further ahead of the sender than a second. Frames: a frame, an empty
  // vector for "nothing yet" (asked again shortly), nullopt at the end.
  asio::awaitable<void> capture(Source source) {
    asio::steady_timer pace(io_);
    const std::size_t ahead = kSampleRate;
    while (!stopping_) {
      if (!cmd_.realtime && !cmd_.live && captured() >= sent_ + ahead) {  // a file: read as it is sent
        pace.expires_after(std::chrono::milliseconds(5));
        co_await pace.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      std::optional<std::vector<float>> frame = source();
      if (!frame) break;
      if (frame->empty()) {
        pace.expires_after(std::chrono::milliseconds(20));
        co_await pace.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      if (cmd_.realtime) {
        pace.expires_at(started_ + std::chrono::microseconds(
                                       static_cast<long long>(seconds(captured() + frame->size()) * 1e6)));
        co_await pace.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      for (const float sample : *frame) {
        const auto v = static_cast<std::int16_t>(std::lround(std::clamp(sample, -1.0f, 1.0f) * 32767.0f));
        buffer_.push_back(static_cast<char>(v & 0xFF));
        buffer_.push_back(static_cast<char>((v >> 8) & 0xFF));
      }
      if (buffer_.size() / 2 > max_buffer_samples_) {  // the oldest goes, a tenth of the bound at a time
        drop_before(captured() - max_buffer_samples_ * 9 / 10);
      }
      wake_.cancel();
    }
    capture_done_ = true;
    wake_.cancel();
  }

  // Forgets the buffered audio before stream sample `sample`.
  void drop_before(std::size_t sample) {
    if (sample <= buffer_start_) return;
    const std::size_t n = std::min(sample - buffer_start_, buffer_.size() / 2);
    buffer_.erase(0, 2 * n);
    buffer_start_ += n;
  }

  // One connection: the buffer from stream sample `from` on, then what is captured, then stop; the answers.
  asio::awaitable<Ended> stream(Socket& ws, std::size_t from) {
    offset_ = from;
    sent_ = from;
    bool sending = true;
    asio::co_spawn(io_, send(ws), [&sending](std::exception_ptr) { sending = false; });
    Ended ended = co_await receive(ws);
    if (!ended.done) {
      beast::error_code ignored;
      beast::get_lowest_layer(ws).socket().close(ignored);  // the sender's write fails, its wait ends
    }
    asio::steady_timer wait(io_);
    while (sending) {
      wake_.cancel();
      wait.expires_after(std::chrono::milliseconds(5));
      co_await wait.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    co_return ended;
  }

  asio::awaitable<void> send(Socket& ws) {
    ws.binary(true);
    for (;;) {
      if (sent_ < buffer_start_) sent_ = buffer_start_;  // dropped past the bound while it waited
      if (sent_ < captured()) {
        const std::size_t n = std::min<std::size_t>(kSampleRate / 10, captured() - sent_);
        const std::string frame = buffer_.substr(2 * (sent_ - buffer_start_), 2 * n);
        auto [ec, written] =
            co_await ws.async_write(asio::buffer(frame), asio::as_tuple(asio::use_awaitable));
        if (ec) co_return;
        sent_ += n;
        continue;
      }
      if (capture_done_ || stopping_) break;
      wake_.expires_at(asio::steady_timer::time_point::max());
      co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
      if (!beast::get_lowest_layer(ws).socket().is_open()) co_return;
    }
    if (stopping_) co_return;
    ws.text(true);
    const std::string stop = R"({"type":"stop"})";
    co_await ws.async_write(asio::buffer(stop), asio::as_tuple(asio::use_awaitable));
  }

  asio::awaitable<Ended> receive(Socket& ws) {
    Ended ended;
    beast::flat_buffer buffer;
    const double offset_s = seconds(offset_);
    for (;;) {
      buffer.clear();
      auto [ec, n] = co_await ws.async_read(buffer, asio::as_tuple(asio::use_awaitable));
      if (ec) {
        ended.why = "the live connection was lost: " + ec.message();
        co_return ended;
      }
      ended.progressed = true;
      const auto parsed = json_read::parse(beast::buffers_to_string(buffer.data()));
      if (!parsed || !parsed.value->is_object()) continue;
      const auto& m = *parsed.value;
      const std::string type = m.value("type", "");
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
      if (type == "partial") {
        std::fprintf(stderr, "  ... [%.2f s] %s\n", elapsed, m.value("text", "").c_str());
      } else if (type == "final") {
        const double start = offset_s + m.value("start", 0.0);
        const double end = offset_s + m.value("end", 0.0);
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
        // what comes before its end is transcribed for good: a reconnection resends from there
        committed_ = std::max(
            committed_, offset_ + static_cast<std::size_t>(std::max(0.0, m.value("end", 0.0)) * kSampleRate));
        drop_before(std::min(committed_, sent_));
      } else if (type == "error") {
        std::fprintf(stderr, "clawbot transcribe: node: %s\n", m.value("message", "").c_str());
      } else if (type == "done") {
        transcript_.duration = offset_s + m.value("audio_seconds", 0.0);
        co_await ws.async_close(websocket::close_code::normal, asio::as_tuple(asio::use_awaitable));
        ended.done = true;
        co_return ended;
      }
    }
  }

  const client::ClientConfig& config_;
  const TranscribeCommand& cmd_;
  asio::io_context io_;
  asio::steady_timer wake_;  // the sender waits on it for audio; cancelled when some comes
  std::minstd_rand rng_;
  std::chrono::steady_clock::time_point started_;
  std::string buffer_;            // 16-bit PCM from stream sample buffer_start_ on
  std::size_t buffer_start_ = 0;  // stream sample of buffer_[0]
  std::size_t max_buffer_samples_ = 0;
  std::size_t committed_ = 0;  // stream sample where the last final segment ended
  std::size_t offset_ = 0;     // stream sample where this connection's audio starts
  std::size_t sent_ = 0;       // stream samples sent on this connection
  bool capture_done_ = false;
  bool stopping_ = false;
  std::string error_;
  Transcript transcript_;
  std::vector<double> lags_;
};

std::atomic<bool> interrupted = false;

void stop_recording(int) {
  interrupted = true;
}

// The transcript as verbose_json gives it (the node's answer to a file with --minutes).
Transcript parse_verbose_json(const std::string& body) {
  const auto parsed = json_read::parse(body);
  if (!parsed || !parsed.value->is_object() || !parsed.value->contains("segments") ||
      !(*parsed.value)["segments"].is_array())
    throw CommandError("the node's verbose_json answer has no segments");
  const auto& answer = *parsed.value;
  Transcript out;
  out.duration = answer.value("duration", 0.0);
  out.language = answer.value("language", "");
  for (const auto& s : answer["segments"]) {
    if (!s.is_object()) continue;
    out.segments.push_back(
        {s.value("start", 0.0), s.value("end", 0.0), s.value("text", ""), {}, 0, 0, 0, {}});
  }
  return out;
}

// One line a segment, for the chat model and the notes: "[00:01:02] text".
std::vector<std::string> transcript_lines(const Transcript& transcript) {
  std::vector<std::string> lines;
  for (const auto& s : transcript.segments) {
    std::string time = clock_time(s.start, '.');
    lines.push_back("[" + time.substr(0, 8) + "] " + s.text);
  }
  return lines;
}

// --minutes -o FILE: Markdown, the minutes (or why there are none) then the transcript.
std::string notes_markdown(const Transcript& transcript, const std::string& minutes,
                           const std::string& failure) {
  std::string out = "# Minutes\n\n";
  out += failure.empty() ? minutes : "_Not written: " + failure + "_";
  while (!out.empty() && out.back() == '\n') out.pop_back();
  out += "\n\n# Transcript\n\n";
  for (const auto& s : transcript.segments)
    out += "- `" + clock_time(s.start, '.') + " --> " + clock_time(s.end, '.') + "` " + s.text + "\n";
  if (transcript.segments.empty()) out += "_No speech was transcribed._\n";
  return out;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw CommandError("cannot write " + path);
}

std::string rendered(const Transcript& transcript, const std::string& format) {
  const auto parsed = parse_response_format(api_format(format));
  return render(transcript, parsed ? *parsed : ResponseFormat::text, {}).body;
}

// The end of a transcription: with --minutes, the minutes from the chat model, printed; -o gets the
// transcript (in --format, or with --minutes Markdown: minutes then transcript). `failure`: why the
// transcription stopped short (what came is saved all the same). Returns the exit status.
int deliver(const client::ClientConfig& config, const TranscribeCommand& cmd, const Transcript& transcript,
            const std::string& failure) {
  std::string minutes;
  std::string minutes_failure;
  if (cmd.minutes && failure.empty()) {
    try {
      client::ClientConfig chat_config = config;
      if (!cmd.minutes_endpoint.empty()) chat_config.model_endpoint = cmd.minutes_endpoint;
      client::ApiClient chat(chat_config);
      const MinutesResult result =
          write_minutes(chat, transcript_lines(transcript), [](std::string_view line) {
            std::fprintf(stderr, "clawbot transcribe: %.*s\n", static_cast<int>(line.size()), line.data());
          });
      minutes = result.text;
      std::fprintf(
          stderr,
          "clawbot transcribe: minutes from %d chat request%s (%zu transcript part%s, %lld-token context)\n",
          result.requests, result.requests == 1 ? "" : "s", result.plan.parts,
          result.plan.parts == 1 ? "" : "s", static_cast<long long>(result.plan.context));
      std::printf("\n# Minutes\n\n%s\n", minutes.c_str());
      std::fflush(stdout);
    } catch (const client::ConfigError& e) {
      minutes_failure = e.what();
    } catch (const MinutesError& e) {
      minutes_failure = e.what();
    }
  } else if (cmd.minutes) {
    minutes_failure = "the transcription did not complete";
  }
  if (!cmd.output.empty()) {
    write_text(cmd.output, cmd.minutes ? notes_markdown(transcript, minutes, minutes_failure)
                                       : rendered(transcript, cmd.format));
    std::fprintf(stderr, "clawbot transcribe: wrote %s\n", cmd.output.c_str());
  }
  if (!failure.empty())
    return cli_error(
        "clawbot transcribe",
        failure + (cmd.output.empty() ? std::string() : "; what was transcribed is in " + cmd.output), 1);
  if (!minutes_failure.empty())
    return cli_error("clawbot transcribe",
                     "minutes: " + minutes_failure +
                         (cmd.output.empty() ? std::string() : "; the transcript is in " + cmd.output),
                     1);
  return 0;
}

int run_live(const client::ClientConfig& config, const TranscribeCommand& cmd) {
  LiveClient live(config, cmd);
  std::string failure;
  try {
    if (cmd.input.empty()) {  // the microphone, until Ctrl-C
      Microphone microphone(cmd.device);
      std::fprintf(stderr, "clawbot transcribe: listening on %s; Ctrl-C ends\n",
                   microphone.device_name().c_str());
      std::mutex mutex;
      std::deque<std::vector<float>> frames;
      std::atomic<bool> done = false;
      std::signal(SIGINT, stop_recording);
      // Recording goes on while the connection is slow or retried: frames wait here, then in the client's
      // resend buffer; none is lost.
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
  } catch (const CommandError& e) {
    failure = e.what();
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
  return deliver(config, cmd, transcript, failure);
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
    if (cmd.minutes) {  // segments with their times, for the chat model and the notes
      const Transcript transcript =
          parse_verbose_json(transcribe_file(client, cmd, cmd.file, "verbose_json"));
      if (cmd.output.empty()) {
        const std::string text = rendered(transcript, cmd.format);
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      }
      return deliver(config, cmd, transcript, {});
    }
    const std::string text = transcribe_file(client, cmd, cmd.file, cmd.format);
    if (cmd.output.empty()) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      if (!text.empty() && text.back() != '\n') std::fputc('\n', stdout);
      return 0;
    }
    write_text(cmd.output, text);
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
  sub->add_option("--resend-buffer", cmd->resend_buffer_s,
                  "Live: seconds of audio kept to resend after a reconnection (what no final segment covers "
                  "yet); past it the oldest goes, and the reconnection says which stretch was lost")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 24.0 * 3600));
  sub->add_flag(
      "--minutes", cmd->minutes,
      "Then send the transcript to the chat model (model_endpoint and model of clawbot.json, "
      "--model) for minutes: summary, decisions, action items; with -o, Markdown: the minutes, then "
      "the transcript");
  sub->add_option("--minutes-endpoint", cmd->minutes_endpoint,
                  "With --minutes: the chat model's node or gateway, when not the one that transcribes");
  return [=]() -> std::optional<int> {
    if (!sub->parsed()) return std::nullopt;
    return run_transcribe(*cmd);
  };
}

}  // namespace clawbot::audio
