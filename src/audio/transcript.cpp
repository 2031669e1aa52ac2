#include "audio/transcript.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace clawbot::audio {
namespace {

using nlohmann::json;

std::string trimmed(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

double rounded(double seconds) {  // to the millisecond, as the text formats show them
  return std::round(seconds * 1000.0) / 1000.0;
}

// A cue's text may not contain a blank line (it would end the cue) nor, in WebVTT, "-->".
std::string cue_text(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r') continue;
    if (text[i] == '\n') {
      out += ' ';
      continue;
    }
    if (text.substr(i, 3) == "-->") {
      out += "->";
      i += 2;
      continue;
    }
    out += text[i];
  }
  return out;
}

// The transcript's text may hold invalid UTF-8 (a character split across a window's tokens): replaced.
std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::string Transcript::text() const {
  std::string out;
  for (const auto& segment : segments) {
    if (!out.empty()) out += ' ';
    out += segment.text;
  }
  return out;
}

void tidy(Transcript& transcript) {
  const double end_of_audio = std::max(0.0, transcript.duration);
  const auto clamp = [&](double t) { return std::clamp(std::isfinite(t) ? t : 0.0, 0.0, end_of_audio); };
  std::vector<Segment> kept;
  double last_start = 0;
  double last_word_start = 0;
  for (auto& segment : transcript.segments) {
    segment.text = trimmed(segment.text);
    if (segment.text.empty()) continue;
    segment.start = std::max(clamp(segment.start), last_start);
    segment.end = std::max(clamp(segment.end), segment.start);
    last_start = segment.start;
    for (auto& word : segment.words) {
      word.word = trimmed(word.word);
      word.start = std::max({clamp(word.start), last_word_start, segment.start});
      word.end =
          std::clamp(std::max(clamp(word.end), word.start), word.start, std::max(segment.end, word.start));
      last_word_start = word.start;
    }
    std::erase_if(segment.words, [](const Word& w) { return w.word.empty(); });
    kept.push_back(std::move(segment));
  }
  transcript.segments = std::move(kept);
}

std::optional<ResponseFormat> parse_response_format(std::string_view name) {
  if (name == "json") return ResponseFormat::json;
  if (name == "text") return ResponseFormat::text;
  if (name == "srt") return ResponseFormat::srt;
  if (name == "vtt") return ResponseFormat::vtt;
  if (name == "verbose_json") return ResponseFormat::verbose_json;
  return std::nullopt;
}

std::string clock_time(double seconds, char decimal_separator) {
  const auto ms_total = static_cast<long long>(std::llround(std::max(0.0, seconds) * 1000.0));
  const long long h = ms_total / 3'600'000;
  const long long m = ms_total / 60'000 % 60;
  const long long s = ms_total / 1000 % 60;
  const long long ms = ms_total % 1000;
  char out[40];
  std::snprintf(out, sizeof out, "%02lld:%02lld:%02lld%c%03lld", h, m, s, decimal_separator, ms);
  return out;
}

std::string to_srt(const Transcript& transcript) {
  std::string out;
  int index = 1;
  for (const auto& segment : transcript.segments) {
    out += std::to_string(index++) + "\n" + clock_time(segment.start, ',') + " --> " +
           clock_time(segment.end, ',') + "\n" + cue_text(segment.text) + "\n\n";
  }
  return out;
}

std::string to_vtt(const Transcript& transcript) {
  std::string out = "WEBVTT\n\n";
  for (const auto& segment : transcript.segments) {
    out += clock_time(segment.start, '.') + " --> " + clock_time(segment.end, '.') + "\n" +
           cue_text(segment.text) + "\n\n";
  }
  return out;
}

Rendered render(const Transcript& transcript, ResponseFormat format, Granularities granularities) {
  const json usage = {{"type", "duration"},
                      {"seconds", static_cast<long long>(std::ceil(transcript.duration))}};
  switch (format) {
    case ResponseFormat::text:
      return {transcript.text() + "\n", "text/plain; charset=utf-8"};
    case ResponseFormat::srt:
      return {to_srt(transcript), "application/x-subrip; charset=utf-8"};
    case ResponseFormat::vtt:
      return {to_vtt(transcript), "text/vtt; charset=utf-8"};
    case ResponseFormat::json:
      return {dump({{"text", transcript.text()}, {"usage", usage}}), "application/json"};
    case ResponseFormat::verbose_json:
      break;
  }
  json out = {{"task", transcript.task},
              {"language", transcript.language},
              {"duration", rounded(transcript.duration)},
              {"text", transcript.text()}};
  if (granularities.segment) {
    json segments = json::array();
    int id = 0;
    for (const auto& segment : transcript.segments) {
      segments.push_back({{"id", id++},
                          {"seek", static_cast<long long>(std::floor(segment.start * 100))},
                          {"start", rounded(segment.start)},
                          {"end", rounded(segment.end)},
                          {"text", segment.text},
                          {"tokens", segment.tokens},
                          {"temperature", segment.temperature},
                          {"avg_logprob", segment.avg_logprob},
                          {"compression_ratio", 0.0},
                          {"no_speech_prob", segment.no_speech_prob}});
    }
    out["segments"] = std::move(segments);
  }
  if (granularities.word) {
    json words = json::array();
    for (const auto& segment : transcript.segments)
      for (const auto& word : segment.words)
        words.push_back({{"word", word.word}, {"start", rounded(word.start)}, {"end", rounded(word.end)}});
    out["words"] = std::move(words);
  }
  out["usage"] = usage;
  return {dump(out), "application/json"};
}

}  // namespace clawbot::audio
