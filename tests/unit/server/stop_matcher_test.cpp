#include <gtest/gtest.h>

#include "server/scheduler.h"

namespace clawbot::server {
namespace {

TEST(StopMatcherTest, CutsAtStopSplitAcrossPieces) {
  StopMatcher m({"END"});
  auto a = m.push("hello E");
  EXPECT_EQ(a.emit, "hello ");  // "E" may start the stop string: held back
  EXPECT_FALSE(a.stopped);
  auto b = m.push("N");
  EXPECT_EQ(b.emit, "");
  auto c = m.push("D and more");
  EXPECT_TRUE(c.stopped);
  EXPECT_EQ(c.emit, "");
  EXPECT_EQ(c.matched, "END");
}

TEST(StopMatcherTest, ReleasesFalseStart) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("EN").emit, "");
  auto r = m.push("Xyz");
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(r.emit, "ENXyz");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcherTest, EarliestOfSeveralStopsWins) {
  StopMatcher m({"world", "lo"});
  auto r = m.push("hello world");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "hel");
  EXPECT_EQ(r.matched, "lo");  // the one that ended it (Anthropic's stop_sequence)
}

TEST(StopMatcherTest, NoStopsPassesEverything) {
  StopMatcher m({});
  EXPECT_EQ(m.push("abc").emit, "abc");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcherTest, FlushReturnsHeldTail) {
  StopMatcher m({"###"});
  EXPECT_EQ(m.push("a ##").emit, "a ");
  EXPECT_EQ(m.flush(), "##");
}

}  // namespace
}  // namespace clawbot::server
