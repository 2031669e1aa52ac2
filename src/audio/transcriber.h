// whisper.cpp on the process's one ggml (RAII over its context and state). One Transcriber runs one
// transcription at a time (TranscriptionService queues them); the audio comes from a Decoder, window by
// window, so a long file is never held decoded whole.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "audio/decode.h"
#include "audio/transcript.h"

namespace clawbot::audio {

struct TranscribeOptions {
  std::string language;  // ISO code ("en"); empty: detected
  bool translate = false;
  std::string prompt;
  float temperature = 0;  // 0: whisper's fallback schedule (0, 0.2, ... when a window decodes badly)
  bool word_timestamps = false;
  int threads = 0;  // 0: all cores
  // The live path's short segments, where lag matters most: the encoder sees only the segment's length of
  // audio context instead of whisper's 30 s window (whisper.cpp's stream example does the same), and one
  // greedy decoder without the temperature fallback.
  bool live = false;
};

struct TranscriberOptions {
  std::string model_path;
  std::string vad_model_path;  // Silero VAD (ggml) for speech segments; empty: none
  bool use_gpu = true;
  double window_seconds = 300;  // audio decoded and handed to whisper at a time
};

class Transcriber {
 public:
  explicit Transcriber(TranscriberOptions options);  // throws ClawbotError naming the file's problem
  ~Transcriber();
  Transcriber(const Transcriber&) = delete;
  Transcriber& operator=(const Transcriber&) = delete;

  // Throws ClawbotError invalid_request for a language whisper does not know; the decoder's errors pass
  // through. `cancelled`, when set, stops between and inside windows (the result is then partial).
  Transcript transcribe(Decoder& audio, const TranscribeOptions& options,
                        const std::atomic<bool>* cancelled = nullptr);
  // The same for samples already at 16 kHz mono, `offset_s` into a stream (the live path).
  Transcript transcribe_samples(std::span<const float> samples, double offset_s,
                                const TranscribeOptions& options,
                                const std::atomic<bool>* cancelled = nullptr);

  std::string model_type() const;  // "tiny", "base", ...
  bool multilingual() const;

 private:
  void run_window(std::span<const float> samples, double offset_s, const TranscribeOptions& options,
                  const std::atomic<bool>* cancelled, Transcript& out, bool first_window);
  TranscriberOptions options_;
  struct Whisper;
  std::unique_ptr<Whisper> whisper_;
};

// Throws ClawbotError invalid_request (param "language", code unsupported_language) unless `language` is
// empty, "auto", or a language whisper knows: checked when a request arrives, before its audio is read.
void check_language(std::string_view language);

// whisper.cpp's version (its CMake project version, as built).
std::string whisper_release();

// whisper.cpp's log into ours (its lines at debug level). Call before the engine sets up libllama's log:
// whisper.cpp also points the process's one ggml log at its callback, and libllama's must win.
void init_whisper_logging();

}  // namespace clawbot::audio
