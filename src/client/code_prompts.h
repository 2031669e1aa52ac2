// What `clawbot code` sends and how it reads the answers: pure functions, no network.
//
// Lines and columns are 1-based, as editors show them; a column counts characters (UTF-8 code points).
// Large files are cut to whole lines around the point of interest, within a byte budget that the caller
// derives from the model's context (tokens ≈ bytes × tokens_per_byte).
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "client/api_client.h"
#include "common/error.h"

namespace clawbot::client {

// A request that cannot be made from this input (a line beyond the end, a binary file): the message says
// what was asked, what the file holds and what is allowed.
class CodeInputError : public ClawbotError {
 public:
  explicit CodeInputError(const std::string& message) : ClawbotError(ErrorKind::internal, message) {}
};

struct Language {
  std::string_view name;            // "Python"; "plain text" when the extension is unknown
  std::string_view fence;           // Markdown code-fence tag: "python"
  std::string_view test_framework;  // the usual unit-test framework: "pytest"
};

// By file extension (and a few well-known names such as Makefile).
Language language_for(const std::filesystem::path& file);
// Where that framework's tests for `file` usually live: foo.py → test_foo.py, foo.go → foo_test.go,
// Foo.java → FooTest.java, foo.ts → foo.test.ts (same directory).
std::filesystem::path suggested_test_path(const std::filesystem::path& file);

// The file's lines without their line breaks; "a\nb\n" has three: "a", "b" and the empty line after.
std::vector<std::string_view> split_lines(std::string_view text);

// Refuses text that is not a source file (NUL bytes); the message names the file.
void check_source_text(std::string_view text, const std::string& file_name);

struct CursorSplit {
  std::string prefix;  // everything before the cursor
  std::string suffix;  // everything from the cursor on
};
// `col` absent: the end of the line. Throws CodeInputError for a line or column outside the file.
CursorSplit split_at_cursor(std::string_view text, int line, std::optional<int> col);

// The code around a cursor that fits the budget: whole lines are dropped from the start of the prefix and
// the end of the suffix, three parts prefix to one part suffix (a share one side does not need goes to the
// other). The line holding the cursor is always kept.
struct CursorWindow {
  std::string prefix;
  std::string suffix;
  int lines_dropped_before = 0;
  int lines_dropped_after = 0;
  bool cut() const noexcept { return lines_dropped_before > 0 || lines_dropped_after > 0; }
};
CursorWindow fit_around_cursor(const CursorSplit& split, std::size_t budget_bytes);

// A run of whole lines [first_line, last_line] that fits the budget, centred on `focus_line` where it can be.
struct LineWindow {
  int first_line = 1;
  int last_line = 0;
  int total_lines = 0;
  std::string text;  // those lines, joined with '\n'
  bool cut() const noexcept { return first_line > 1 || last_line < total_lines; }
};
LineWindow window_around_line(std::string_view text, int focus_line, std::size_t budget_bytes);

// The window with a line number before each line ("  12| code"), so a review can cite lines.
std::string numbered_lines(const LineWindow& window);

// The byte budget for code in a prompt: what is left of `context_tokens` after the answer and the
// instructions, converted at `tokens_per_byte`. At least `floor_bytes`, so a tiny context still sends a line.
std::size_t code_byte_budget(std::int64_t context_tokens, std::int64_t answer_tokens,
                             std::int64_t overhead_tokens, double tokens_per_byte,
                             std::size_t floor_bytes = 64);

// The prompts.
inline constexpr std::string_view cursor_marker = "<CURSOR>";
std::vector<ChatMessage> completion_messages(const Language& language, std::string_view file_name,
                                             const CursorWindow& window);
std::vector<ChatMessage> review_messages(const Language& language, std::string_view file_name,
                                         const LineWindow& window);
std::vector<ChatMessage> tests_messages(const Language& language, std::string_view file_name,
                                        const LineWindow& window, std::string_view test_file_name);

// A completion answered through chat: the code without the Markdown fence a chat model tends to add, and
// without a repeated cursor marker.
std::string clean_completion(std::string_view answer);

// The test file in an answer: the longest fenced block (an unclosed one runs to the end, as when the answer
// was cut at max_tokens), else the whole answer; `fenced` says which.
std::string extract_code(std::string_view answer, bool* fenced = nullptr);

// Why `code` cannot be a test file for `language` (empty when it can be one): brackets that do not balance
// (outside strings and comments), Python indented where no block opens, or nothing that its framework would
// run (a test function, TEST(...), an assertion, ...). A cheap check that keeps prose out of a test file;
// Python's own parser, where there is one, is the caller's.
std::string test_file_problem(const Language& language, std::string_view code);

struct ReviewFinding {
  int line = 0;
  std::string reason;
};
enum class ReviewStatus { findings, no_findings, unparsed };
struct ReviewResult {
  ReviewStatus status = ReviewStatus::unparsed;
  std::vector<ReviewFinding> findings;
  int out_of_range = 0;  // "LINE: reason" lines whose line is not in the reviewed window (dropped)
};
// Reads "LINE: reason" lines ("12: ...", "- Line 12: ...", "**12** — ...", "file.py:12: ...", "12-14: ...")
// from the answer; "NO ISSUES" (or a plain "no issues/problems/errors found") is no_findings; anything else
// is unparsed. Findings outside [first_line, last_line] are dropped and counted.
ReviewResult parse_review(std::string_view answer, int first_line, int last_line);
std::string_view review_status_name(ReviewStatus status);  // "findings", "no_findings", "unparsed"

}  // namespace clawbot::client
