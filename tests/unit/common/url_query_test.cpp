#include "common/url_query.h"

#include <gtest/gtest.h>

namespace clawbot::http {
namespace {

TEST(QueryParam, FindsTheFirstValueOfAKey) {
  EXPECT_EQ(query_param("/v1/audio/live?language=en&translate=true", "language"), "en");
  EXPECT_EQ(query_param("/v1/audio/live?language=en&translate=true", "translate"), "true");
  EXPECT_EQ(query_param("/x?a=1&a=2", "a"), "1");
  EXPECT_EQ(query_param("/x?since=12#frag", "since"), "12");
}

TEST(QueryParam, AbsentEmptyAndLookalikeKeys) {
  EXPECT_EQ(query_param("/x", "a"), std::nullopt);
  EXPECT_EQ(query_param("/x?", "a"), std::nullopt);
  EXPECT_EQ(query_param("/x?ab=1&b=2", "a"), std::nullopt);
  EXPECT_EQ(query_param("/x?a", "a"), "");
  EXPECT_EQ(query_param("/x?b=1&a=", "a"), "");
  EXPECT_EQ(query_param("/x?b=1&&a=3", "a"), "3");
  // not percent-decoded: the raw text, for the caller to check
  EXPECT_EQ(query_param("/x?q=a%20b", "q"), "a%20b");
  static_assert(query_param("/x?k=v", "k") == "v");
}

}  // namespace
}  // namespace clawbot::http
