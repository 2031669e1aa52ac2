// `clawbot code`'s pure parts: languages, cursor and line windows, prompts, reading the answers.
#include "client/code_prompts.h"

#include <gtest/gtest.h>

#include <string>

namespace clawbot::client {
namespace {

std::string numbered_file(int lines) {
  std::string text;
  for (int i = 1; i <= lines; ++i) text += "line " + std::to_string(i) + "\n";
  return text;
}

TEST(CodeLanguage, FromExtensionAndName) {
  EXPECT_EQ(language_for("src/a.py").name, "Python");
  EXPECT_EQ(language_for("src/a.py").test_framework, "pytest");
  EXPECT_EQ(language_for("A.CPP").name, "C++");  // case does not matter
  EXPECT_EQ(language_for("x/main.go").fence, "go");
  EXPECT_EQ(language_for("Makefile").name, "Makefile");
  EXPECT_EQ(language_for("notes.unknownext").name, "plain text");
  EXPECT_EQ(language_for("README").name, "plain text");
}

TEST(CodeLanguage, SuggestedTestPathFollowsEachFrameworksHabit) {
  EXPECT_EQ(suggested_test_path("pkg/calc.py"), "pkg/test_calc.py");
  EXPECT_EQ(suggested_test_path("calc.go"), "calc_test.go");
  EXPECT_EQ(suggested_test_path("src/Calc.java"), "src/CalcTest.java");
  EXPECT_EQ(suggested_test_path("calc.ts"), "calc.test.ts");
  EXPECT_EQ(suggested_test_path("calc.cpp"), "calc_test.cpp");
  EXPECT_EQ(suggested_test_path("calc.hpp"), "calc_test.cpp");
  EXPECT_EQ(suggested_test_path("calc.rb"), "calc_spec.rb");
}

TEST(CodeCursor, SplitsAtLineAndColumn) {
  const std::string text = "def add(a, b):\n    return a + b\n";
  auto split = split_at_cursor(text, 2, 5);
  EXPECT_EQ(split.prefix, "def add(a, b):\n    ");
  EXPECT_EQ(split.suffix, "return a + b\n");
  split = split_at_cursor(text, 1, std::nullopt);  // the end of line 1
  EXPECT_EQ(split.prefix, "def add(a, b):");
  EXPECT_EQ(split.suffix, "\n    return a + b\n");
  split = split_at_cursor(text, 3, 1);  // the empty line after the last break
  EXPECT_EQ(split.prefix, text);
  EXPECT_EQ(split.suffix, "");
}

TEST(CodeCursor, ColumnsCountCharactersNotBytes) {
  const std::string text = "s = \"h\xC3\xA9llo\"\n";  // é is two bytes
  const auto split = split_at_cursor(text, 1, 9);     // after "s = "hél: é is the 7th character
  EXPECT_EQ(split.prefix, "s = \"h\xC3\xA9l");
  EXPECT_EQ(split.suffix, "lo\"\n");
}

TEST(CodeCursor, OutsideTheFileNamesTheLimits) {
  const std::string text = "a\nbc\n";
  try {
    split_at_cursor(text, 9, std::nullopt);
    FAIL() << "line 9 of a 3-line file";
  } catch (const CodeInputError& e) {
    EXPECT_NE(std::string(e.what()).find("--line 9 is outside the file: it has 3 lines (allowed: 1 to 3)"),
              std::string::npos)
        << e.what();
  }
  try {
    split_at_cursor(text, 2, 4);
    FAIL() << "column 4 of a 2-character line";
  } catch (const CodeInputError& e) {
    EXPECT_NE(std::string(e.what()).find("--col 4 is outside line 2: it has 2 characters (allowed: 1 to 3"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(split_at_cursor(text, 0, std::nullopt), CodeInputError);
}

TEST(CodeCursor, BinaryFilesAreRefused) {
  EXPECT_THROW(check_source_text(std::string("ELF\0\x01", 5), "a.out"), CodeInputError);
  EXPECT_NO_THROW(check_source_text("int x;\n", "a.c"));
}

TEST(CodeCursorWindow, SmallFilesAreSentWhole) {
  const auto split = split_at_cursor(numbered_file(10), 5, 1);
  const auto window = fit_around_cursor(split, 10'000);
  EXPECT_FALSE(window.cut());
  EXPECT_EQ(window.prefix + window.suffix, numbered_file(10));
}

TEST(CodeCursorWindow, LargeFilesKeepWholeLinesNearTheCursorThreeToOne) {
  const std::string text = numbered_file(1000);  // "line N\n": 7 to 10 bytes a line
  const auto split = split_at_cursor(text, 500, 1);
  const auto window = fit_around_cursor(split, 400);
  ASSERT_TRUE(window.cut());
  EXPECT_LE(window.prefix.size() + window.suffix.size(), 400u);
  // Whole lines: the prefix starts at a line's start, the suffix ends at a line's end.
  EXPECT_TRUE(window.prefix.starts_with("line "));
  EXPECT_TRUE(window.suffix.starts_with("line 500\n"));
  EXPECT_FALSE(window.suffix.ends_with("\n"));
  EXPECT_TRUE(window.prefix.ends_with("line 499\n"));
  // About three parts before the cursor to one after.
  EXPECT_GT(window.prefix.size(), 2 * window.suffix.size());
  EXPECT_GT(window.suffix.size(), 50u);
  // What was dropped adds up to the file.
  const auto kept_before = std::count(window.prefix.begin(), window.prefix.end(), '\n');
  EXPECT_EQ(window.lines_dropped_before + kept_before, 499);
  const auto kept_after = std::count(window.suffix.begin(), window.suffix.end(), '\n') + 1;
  EXPECT_EQ(window.lines_dropped_after + kept_after,
            1001 - 499);  // 502 lines from the cursor's, the last empty
}

TEST(CodeCursorWindow, ShareNotNeededGoesToTheOtherSide) {
  const std::string text = numbered_file(1000);
  const auto at_end = fit_around_cursor(split_at_cursor(text, 999, 1), 400);
  EXPECT_EQ(at_end.lines_dropped_after, 0);  // "line 999\nline 1000\n": all of the suffix fits
  EXPECT_GT(at_end.prefix.size(), 300u);     // and the prefix takes the rest
  const auto at_start = fit_around_cursor(split_at_cursor(text, 2, 1), 400);
  EXPECT_EQ(at_start.lines_dropped_before, 0);
  EXPECT_GT(at_start.suffix.size(), 300u);
}

TEST(CodeLineWindow, CentredOnTheFocusAndWithinBudget) {
  const std::string text = numbered_file(1000);
  const auto window = window_around_line(text, 500, 200);
  EXPECT_TRUE(window.cut());
  EXPECT_EQ(window.total_lines, 1000);
  EXPECT_LE(window.first_line, 500);
  EXPECT_GE(window.last_line, 500);
  EXPECT_LE(std::abs((500 - window.first_line) - (window.last_line - 500)), 1);
  EXPECT_LE(window.text.size() + 1, 200u);
  EXPECT_TRUE(window.text.starts_with("line " + std::to_string(window.first_line) + "\n"));
  EXPECT_TRUE(window.text.ends_with("line " + std::to_string(window.last_line)));
}

TEST(CodeLineWindow, WholeFileWhenItFitsAndAtTheEdges) {
  const auto whole = window_around_line(numbered_file(5), 1, 10'000);
  EXPECT_FALSE(whole.cut());
  EXPECT_EQ(whole.first_line, 1);
  EXPECT_EQ(whole.last_line, 5);
  const auto start = window_around_line(numbered_file(1000), 1, 200);
  EXPECT_EQ(start.first_line, 1);
  EXPECT_GT(start.last_line, 15);
  const auto beyond = window_around_line(numbered_file(1000), 5000, 200);  // clamped to the last line
  EXPECT_EQ(beyond.last_line, 1000);
}

TEST(CodeLineWindow, NumberedLinesAreAligned) {
  const auto window = window_around_line(numbered_file(12), 1, 10'000);
  const std::string numbered = numbered_lines(window);
  EXPECT_TRUE(numbered.starts_with(" 1| line 1\n 2| line 2\n"));
  EXPECT_NE(numbered.find("\n12| line 12\n"), std::string::npos);
}

TEST(CodeBudget, LeavesRoomForAnswerAndInstructions) {
  EXPECT_EQ(code_byte_budget(4096, 1024, 200, 0.4), static_cast<std::size_t>((4096 - 1024 - 200) / 0.4));
  EXPECT_EQ(code_byte_budget(512, 600, 200, 0.4), 64u);  // never nothing
}

TEST(CodePrompts, CompletionMarksTheCursor) {
  const CursorWindow window{"def add(a, b):\n    ", "\n", 0, 0};
  const auto messages = completion_messages(language_for("m.py"), "m.py", window);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].role, "system");
  EXPECT_NE(messages[1].content.find("```python\ndef add(a, b):\n    <CURSOR>\n```"), std::string::npos)
      << messages[1].content;
  EXPECT_NE(messages[1].content.find("m.py (Python)"), std::string::npos);
}

TEST(CodePrompts, ReviewShowsLineNumbersAndTheForm) {
  const auto window = window_around_line("int f(int n) {\n  return 10 / n;\n}\n", 1, 10'000);
  const auto messages = review_messages(language_for("f.c"), "f.c", window);
  EXPECT_NE(messages[0].content.find("LINE: reason"), std::string::npos);
  EXPECT_NE(messages[0].content.find("NO ISSUES"), std::string::npos);
  EXPECT_NE(messages[1].content.find("2|   return 10 / n;"), std::string::npos) << messages[1].content;
  EXPECT_NE(messages[1].content.find("the whole file, 3 lines"), std::string::npos);
}

TEST(CodePrompts, TestsNameTheFrameworkAndSayWhenCut) {
  const auto window = window_around_line(numbered_file(1000), 10, 100);
  const auto messages = tests_messages(language_for("calc.go"), "calc.go", window, "calc_test.go");
  EXPECT_NE(messages[0].content.find("the testing package"), std::string::npos);
  EXPECT_NE(messages[1].content.find("calc_test.go"), std::string::npos);
  EXPECT_NE(messages[1].content.find("of 1000 (the file is longer"), std::string::npos)
      << messages[1].content;
}

TEST(CodeAnswers, CleanCompletionDropsFencesAndMarkers) {
  EXPECT_EQ(clean_completion("```python\nreturn a + b\n```"), "return a + b\n");
  EXPECT_EQ(clean_completion("return a + b<CURSOR>"), "return a + b");
  EXPECT_EQ(clean_completion("  x = 1"), "  x = 1");  // the model's own indentation stays
}

TEST(CodeAnswers, ExtractCodeTakesTheLongestBlock) {
  bool fenced = false;
  EXPECT_EQ(extract_code(
                "Here:\n```py\nshort\n```\nand\n```python\nimport pytest\n\ndef test_x():\n    pass\n```\n",
                &fenced),
            "import pytest\n\ndef test_x():\n    pass\n");
  EXPECT_TRUE(fenced);
  EXPECT_EQ(extract_code("```go\npackage calc\nfunc TestAdd(", &fenced),
            "package calc\nfunc TestAdd(\n");  // cut off
  EXPECT_TRUE(fenced);
  EXPECT_EQ(extract_code("  def test(): pass  ", &fenced), "def test(): pass\n");
  EXPECT_FALSE(fenced);
  EXPECT_EQ(extract_code("   ", &fenced), "");
}

TEST(CodeReview, ParsesTheUsualShapesOfLineReason) {
  const std::string answer =
      "Here are the problems:\n"
      "3: x is never initialised\n"
      "- Line 7: division by zero when n is 0\n"
      "* **12** \xE2\x80\x94 off-by-one in the loop bound\n"
      "f.py:14: file handle is never closed\n"
      "1. Line 15: shadowed variable\n"
      "20-22: unreachable code\n"
      "L30) missing return\n"
      "The rest looks fine.\n";
  const auto result = parse_review(answer, 1, 40);
  ASSERT_EQ(result.status, ReviewStatus::findings);
  ASSERT_EQ(result.findings.size(), 7u);
  EXPECT_EQ(result.findings[0].line, 3);
  EXPECT_EQ(result.findings[0].reason, "x is never initialised");
  EXPECT_EQ(result.findings[1].line, 7);
  EXPECT_EQ(result.findings[1].reason, "division by zero when n is 0");
  EXPECT_EQ(result.findings[2].line, 12);
  EXPECT_EQ(result.findings[2].reason, "off-by-one in the loop bound");
  EXPECT_EQ(result.findings[3].line, 14);
  EXPECT_EQ(result.findings[4].line, 15);
  EXPECT_EQ(result.findings[4].reason, "shadowed variable");
  EXPECT_EQ(result.findings[5].line, 20);
  EXPECT_EQ(result.findings[5].reason, "unreachable code");
  EXPECT_EQ(result.findings[6].line, 30);
}

TEST(CodeReview, LinesOutsideTheWindowAreDropped) {
  const auto result = parse_review("3: fine line\n99: beyond the window\n", 1, 10);
  ASSERT_EQ(result.findings.size(), 1u);
  EXPECT_EQ(result.out_of_range, 1);
  const auto only_outside = parse_review("99: beyond the window\n", 1, 10);
  EXPECT_EQ(only_outside.status, ReviewStatus::unparsed);
}

TEST(CodeReview, NoIssuesAndNonsenseAreToldApart) {
  EXPECT_EQ(parse_review("NO ISSUES", 1, 10).status, ReviewStatus::no_findings);
  EXPECT_EQ(parse_review("I found no issues in this code.", 1, 10).status, ReviewStatus::no_findings);
  EXPECT_EQ(parse_review("Once upon a time there was a little dog.", 1, 10).status, ReviewStatus::unparsed);
  EXPECT_EQ(parse_review("", 1, 10).status, ReviewStatus::unparsed);
  // Prose that merely starts with a number is not a finding.
  EXPECT_EQ(parse_review("3 little pigs went to market", 1, 10).status, ReviewStatus::unparsed);
  EXPECT_EQ(review_status_name(ReviewStatus::no_findings), "no_findings");
}

// Issue 17: `code tests -o` keeps prose and broken code out of the test file.
TEST(CodeTests, ProseAndBrokenCodeAreNotTestFiles) {
  const Language python = language_for("calc.py");
  const Language cpp = language_for("calc.cpp");
  EXPECT_EQ(test_file_problem(python, "import pytest\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"), "");
  EXPECT_EQ(test_file_problem(python,
                              "def test_doc():\n    \"\"\"It's fine:\n        indented docs\n    \"\"\"\n"
                              "    x = f(1,\n          2)\n    assert x == {'a': [1]}  # a ( in a comment\n"),
            "");
  EXPECT_NE(test_file_problem(python, "Here are some tests you could write for add. They check it works.\n"),
            "");
  EXPECT_NE(test_file_problem(python, "def test_add(:\n    assert add(1, 2) == 3\n").find("never closed"),
            std::string::npos);
  EXPECT_NE(
      test_file_problem(python, "import pytest\n    def test_add():\n    assert True\n").find("indented"),
      std::string::npos);
  EXPECT_NE(test_file_problem(python, "def test_x():\n    s = 'unclosed\n    assert s\n").find("string"),
            std::string::npos);
  EXPECT_EQ(test_file_problem(cpp,
                              "#include <gtest/gtest.h>\n// a } in a comment\nTEST(Calc, Adds) {\n"
                              "  EXPECT_EQ(add(1, 2), 3);  /* { */\n  const char* s = \"}\";\n}\n"),
            "");
  EXPECT_NE(test_file_problem(cpp, "TEST(Calc, Adds) {\n  EXPECT_EQ(add(1, 2), 3);\n"), "");
  EXPECT_NE(test_file_problem(cpp, "int main() { return add(1, 2) == 3 ? 0 : 1; }\n").find("no test"),
            std::string::npos);
  EXPECT_NE(test_file_problem(python, ""), "");
}

}  // namespace
}  // namespace clawbot::client
