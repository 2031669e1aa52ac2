#include "audio/transcriber.h"

#include <whisper.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "audio/whisper_file.h"
#include "common/error.h"

namespace clawbot::audio {
namespace {

// whisper.cpp's own lines at debug level (they are many per load and per request), its warnings and errors as
// warnings; the last error is kept for the message of a failed load.
thread_local std::string last_whisper_error;

void whisper_log(ggml_log_level level, const char* text, void*) {
  std::string line(text ? text : "");
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (line.empty()) return;
  if (level == GGML_LOG_LEVEL_ERROR) {
    last_whisper_error = line;
    spdlog::warn("whisper.cpp: {}", line);
  } else if (level == GGML_LOG_LEVEL_WARN) {
    spdlog::warn("whisper.cpp: {}", line);
  } else {
    spdlog::debug("whisper.cpp: {}", line);
  }
}

struct Abort {
  const std::atomic<bool>* cancelled;
};

bool abort_requested(void* user) {
  const auto* abort = static_cast<const Abort*>(user);
  return abort->cancelled && abort->cancelled->load();
}

bool encoder_may_begin(whisper_context*, whisper_state*, void* user) {
  return !abort_requested(user);
}

}  // namespace

void init_whisper_logging() {
  whisper_log_set(whisper_log, nullptr);
}

std::string whisper_release() {
  return whisper_version();
}

struct Transcriber::Whisper {
  whisper_context* ctx = nullptr;
  ~Whisper() {
    if (ctx) whisper_free(ctx);
  }
};

Transcriber::Transcriber(TranscriberOptions options)
    : options_(std::move(options)), whisper_(std::make_unique<Whisper>()) {
  const std::filesystem::path path = options_.model_path;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw ClawbotError(ErrorKind::not_found, "whisper model " + path.string() + " not found");
  if (!is_whisper_file(path))
    throw ClawbotError(ErrorKind::invalid_request,
                       path.string() +
                           " is not a whisper.cpp model file (ggml-*.bin, from whisper.cpp's models or "
                           "`clawbot models synth whisper-tiny`)");
  // The whole layout, bounded, before whisper.cpp reads it: its loader trusts the file's sizes, and aborts
  // the process on some mistakes.
  read_whisper_file(path);
  if (!options_.vad_model_path.empty() && !std::filesystem::is_regular_file(options_.vad_model_path, ec))
    throw ClawbotError(ErrorKind::not_found, "VAD model " + options_.vad_model_path + " not found");
  auto params = whisper_context_default_params();
  params.use_gpu = options_.use_gpu;
  last_whisper_error.clear();
  whisper_->ctx = whisper_init_from_file_with_params(path.c_str(), params);
  if (!whisper_->ctx)
    throw ClawbotError(ErrorKind::invalid_request,
                       "whisper.cpp could not load " + path.string() +
                           (last_whisper_error.empty() ? std::string() : ": " + last_whisper_error));
}

Transcriber::~Transcriber() = default;

std::string Transcriber::model_type() const {
  return whisper_model_type_readable(whisper_->ctx);
}

bool Transcriber::multilingual() const {
  return whisper_is_multilingual(whisper_->ctx) != 0;
}

Transcript Transcriber::transcribe(Decoder& audio, const TranscribeOptions& options,
                                   const std::atomic<bool>* cancelled) {
  Transcript out;
  out.task = options.translate ? "translate" : "transcribe";
  const auto window = static_cast<std::size_t>(options_.window_seconds * kSampleRate);
  std::vector<float> samples;
  bool first = true;
  for (;;) {
    samples.clear();
    const double offset = audio.seconds_read();
    if (audio.read(samples, window) == 0) break;
    if (cancelled && cancelled->load()) break;
    run_window(samples, offset, options, cancelled, out, first);
    first = false;
  }
  out.duration = audio.seconds_read();
  tidy(out);
  return out;
}

void check_language(std::string_view language) {
  if (language.empty() || language == "auto") return;
  // whisper's table holds codes of 2 or 3 letters and full names ("english"); nothing longer
  if (language.size() > 32 || whisper_lang_id(std::string(language).c_str()) < 0) {
    std::string shown(language.substr(0, 32));
    for (char& c : shown)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    throw_invalid("'language' must be an ISO-639-1 code whisper knows (en, de, fr, ...), not '" + shown +
                      (language.size() > 32 ? "...'" : "'"),
                  "language", "unsupported_language");
  }
}

Transcript Transcriber::transcribe_samples(std::span<const float> samples, double offset_s,
                                           const TranscribeOptions& options,
                                           const std::atomic<bool>* cancelled) {
  Transcript out;
  out.task = options.translate ? "translate" : "transcribe";
  run_window(samples, offset_s, options, cancelled, out, true);
  out.duration = offset_s + static_cast<double>(samples.size()) / kSampleRate;
  tidy(out);
  return out;
}

void Transcriber::run_window(std::span<const float> samples, double offset_s,
                             const TranscribeOptions& options, const std::atomic<bool>* cancelled,
                             Transcript& out, bool first_window) {
  whisper_context* ctx = whisper_->ctx;
  check_language(options.language);
  auto params = whisper_full_default_params(WHISPER_SAMPLING_GREEDY);
  params.n_threads = options.threads > 0
                         ? options.threads
                         : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  params.translate = options.translate;
  params.language = options.language.empty() ? "auto" : options.language.c_str();
  params.no_context = first_window;  // later windows carry the text before them
  params.print_progress = false;
  params.print_realtime = false;
  params.print_timestamps = false;
  params.print_special = false;
  params.token_timestamps = options.word_timestamps;
  params.initial_prompt = options.prompt.empty() ? nullptr : options.prompt.c_str();
  if (options.temperature > 0) {  // a temperature asked for is used as it is, without the fallback schedule
    params.temperature = options.temperature;
    params.temperature_inc = 0;
  }
  if (options.live) {
    const double seconds = static_cast<double>(samples.size()) / kSampleRate;
    params.audio_ctx =
        std::min(whisper_model_n_audio_ctx(ctx), static_cast<int>(std::ceil((seconds + 1.0) * 50)));
    params.temperature_inc = 0;
    params.greedy.best_of = 1;
  }
  if (!options_.vad_model_path.empty()) {
    params.vad = true;
    params.vad_model_path = options_.vad_model_path.c_str();
  }
  Abort abort{cancelled};
  params.abort_callback = abort_requested;
  params.abort_callback_user_data = &abort;
  params.encoder_begin_callback = encoder_may_begin;
  params.encoder_begin_callback_user_data = &abort;
  last_whisper_error.clear();
  const int rc = whisper_full(ctx, params, samples.data(), static_cast<int>(samples.size()));
  if (rc != 0 && !(cancelled && cancelled->load()))
    throw ClawbotError(ErrorKind::internal,
                       "whisper.cpp failed (" + std::to_string(rc) + ")" +
                           (last_whisper_error.empty() ? "" : ": " + last_whisper_error));
  if (out.language.empty()) out.language = whisper_lang_str_full(whisper_full_lang_id(ctx));
  const whisper_token eot = whisper_token_eot(ctx);
  const int n_segments = whisper_full_n_segments(ctx);
  for (int i = 0; i < n_segments; ++i) {
    Segment segment;
    segment.start = offset_s + static_cast<double>(whisper_full_get_segment_t0(ctx, i)) / 100.0;
    segment.end = offset_s + static_cast<double>(whisper_full_get_segment_t1(ctx, i)) / 100.0;
    segment.text = whisper_full_get_segment_text(ctx, i);
    segment.no_speech_prob = whisper_full_get_segment_no_speech_prob(ctx, i);
    segment.temperature = params.temperature;
    double logprob_sum = 0;
    int text_tokens = 0;
    const int n_tokens = whisper_full_n_tokens(ctx, i);
    for (int t = 0; t < n_tokens; ++t) {
      const whisper_token_data data = whisper_full_get_token_data(ctx, i, t);
      if (data.id >= eot) continue;  // special and timestamp tokens
      segment.tokens.push_back(data.id);
      logprob_sum += data.plog;
      ++text_tokens;
      if (!options.word_timestamps) continue;
      const std::string piece = whisper_full_get_token_text(ctx, i, t);
      const double t0 = offset_s + static_cast<double>(data.t0) / 100.0;
      const double t1 = offset_s + static_cast<double>(data.t1) / 100.0;
      // A piece that starts with a space starts a word; others continue the one before.
      if (segment.words.empty() || (!piece.empty() && piece.front() == ' ')) {
        segment.words.push_back({piece, t0, t1, data.p});
      } else {
        segment.words.back().word += piece;
        segment.words.back().end = t1;
      }
    }
    segment.avg_logprob = text_tokens ? logprob_sum / text_tokens : 0.0;
    out.segments.push_back(std::move(segment));
  }
}

}  // namespace clawbot::audio
