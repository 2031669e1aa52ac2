#include "common/json_read.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace clawbot::json_read {
namespace {

std::string nested(std::size_t levels, char open = '[', char close = ']') {
  return std::string(levels, open) + std::string(levels, close);
}

TEST(JsonRead, DepthCountsOnlyBracketsOutsideStrings) {
  EXPECT_EQ(nesting_depth(R"({"a":[1,[2]]})", 100), 3u);
  EXPECT_EQ(nesting_depth(R"(["[[[[", "\"[[[", {"k\\":"]]]]"}])", 100), 2u);
  EXPECT_EQ(nesting_depth("42", 100), 0u);
  // Stops as soon as the limit is passed, whatever follows.
  EXPECT_EQ(nesting_depth(nested(100000), 128), 129u);
}

TEST(JsonRead, HundredThousandLevelsAreRefusedWithoutRecursion) {
  for (const auto& text :
       {nested(100000), nested(100000, '{', '}'), "{\"messages\":" + nested(100000) + "}"}) {
    const Result r = parse(text);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.failure.code, "json_too_deep");
    EXPECT_NE(r.failure.message.find("128"), std::string::npos) << r.failure.message;
  }
}

TEST(JsonRead, TheLimitItselfIsAllowed) {
  EXPECT_TRUE(parse(nested(128)));
  EXPECT_FALSE(parse(nested(129)));
  EXPECT_TRUE(parse(nested(3), {.max_depth = 3}));
  EXPECT_FALSE(parse(nested(4), {.max_depth = 3}));
}

TEST(JsonRead, OutOfRangeNumbersAndBadTextAreFailuresNotExceptions) {
  for (const char* text :
       {"1e999", R"({"temperature": 1e999})", "[1,", "\"\\ud800\"", "\"\xff\"", "", "nul"}) {
    const Result r = parse(text);
    EXPECT_FALSE(r) << text;
    EXPECT_EQ(r.failure.code, "invalid_json") << text;
    EXPECT_FALSE(r.failure.message.empty());
  }
}

TEST(JsonRead, SizeLimit) {
  const Result r = parse("[1,2,3]", {.max_bytes = 4});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.failure.code, "json_too_large");
}

TEST(JsonRead, CommentsOnlyWhenAllowed) {
  EXPECT_FALSE(parse("{/* c */}"));
  EXPECT_TRUE(parse("{/* c */}", {.allow_comments = true}));
}

// Found by fuzzing (tests/fuzz/corpus/json_read/regression-comment-*): a quote inside a comment made the
// depth check read everything after it as a string, so a config file could hide any depth behind one.
TEST(JsonRead, CommentsCannotHideDepth) {
  for (const std::string& comment :
       {std::string("// \"\n"), std::string("/* \" */"), std::string("// [\n"), std::string("/* ] */"),
        std::string("//\r"), std::string("// \"\0", 5)}) {
    const Result r = parse(comment + nested(200), {.allow_comments = true});
    ASSERT_FALSE(r) << comment;
    EXPECT_EQ(r.failure.code, "json_too_deep") << comment;
  }
  // Brackets and quotes inside comments do not count; those after them do.
  EXPECT_EQ(nesting_depth("/* [[[ \" */ [[1]] // ]]\n", 100, true), 2u);
  EXPECT_EQ(nesting_depth("// \"\n[[1]]", 100, true), 2u);
  EXPECT_TRUE(parse("// \"\n" + nested(128), {.allow_comments = true}));
}

TEST(JsonRead, ParseOrThrowIsAnInvalidRequestNamingTheCode) {
  try {
    parse_or_throw(nested(1000), "request body");
    FAIL() << "no error";
  } catch (const ClawbotError& e) {
    EXPECT_EQ(e.error().kind, ErrorKind::invalid_request);
    EXPECT_EQ(e.error().code, "json_too_deep");
    EXPECT_EQ(e.error().message.rfind("request body ", 0), 0u) << e.error().message;
  }
  try {
    parse_or_throw("1e999", "request body");
    FAIL() << "no error";
  } catch (const ClawbotError& e) {
    EXPECT_EQ(e.error().code, "invalid_json");
    EXPECT_NE(e.error().message.find("1e999"), std::string::npos) << e.error().message;
  }
}

TEST(JsonRead, DescribeIsBounded) {
  nlohmann::json big = nlohmann::json::array();
  for (int i = 0; i < 100000; ++i) big.push_back(i);
  EXPECT_LE(describe(big).size(), 60u);
  EXPECT_EQ(describe(nlohmann::json::parse("[1,[2,[3,[4,[5]]]]]")), "[1,[2,[3,[...]]]]");
  EXPECT_EQ(describe(nlohmann::json("x")), "\"x\"");
  EXPECT_EQ(describe(nlohmann::json::object()), "{}");
  EXPECT_LE(describe(nlohmann::json(std::string(1000, 'a'))).size(), 60u);
  // Invalid UTF-8 in a value is shown, not thrown.
  EXPECT_FALSE(describe(nlohmann::json(std::string("\xff\xfe"))).empty());
}

}  // namespace
}  // namespace clawbot::json_read
