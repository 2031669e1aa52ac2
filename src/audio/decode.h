// Audio files in, 16 kHz mono float samples out (what whisper.cpp reads), a window at a time so that a long
// file never sits decoded in memory whole. libsndfile decodes WAV, FLAC, OGG (Vorbis, Opus) and MP3 from the
// bytes of an upload; any sample rate and channel count (channels are averaged, then resampled).
//
// Every problem with the input is a ClawbotError invalid_request with param "file" and a code that names it:
// empty_file, unsupported_audio_format, invalid_audio (not audio, or corrupt), truncated_audio,
// audio_too_long.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace clawbot::audio {

inline constexpr int kSampleRate = 16000;  // whisper's

struct AudioInfo {
  std::string format;  // "WAV", "FLAC", "OGG", "MP3", ... (libsndfile's major format)
  int sample_rate = 0;
  int channels = 0;
  double duration_s = 0;  // what the file says (an MP3's may be an estimate)
};

struct DecodeLimits {
  double max_seconds = 3600;  // longer audio is refused (audio_too_long), by its header and while decoding
};

class Decoder {
 public:
  // Reads the header of `bytes` (which must outlive the decoder); throws as above.
  Decoder(std::string_view bytes, DecodeLimits limits);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  const AudioInfo& info() const noexcept;
  // Appends up to `max_samples` samples (16 kHz mono) to `out`; returns how many, 0 at the end. Throws
  // truncated_audio when the data stops short of what the header promised, audio_too_long past the limit.
  std::size_t read(std::vector<float>& out, std::size_t max_samples);
  // Seconds of 16 kHz audio handed out so far.
  double seconds_read() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The whole file at 16 kHz mono (for short files, tests and the live path's file input).
std::vector<float> decode_all(std::string_view bytes, DecodeLimits limits = {});

// "wav", "flac", ... from the first bytes, for messages; empty when unknown.
std::string sniff_container(std::string_view bytes);

}  // namespace clawbot::audio
