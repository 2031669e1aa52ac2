#include "audio/wer.h"

#include <algorithm>
#include <cctype>

namespace clawbot::audio {

std::vector<std::string> normalized_words(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  const auto flush = [&] {
    while (!word.empty() && word.back() == '\'') word.pop_back();
    while (!word.empty() && word.front() == '\'') word.erase(word.begin());
    if (!word.empty()) words.push_back(std::move(word));
    word.clear();
  };
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80 || std::isalnum(c)) {
      word += static_cast<char>(c < 0x80 ? std::tolower(c) : c);  // bytes of UTF-8 letters kept as they are
    } else if (c == '\'') {
      word += '\'';
    } else if (c == '-' && !word.empty()) {
      flush();  // "twenty-one": two words, as most normalisers count them
    } else {
      flush();
    }
  }
  flush();
  return words;
}

double WordErrors::rate() const noexcept {
  if (reference_words == 0) return errors() == 0 ? 0.0 : static_cast<double>(errors());
  return static_cast<double>(errors()) / static_cast<double>(reference_words);
}

WordErrors& WordErrors::operator+=(const WordErrors& other) noexcept {
  substitutions += other.substitutions;
  deletions += other.deletions;
  insertions += other.insertions;
  reference_words += other.reference_words;
  return *this;
}

WordErrors word_errors(std::string_view reference, std::string_view hypothesis) {
  const auto ref = normalized_words(reference);
  const auto hyp = normalized_words(hypothesis);
  // Levenshtein over words, each cell keeping its operation counts (ties: fewest errors, then substitutions
  // before deletions before insertions, as jiwer breaks them).
  struct Cell {
    std::size_t cost = 0, s = 0, d = 0, i = 0;
  };
  std::vector<Cell> prev(hyp.size() + 1), row(hyp.size() + 1);
  for (std::size_t j = 0; j <= hyp.size(); ++j) prev[j] = {j, 0, 0, j};
  for (std::size_t r = 1; r <= ref.size(); ++r) {
    row[0] = {r, 0, r, 0};
    for (std::size_t j = 1; j <= hyp.size(); ++j) {
      const bool same = ref[r - 1] == hyp[j - 1];
      Cell diagonal = prev[j - 1];
      if (!same) {
        ++diagonal.cost;
        ++diagonal.s;
      }
      Cell deletion = prev[j];
      ++deletion.cost;
      ++deletion.d;
      Cell insertion = row[j - 1];
      ++insertion.cost;
      ++insertion.i;
      Cell best = diagonal;
      if (deletion.cost < best.cost) best = deletion;
      if (insertion.cost < best.cost) best = insertion;
      row[j] = best;
    }
    std::swap(prev, row);
  }
  const Cell& end = prev[hyp.size()];
  return {end.s, end.d, end.i, ref.size()};
}

std::vector<std::pair<std::string, std::string>> parse_sphinx_transcription(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    const std::size_t open = line.rfind('(');
    if (open == std::string_view::npos || line.back() != ')') continue;
    std::string id(line.substr(open + 1, line.size() - open - 2));
    std::string sentence(line.substr(0, open));
    for (const std::string_view marker : {"<s>", "</s>", "<sil>"})
      for (std::size_t at; (at = sentence.find(marker)) != std::string::npos;)
        sentence.replace(at, marker.size(), " ");
    std::string words;
    for (const auto& word : normalized_words(sentence)) {
      if (!words.empty()) words += ' ';
      words += word;
    }
    if (!id.empty()) out.emplace_back(std::move(id), std::move(words));
  }
  return out;
}

}  // namespace clawbot::audio
