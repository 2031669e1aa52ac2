// Word error rate: (substitutions + deletions + insertions) / words of the reference, after both texts are
// normalised the same way (lower case, punctuation dropped but for apostrophes inside words).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clawbot::audio {

std::vector<std::string> normalized_words(std::string_view text);

struct WordErrors {
  std::size_t substitutions = 0;
  std::size_t deletions = 0;
  std::size_t insertions = 0;
  std::size_t reference_words = 0;
  std::size_t errors() const noexcept { return substitutions + deletions + insertions; }
  // errors / reference words; 0 for two empty texts, 1 per inserted word against an empty reference
  double rate() const noexcept;
  WordErrors& operator+=(const WordErrors& other) noexcept;
};

WordErrors word_errors(std::string_view reference, std::string_view hypothesis);

// CMU Sphinx's transcription files (pocketsphinx-testdata, LibriSpeech's converted sets): one utterance a
// line, "<s> words </s> (utterance-id)". Returns (id, words) pairs; lines without an id are skipped.
std::vector<std::pair<std::string, std::string>> parse_sphinx_transcription(std::string_view text);

}  // namespace clawbot::audio
