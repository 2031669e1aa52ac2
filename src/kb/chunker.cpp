// Sections to chunks under a token budget: whole paragraphs where they fit, long ones cut at sentence ends
// (then at blanks, then anywhere on a character boundary), and the tail of the previous chunk of the same
// section repeated at the start of the next (the overlap).
#include <algorithm>

#include "kb/kb.h"

namespace clawbot::kb {

namespace {

bool utf8_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xc0) == 0x80;
}

// Where a sentence ends in `text` after `from`: after ". ", "? ", "! ", or a CJK full stop; npos when none.
std::size_t sentence_end(std::string_view text, std::size_t from) {
  for (std::size_t i = from; i < text.size(); ++i) {
    const char c = text[i];
    if ((c == '.' || c == '?' || c == '!' || c == ';') && i + 1 < text.size() && text[i + 1] == ' ')
      return i + 2;
    if (text.substr(i).starts_with("\xe3\x80\x82") || text.substr(i).starts_with("\xef\xbc\x81") ||
        text.substr(i).starts_with("\xef\xbc\x9f"))  // 。！？
      return i + 3;
  }
  return std::string_view::npos;
}

// Text longer than this many bytes per token of the budget is split before its tokens are counted: no
// tokenizer averages that many bytes a token, and counting a long run without blanks at every halving (a
// 200 MB "word" from a crafted DOCX) costs n log n tokenizer work.
constexpr std::size_t split_unread_bytes_per_token = 64;

// `text` in pieces of at most `budget` tokens each.
std::vector<std::string> split_to_budget(std::string_view text, std::size_t budget,
                                         const TokenCounter& count) {
  if (text.size() <= budget * split_unread_bytes_per_token && count(text) <= budget)
    return {std::string(text)};
  // Sentences first, packed greedily.
  std::vector<std::string_view> sentences;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t end = sentence_end(text, start);
    if (end == std::string_view::npos) end = text.size();
    sentences.push_back(text.substr(start, end - start));
    start = end;
  }
  std::vector<std::string> out;
  if (sentences.size() > 1) {
    std::string current;
    for (const auto s : sentences) {
      const std::string joined = current + std::string(s);
      if (!current.empty() && count(joined) > budget) {
        for (auto& piece : split_to_budget(current, budget, count)) out.push_back(std::move(piece));
        current = std::string(s);
      } else {
        current = joined;
      }
    }
    if (!current.empty())
      for (auto& piece : split_to_budget(current, budget, count)) out.push_back(std::move(piece));
    return out;
  }
  // One long sentence: halve it at a blank near the middle, else at a character boundary.
  std::size_t mid = text.size() / 2;
  const std::size_t blank = text.rfind(' ', mid);
  if (blank != std::string_view::npos && blank > text.size() / 4) {
    mid = blank + 1;
  } else {
    while (mid > 0 && utf8_continuation(text[mid])) --mid;
  }
  if (mid == 0 || mid >= text.size()) return {std::string(text)};  // one character over budget: as it is
  for (auto& piece : split_to_budget(text.substr(0, mid), budget, count)) out.push_back(std::move(piece));
  for (auto& piece : split_to_budget(text.substr(mid), budget, count)) out.push_back(std::move(piece));
  return out;
}

// The last words of `text` that fit in `budget` tokens (the overlap carried into the next chunk): a binary
// search over the word starts, so a tokenizer behind HTTP is asked a few times, not once a word.
std::string tail_within(std::string_view text, std::size_t budget, const TokenCounter& count) {
  if (budget == 0 || text.empty()) return {};
  std::vector<std::size_t> starts;  // ascending; at most the last 8 × budget words are candidates
  for (std::size_t i = text.size(); i-- > 0 && starts.size() < 8 * budget;)
    if ((i == 0 || text[i - 1] == ' ' || text[i - 1] == '\n') && text[i] != ' ') starts.push_back(i);
  std::reverse(starts.begin(), starts.end());
  std::size_t lo = 0, hi = starts.size();  // the first start whose suffix fits is in [lo, hi)
  while (lo < hi) {
    const std::size_t mid = (lo + hi) / 2;
    if (count(text.substr(starts[mid])) <= budget) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo < starts.size() ? std::string(text.substr(starts[lo])) : std::string();
}

std::string join_path(const std::vector<std::string>& path) {
  std::string out;
  for (const auto& h : path) out += (out.empty() ? "" : " > ") + h;
  return out;
}

}  // namespace

std::size_t approximate_tokens(std::string_view text) {
  std::size_t words = 0;
  bool in_word = false;
  for (const char c : text) {
    const bool blank = c == ' ' || c == '\n' || c == '\t';
    if (!blank && !in_word) ++words;
    in_word = !blank;
  }
  return std::max(words, (text.size() + 2) / 3);
}

std::string Chunk::embedding_input() const {
  return heading_path.empty() ? text : heading_path + "\n\n" + text;
}

std::vector<Chunk> chunk_document(const Document& document, const ChunkOptions& options,
                                  const TokenCounter& count_tokens) {
  std::vector<Chunk> chunks;
  for (const Section& section : document.sections) {
    const std::string path = join_path(section.heading_path);
    const std::size_t heading_tokens = path.empty() ? 0 : count_tokens(path + "\n\n");
    // The heading path is embedded with every chunk; a very long one still leaves room for text.
    const std::size_t budget =
        std::max<std::size_t>(options.max_tokens > heading_tokens ? options.max_tokens - heading_tokens : 0,
                              options.max_tokens / 4 + 1);
    const std::size_t overlap = std::min(options.overlap_tokens, budget / 2);

    std::vector<std::string> units;
    for (const auto& p : section.paragraphs)
      for (auto& piece : split_to_budget(p, budget, count_tokens)) units.push_back(std::move(piece));

    std::string current;
    std::size_t current_tokens = 0;
    bool has_new = false;  // the current chunk holds more than the overlap it started with
    const auto emit = [&] {
      if (!has_new) return;
      chunks.push_back({path, section.location, current, current_tokens + heading_tokens});
    };
    for (const auto& unit : units) {
      const std::string joined = current.empty() ? unit : current + "\n" + unit;
      const std::size_t joined_tokens = count_tokens(joined);
      if (!current.empty() && joined_tokens > budget) {
        emit();
        std::string carried = tail_within(current, overlap, count_tokens);
        current = carried.empty() ? unit : carried + "\n" + unit;
        current_tokens = count_tokens(current);
        if (current_tokens > budget) {  // the overlap does not fit beside this unit: drop it
          current = unit;
          current_tokens = count_tokens(unit);
        }
      } else {
        current = joined;
        current_tokens = joined_tokens;
      }
      has_new = true;
    }
    emit();
  }
  return chunks;
}

}  // namespace clawbot::kb
