#include "client/code_prompts.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>

#include "common/text.h"

namespace clawbot::client {

namespace {

using text::lower;

std::string_view trim(std::string_view s) {
  return text::trim(s, text::any_space);
}

bool starts_with_icase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && lower(s.substr(0, prefix.size())) == prefix;
}

struct LanguageEntry {
  std::string_view extension;  // lower case, with the dot; or a whole file name
  Language language;
};

constexpr std::array language_table{
    LanguageEntry{".c", {"C", "c", "Unity"}},
    LanguageEntry{".h", {"C/C++ header", "cpp", "GoogleTest"}},
    LanguageEntry{".cc", {"C++", "cpp", "GoogleTest"}},
    LanguageEntry{".cpp", {"C++", "cpp", "GoogleTest"}},
    LanguageEntry{".cxx", {"C++", "cpp", "GoogleTest"}},
    LanguageEntry{".hpp", {"C++", "cpp", "GoogleTest"}},
    LanguageEntry{".hh", {"C++", "cpp", "GoogleTest"}},
    LanguageEntry{".py", {"Python", "python", "pytest"}},
    LanguageEntry{".js", {"JavaScript", "javascript", "Jest"}},
    LanguageEntry{".jsx", {"JavaScript (React)", "jsx", "Jest"}},
    LanguageEntry{".mjs", {"JavaScript (ES module)", "javascript", "node:test"}},
    LanguageEntry{".cjs", {"JavaScript", "javascript", "Jest"}},
    LanguageEntry{".ts", {"TypeScript", "typescript", "Jest"}},
    LanguageEntry{".tsx", {"TypeScript (React)", "tsx", "Jest"}},
    LanguageEntry{".go", {"Go", "go", "the testing package"}},
    LanguageEntry{".rs", {"Rust", "rust", "Rust's built-in #[test]"}},
    LanguageEntry{".java", {"Java", "java", "JUnit 5"}},
    LanguageEntry{".kt", {"Kotlin", "kotlin", "JUnit 5"}},
    LanguageEntry{".cs", {"C#", "csharp", "xUnit"}},
    LanguageEntry{".rb", {"Ruby", "ruby", "RSpec"}},
    LanguageEntry{".php", {"PHP", "php", "PHPUnit"}},
    LanguageEntry{".swift", {"Swift", "swift", "XCTest"}},
    LanguageEntry{".sh", {"Shell", "bash", "bats"}},
    LanguageEntry{".bash", {"Bash", "bash", "bats"}},
    LanguageEntry{".lua", {"Lua", "lua", "busted"}},
    LanguageEntry{".sql", {"SQL", "sql", "pgTAP"}},
    LanguageEntry{".scala", {"Scala", "scala", "ScalaTest"}},
    LanguageEntry{".hs", {"Haskell", "haskell", "Hspec"}},
    LanguageEntry{".ex", {"Elixir", "elixir", "ExUnit"}},
    LanguageEntry{".exs", {"Elixir", "elixir", "ExUnit"}},
    LanguageEntry{".dart", {"Dart", "dart", "package:test"}},
    LanguageEntry{".r", {"R", "r", "testthat"}},
    LanguageEntry{".m", {"Objective-C", "objectivec", "XCTest"}},
    LanguageEntry{".zig", {"Zig", "zig", "Zig's built-in test blocks"}},
    LanguageEntry{"makefile", {"Makefile", "makefile", "a shell script with bats"}},
    LanguageEntry{"cmakelists.txt", {"CMake", "cmake", "CTest"}},
    LanguageEntry{"dockerfile", {"Dockerfile", "dockerfile", "container-structure-test"}},
};

constexpr Language plain_text{"plain text", "", "the language's usual unit-test framework"};

// Byte offset of the character `col` (1-based) in `line`; npos when the line is shorter than col - 1.
std::size_t byte_offset_of_column(std::string_view line, int col) {
  std::size_t offset = 0;
  for (int c = 1; c < col; ++c) {
    if (offset >= line.size()) return std::string_view::npos;
    ++offset;
    while (offset < line.size() && (static_cast<unsigned char>(line[offset]) & 0xC0) == 0x80) ++offset;
  }
  return offset;
}

int count_characters(std::string_view s) {
  int n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string fenced(std::string_view fence, std::string_view code) {
  std::string out = "```" + std::string(fence) + "\n" + std::string(code);
  if (!code.empty() && code.back() != '\n') out += '\n';
  return out + "```";
}

std::string where(std::string_view file_name, const Language& language) {
  return std::string(file_name) + " (" + std::string(language.name) + ")";
}

std::string line_range(const LineWindow& w) {
  if (!w.cut()) return "the whole file, " + std::to_string(w.total_lines) + " lines";
  return "lines " + std::to_string(w.first_line) + "-" + std::to_string(w.last_line) + " of " +
         std::to_string(w.total_lines) + " (the file is longer; only these lines are shown)";
}

// Skips a leading token of the answer line such as "- ", "* ", "• ", "**", "`".
std::string_view skip_decoration(std::string_view s) {
  for (bool again = true; again;) {
    again = false;
    s = trim(s);
    for (std::string_view mark : {"- ", "* ", "+ ", "\xE2\x80\xA2 ", "**", "`", "#"}) {
      if (s.starts_with(mark)) {
        s.remove_prefix(mark.size());
        again = true;
      }
    }
  }
  return s;
}

std::optional<int> leading_number(std::string_view& s) {
  std::size_t n = 0;
  while (n < s.size() && n < 9 && std::isdigit(static_cast<unsigned char>(s[n]))) ++n;
  if (n == 0) return std::nullopt;
  const int value = std::stoi(std::string(s.substr(0, n)));
  s.remove_prefix(n);
  return value;
}

std::optional<ReviewFinding> parse_finding_text(std::string_view text);

// One "LINE: reason" line, or nullopt. A list number ("1. Line 15: ...") is skipped when what follows is
// a finding of its own; otherwise "12) reason" reads as line 12.
std::optional<ReviewFinding> parse_finding(std::string_view text) {
  std::string_view rest = skip_decoration(text);
  if (leading_number(rest) && (rest.starts_with(". ") || rest.starts_with(") "))) {
    if (auto inner = parse_finding_text(rest.substr(2))) return inner;
  }
  return parse_finding_text(text);
}

std::optional<ReviewFinding> parse_finding_text(std::string_view text) {
  std::string_view s = skip_decoration(text);
  // "path/file.py:12: reason": drop a file name that ends in an extension before a colon.
  if (const auto colon = s.find(':'); colon != std::string_view::npos && colon > 0) {
    const std::string_view head = s.substr(0, colon);
    if (head.find(' ') == std::string_view::npos && head.find('.') != std::string_view::npos &&
        !std::isdigit(static_cast<unsigned char>(head.front())))
      s = s.substr(colon + 1);
  }
  s = skip_decoration(s);
  for (std::string_view word : {"lines", "line", "l.", "l"}) {
    if (!starts_with_icase(s, word)) continue;
    const std::string_view rest = trim(s.substr(word.size()));
    if (!rest.empty() && std::isdigit(static_cast<unsigned char>(rest.front()))) {
      s = rest;
      break;
    }
  }
  const auto line = leading_number(s);
  if (!line || *line < 1) return std::nullopt;
  // A range "12-14" or "12–14" cites its first line.
  for (std::string_view dash : {"-", "\xE2\x80\x93"}) {
    std::string_view rest = trim(s);
    if (rest.starts_with(dash)) {
      rest.remove_prefix(dash.size());
      rest = trim(rest);
      if (leading_number(rest)) s = rest;
      break;
    }
  }
  s = trim(s);
  while (s.starts_with("**") || s.starts_with("`")) s = trim(s.substr(s.starts_with("**") ? 2 : 1));
  bool separated = false;
  for (std::string_view sep : {":", ")", "|", "\xE2\x80\x94", "\xE2\x80\x93", "-", ","}) {
    if (s.starts_with(sep)) {
      s.remove_prefix(sep.size());
      separated = true;
      break;
    }
  }
  if (!separated) return std::nullopt;
  s = skip_decoration(s);
  while (s.ends_with("**")) s = trim(s.substr(0, s.size() - 2));
  if (s.empty()) return std::nullopt;
  return ReviewFinding{*line, std::string(s)};
}

bool says_no_issues(std::string_view answer) {
  const std::string text = lower(answer);
  for (std::string_view phrase : {"no issues", "no problems", "no errors", "no bugs", "no findings"})
    if (text.find(phrase) != std::string::npos) return true;
  return false;
}

}  // namespace

Language language_for(const std::filesystem::path& file) {
  const std::string name = lower(file.filename().string());
  const std::string extension = lower(file.extension().string());
  for (const auto& entry : language_table)
    if (entry.extension == name || (!extension.empty() && entry.extension == extension))
      return entry.language;
  return plain_text;
}

std::filesystem::path suggested_test_path(const std::filesystem::path& file) {
  const std::string stem = file.stem().string();
  const std::string ext = file.extension().string();
  const std::string lext = lower(ext);
  const auto dir = file.parent_path();
  std::string name;
  if (lext == ".py") {
    name = "test_" + stem + ext;
  } else if (lext == ".java" || lext == ".kt" || lext == ".cs" || lext == ".swift" || lext == ".php" ||
             lext == ".scala") {
    name = stem + "Test" + ext;
  } else if (lext == ".js" || lext == ".jsx" || lext == ".mjs" || lext == ".cjs" || lext == ".ts" ||
             lext == ".tsx") {
    name = stem + ".test" + ext;
  } else if (lext == ".rb") {
    name = stem + "_spec" + ext;
  } else if (lext == ".h" || lext == ".hpp" || lext == ".hh") {
    name = stem + "_test.cpp";
  } else if (lext == ".sh" || lext == ".bash") {
    name = stem + ".bats";
  } else if (lext == ".exs" || lext == ".ex") {
    name = stem + "_test.exs";
  } else {
    name = stem + "_test" + ext;
  }
  return dir / name;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  for (;;) {
    const auto nl = text.find('\n', start);
    if (nl == std::string_view::npos) {
      lines.push_back(text.substr(start));
      return lines;
    }
    std::string_view line = text.substr(start, nl - start);
    if (line.ends_with('\r')) line.remove_suffix(1);
    lines.push_back(line);
    start = nl + 1;
  }
}

void check_source_text(std::string_view text, const std::string& file_name) {
  if (text.find('\0') != std::string_view::npos)
    throw CodeInputError(file_name + " holds NUL bytes: it looks like a binary file, not source code");
}

CursorSplit split_at_cursor(std::string_view text, int line, std::optional<int> col) {
  const auto lines = split_lines(text);
  const int total = static_cast<int>(lines.size());
  if (line < 1 || line > total)
    throw CodeInputError("--line " + std::to_string(line) + " is outside the file: it has " +
                         std::to_string(total) + " line" + (total == 1 ? "" : "s") + " (allowed: 1 to " +
                         std::to_string(total) + ")");
  const std::string_view text_line = lines[static_cast<std::size_t>(line - 1)];
  const int width = count_characters(text_line);
  std::size_t in_line = text_line.size();
  if (col) {
    if (*col < 1 || *col > width + 1)
      throw CodeInputError("--col " + std::to_string(*col) + " is outside line " + std::to_string(line) +
                           ": it has " + std::to_string(width) + " characters (allowed: 1 to " +
                           std::to_string(width + 1) + ", where " + std::to_string(width + 1) +
                           " is the end of the line)");
    in_line = byte_offset_of_column(text_line, *col);
  }
  const auto offset = static_cast<std::size_t>(text_line.data() - text.data()) + in_line;
  return CursorSplit{std::string(text.substr(0, offset)), std::string(text.substr(offset))};
}

CursorWindow fit_around_cursor(const CursorSplit& split, std::size_t budget_bytes) {
  CursorWindow out{split.prefix, split.suffix, 0, 0};
  if (out.prefix.size() + out.suffix.size() <= budget_bytes) return out;
  // The cursor's own line: the prefix from its last line break, the suffix up to its first.
  const auto prefix_line_start = out.prefix.rfind('\n');
  const std::size_t prefix_keep_min =
      prefix_line_start == std::string::npos ? out.prefix.size() : out.prefix.size() - prefix_line_start - 1;
  const auto suffix_line_end = out.suffix.find('\n');
  const std::size_t suffix_keep_min =
      suffix_line_end == std::string::npos ? out.suffix.size() : suffix_line_end;
  const std::size_t room =
      budget_bytes > prefix_keep_min + suffix_keep_min ? budget_bytes - prefix_keep_min - suffix_keep_min : 0;
  const std::size_t prefix_extra = out.prefix.size() - prefix_keep_min;
  const std::size_t suffix_extra = out.suffix.size() - suffix_keep_min;
  std::size_t take_suffix = std::min(suffix_extra, room / 4);
  const std::size_t take_prefix = std::min(prefix_extra, room - take_suffix);
  take_suffix = std::min(suffix_extra, room - take_prefix);

  if (take_prefix < prefix_extra) {
    // Start at a line boundary inside the allowed tail.
    std::size_t start = out.prefix.size() - prefix_keep_min - take_prefix;
    if (start > 0 && out.prefix[start - 1] != '\n') {
      const auto next = out.prefix.find('\n', start);
      start = next == std::string::npos ? out.prefix.size() : next + 1;
    }
    out.lines_dropped_before = static_cast<int>(
        std::count(out.prefix.begin(), out.prefix.begin() + static_cast<std::ptrdiff_t>(start), '\n'));
    out.prefix.erase(0, start);
  }
  if (take_suffix < suffix_extra) {
    // End after the last whole line that fits.
    std::size_t end = suffix_keep_min + take_suffix;
    const auto last_break = out.suffix.rfind('\n', end);
    end = last_break == std::string::npos || last_break < suffix_keep_min ? suffix_keep_min : last_break;
    out.lines_dropped_after = static_cast<int>(
        std::count(out.suffix.begin() + static_cast<std::ptrdiff_t>(end), out.suffix.end(), '\n'));
    out.suffix.resize(end);
  }
  return out;
}

LineWindow window_around_line(std::string_view text, int focus_line, std::size_t budget_bytes) {
  const auto lines = split_lines(text);
  LineWindow w;
  w.total_lines = static_cast<int>(lines.size());
  if (text.ends_with('\n') && w.total_lines > 1) --w.total_lines;  // the empty "line" after the last break
  const int focus = std::clamp(focus_line, 1, w.total_lines);
  auto size_of = [&](int line) { return lines[static_cast<std::size_t>(line - 1)].size() + 1; };
  w.first_line = w.last_line = focus;
  std::size_t used = size_of(focus);
  // Grow one line at a time on alternate sides, so the focus stays in the middle; a side that reaches the
  // file's edge leaves its share to the other.
  for (bool grew = true; grew;) {
    grew = false;
    if (w.last_line < w.total_lines && used + size_of(w.last_line + 1) <= budget_bytes) {
      used += size_of(++w.last_line);
      grew = true;
    }
    if (w.first_line > 1 && used + size_of(w.first_line - 1) <= budget_bytes) {
      used += size_of(--w.first_line);
      grew = true;
    }
  }
  for (int line = w.first_line; line <= w.last_line; ++line) {
    if (line > w.first_line) w.text += '\n';
    w.text += lines[static_cast<std::size_t>(line - 1)];
  }
  return w;
}

std::string numbered_lines(const LineWindow& window) {
  const int width = static_cast<int>(std::to_string(window.last_line).size());
  std::string out;
  int line = window.first_line;
  for (std::string_view text : split_lines(window.text)) {
    std::string number = std::to_string(line++);
    out += std::string(static_cast<std::size_t>(width) - number.size(), ' ') + number + "| ";
    out += text;
    out += '\n';
  }
  return out;
}

std::size_t code_byte_budget(std::int64_t context_tokens, std::int64_t answer_tokens,
                             std::int64_t overhead_tokens, double tokens_per_byte, std::size_t floor_bytes) {
  const std::int64_t tokens = context_tokens - answer_tokens - overhead_tokens;
  if (tokens <= 0 || tokens_per_byte <= 0) return floor_bytes;
  return std::max(floor_bytes,
                  static_cast<std::size_t>(std::floor(static_cast<double>(tokens) / tokens_per_byte)));
}

std::vector<ChatMessage> completion_messages(const Language& language, std::string_view file_name,
                                             const CursorWindow& window) {
  std::string system =
      "You are a code completion engine. The user shows you a file with the marker " +
      std::string(cursor_marker) + " where the cursor is. Reply with only the code to insert at " +
      std::string(cursor_marker) +
      ": no explanation, no Markdown fence, and none of the code that is already before or after it.";
  std::string user = "File " + where(file_name, language) +
                     (window.cut() ? ", shown in part around the cursor" : std::string()) + ":\n" +
                     fenced(language.fence, window.prefix + std::string(cursor_marker) + window.suffix) +
                     "\nWrite the code that belongs at " + std::string(cursor_marker) + ".";
  return {{"system", std::move(system)}, {"user", std::move(user)}};
}

std::vector<ChatMessage> review_messages(const Language& language, std::string_view file_name,
                                         const LineWindow& window) {
  std::string system =
      "You review " + std::string(language.name) +
      " code for likely errors: bugs, crashes, wrong logic, off-by-one mistakes, unhandled errors, resource "
      "leaks, security problems. Each code line starts with its line number and '|'. Answer with one line "
      "per "
      "problem, exactly in the form\nLINE: reason\nwhere LINE is that line number, most serious first. "
      "Report "
      "only real problems, not style. If there are none, answer exactly: NO ISSUES";
  std::string user = "Review " + where(file_name, language) + ", " + line_range(window) + ":\n" +
                     fenced(language.fence, numbered_lines(window));
  return {{"system", std::move(system)}, {"user", std::move(user)}};
}

std::vector<ChatMessage> tests_messages(const Language& language, std::string_view file_name,
                                        const LineWindow& window, std::string_view test_file_name) {
  std::string system = "You write unit tests. Write one complete, runnable " + std::string(language.name) +
                       " test file using " + std::string(language.test_framework) +
                       " for the code the user gives: normal cases, edge cases and error cases, each test "
                       "named after what it checks. Answer with the test file in one ```" +
                       std::string(language.fence) + " code block and nothing else.";
  std::string user = "Write " + std::string(language.test_framework) + " tests for " +
                     where(file_name, language) + "; they will be saved as " + std::string(test_file_name) +
                     ". The code, " + line_range(window) + ":\n" + fenced(language.fence, window.text);
  return {{"system", std::move(system)}, {"user", std::move(user)}};
}

std::string clean_completion(std::string_view answer) {
  bool fenced_block = false;
  std::string code = extract_code(answer, &fenced_block);
  if (!fenced_block) code = std::string(answer);  // keep the model's own leading/trailing whitespace
  for (auto at = code.find(cursor_marker); at != std::string::npos; at = code.find(cursor_marker))
    code.erase(at, cursor_marker.size());
  return code;
}

std::string extract_code(std::string_view answer, bool* fenced_out) {
  std::string best;
  bool found = false;
  std::size_t pos = 0;
  while ((pos = answer.find("```", pos)) != std::string_view::npos) {
    const auto body_start = answer.find('\n', pos);
    if (body_start == std::string_view::npos) break;
    auto close = answer.find("\n```", body_start);
    const std::string_view body = close == std::string_view::npos
                                      ? answer.substr(body_start + 1)
                                      : answer.substr(body_start + 1, close - body_start);
    if (!found || body.size() > best.size()) best = std::string(body);
    found = true;
    if (close == std::string_view::npos) break;
    pos = close + 4;
  }
  if (fenced_out) *fenced_out = found;
  if (!found) return std::string(trim(answer)) + (trim(answer).empty() ? "" : "\n");
  if (!best.empty() && best.back() != '\n') best += '\n';
  return best;
}

namespace {

enum class CommentStyle { hash, slashes, none };

CommentStyle comment_style(const Language& language) {
  const std::string_view fence = language.fence;
  for (std::string_view hash : {"python", "bash", "ruby", "r", "elixir", "makefile", "cmake", "dockerfile"})
    if (fence == hash) return CommentStyle::hash;
  for (std::string_view none : {"sql", "haskell", "lua"})
    if (fence == none) return CommentStyle::none;
  return CommentStyle::slashes;
}

// The first bracket that does not balance, outside strings and comments; empty when all do. Also leaves, per
// line, the bracket depth at its end, -1 for a line that ends inside a string (for Python's indentation
// check).
std::string unbalanced_bracket(std::string_view code, CommentStyle comments, bool python,
                               std::vector<int>* depth_at_line_end) {
  std::vector<std::pair<char, int>> open;  // bracket, line
  int line = 1;
  const auto at_end_of_line = [&] {
    if (depth_at_line_end) depth_at_line_end->push_back(static_cast<int>(open.size()));
  };
  for (std::size_t i = 0; i < code.size(); ++i) {
    const char c = code[i];
    if (c == '\n') {
      at_end_of_line();
      ++line;
      continue;
    }
    const bool hash_comment = comments == CommentStyle::hash && c == '#';
    const bool line_comment = comments == CommentStyle::slashes && code.substr(i).starts_with("//");
    if (hash_comment || line_comment) {
      while (i + 1 < code.size() && code[i + 1] != '\n') ++i;
      continue;
    }
    if (comments == CommentStyle::slashes && code.substr(i).starts_with("/*")) {
      const auto end = code.find("*/", i + 2);
      for (std::size_t k = i; k < std::min(end, code.size()); ++k)
        if (code[k] == '\n') at_end_of_line(), ++line;
      if (end == std::string_view::npos) return "a /* comment that never ends";
      i = end + 1;
      continue;
    }
    if (c == '"' || c == '\'' || c == '`') {
      // A string: Python's triple quotes may span lines, others end at their line (or, for `, anywhere).
      const bool triple = python && code.substr(i).starts_with(std::string(3, c));
      const std::string_view close =
          triple ? std::string_view(code.substr(i, 3)) : std::string_view(&code[i], 1);
      const int started = line;
      std::size_t k = i + close.size();
      for (; k < code.size(); ++k) {
        if (code[k] == '\\') {
          ++k;
          continue;
        }
        if (code.substr(k).starts_with(close)) break;
        if (code[k] == '\n') {
          if (!triple && c != '`')
            return "a string on line " + std::to_string(started) + " that is never closed";
          if (depth_at_line_end) depth_at_line_end->push_back(-1);  // the line ends inside a string
          ++line;
        }
      }
      if (k >= code.size()) return "a string on line " + std::to_string(started) + " that is never closed";
      i = k + close.size() - 1;
      continue;
    }
    if (c == '(' || c == '[' || c == '{') {
      open.emplace_back(c, line);
    } else if (c == ')' || c == ']' || c == '}') {
      const char want = c == ')' ? '(' : c == ']' ? '[' : '{';
      if (open.empty() || open.back().first != want)
        return std::string("a '") + c + "' on line " + std::to_string(line) + " that closes nothing";
      open.pop_back();
    }
  }
  at_end_of_line();
  if (!open.empty())
    return std::string("a '") + open.back().first + "' on line " + std::to_string(open.back().second) +
           " that is never closed";
  return {};
}

bool contains_any(std::string_view text, std::initializer_list<std::string_view> words) {
  return std::any_of(words.begin(), words.end(),
                     [&](std::string_view w) { return text.find(w) != text.npos; });
}

}  // namespace

std::string test_file_problem(const Language& language, std::string_view code) {
  if (trim(code).empty()) return "it is empty";
  const std::string_view fence = language.fence;
  const bool python = fence == "python";
  std::vector<int> depth;
  if (std::string bracket = unbalanced_bracket(code, comment_style(language), python, &depth);
      !bracket.empty())
    return bracket;
  if (python) {
    // A line may be indented deeper than the one before only after a ':' or inside brackets.
    const auto lines = split_lines(code);
    std::size_t previous_indent = 0;
    std::string_view previous;
    for (std::size_t n = 0; n < lines.size(); ++n) {
      const std::string_view text = lines[n];
      const auto first = text.find_first_not_of(" \t");
      if (first == std::string_view::npos || text[first] == '#') continue;
      if (n > 0 && n - 1 < depth.size() && depth[n - 1] < 0) continue;  // inside a """string"""
      const bool continued =
          !previous.empty() && (trim(previous).ends_with(':') || trim(previous).ends_with('\\') ||
                                (n > 0 && n - 1 < depth.size() && depth[n - 1] > 0));
      if (first > previous_indent && !continued)
        return "line " + std::to_string(n + 1) + " is indented where no block begins";
      previous_indent = first;
      previous = text;
    }
  }
  // Something the framework runs.
  bool runnable = true;
  if (python) {
    runnable = contains_any(code, {"def test", "unittest", "assert"});
  } else if (fence == "cpp" || fence == "c") {
    runnable = contains_any(
        code, {"TEST(", "TEST_F(", "TEST_P(", "TEST_CASE(", "EXPECT_", "ASSERT_", "assert", "TEST_ASSERT"});
  } else if (fence == "javascript" || fence == "typescript" || fence == "jsx" || fence == "tsx") {
    runnable = contains_any(code, {"test(", "it(", "describe("});
  } else if (fence == "go") {
    runnable = contains_any(code, {"func Test"});
  } else if (fence == "rust") {
    runnable = contains_any(code, {"#[test]"});
  } else if (fence == "java" || fence == "kotlin") {
    runnable = contains_any(code, {"@Test"});
  }
  if (!runnable) return "no test in it for " + std::string(language.test_framework) + " to run";
  return {};
}

ReviewResult parse_review(std::string_view answer, int first_line, int last_line) {
  ReviewResult result;
  for (std::string_view text : split_lines(answer)) {
    auto finding = parse_finding(text);
    if (!finding) continue;
    if (finding->line < first_line || finding->line > last_line) {
      ++result.out_of_range;
      continue;
    }
    result.findings.push_back(std::move(*finding));
  }
  if (!result.findings.empty()) {
    result.status = ReviewStatus::findings;
  } else if (trim(answer) == "NO ISSUES" || (result.out_of_range == 0 && says_no_issues(answer))) {
    result.status = ReviewStatus::no_findings;
  } else {
    result.status = ReviewStatus::unparsed;
  }
  return result;
}

std::string_view review_status_name(ReviewStatus status) {
  switch (status) {
    case ReviewStatus::findings:
      return "findings";
    case ReviewStatus::no_findings:
      return "no_findings";
    case ReviewStatus::unparsed:
      return "unparsed";
  }
  return "unparsed";
}

}  // namespace clawbot::client
