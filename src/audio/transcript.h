// A transcription and OpenAI's response formats for it: json, text, srt, vtt, verbose_json (with segment
// and word timestamps). Times are seconds from the start of the audio.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace clawbot::audio {

struct Word {
  std::string word;
  double start = 0;
  double end = 0;
  double probability = 0;
};

struct Segment {
  double start = 0;
  double end = 0;
  std::string text;
  std::vector<int> tokens;
  double avg_logprob = 0;
  double no_speech_prob = 0;
  double temperature = 0;
  std::vector<Word> words;  // with word timestamps only
};

struct Transcript {
  std::string task = "transcribe";  // or "translate"
  std::string language;             // whisper's full name ("english"), as OpenAI's verbose_json says it
  double duration = 0;              // of the audio, seconds
  std::vector<Segment> segments;

  std::string text() const;  // the segments' text joined, trimmed
};

// Segments and words within [0, duration], each starting no earlier than the one before and ending no
// earlier than it starts; text trimmed, empty segments dropped. (Decoders may put a last timestamp past the
// end of the audio.)
void tidy(Transcript& transcript);

enum class ResponseFormat { json, text, srt, vtt, verbose_json };
std::optional<ResponseFormat> parse_response_format(std::string_view name);

struct Granularities {
  bool segment = true;
  bool word = false;
};

struct Rendered {
  std::string body;
  std::string content_type;
};
// `granularities` matter to verbose_json only (as in OpenAI's API).
Rendered render(const Transcript& transcript, ResponseFormat format, Granularities granularities);

std::string to_srt(const Transcript& transcript);
std::string to_vtt(const Transcript& transcript);
// 01:02:03,456 (SRT) or 01:02:03.456 (WebVTT)
std::string clock_time(double seconds, char decimal_separator);

}  // namespace clawbot::audio
