#include "common/text.h"

#include <array>
#include <cstdint>

#include <gtest/gtest.h>

namespace clawbot::text {
namespace {

TEST(TextTest, LowerTouchesAsciiCapitalsOnly) {
  EXPECT_EQ(lower("Content-Type: TEXT/Event-Stream"), "content-type: text/event-stream");
  EXPECT_EQ(lower("\xC3\x89T\xC3\x89"), "\xC3\x89t\xC3\x89");  // UTF-8 bytes pass through
  EXPECT_EQ(lower('Q'), 'q');
  EXPECT_EQ(lower('@'), '@');
  EXPECT_EQ(lower('['), '[');
}

TEST(TextTest, TrimTakesTheGivenCharactersOffBothEnds) {
  EXPECT_EQ(trim("  a b \r\n"), "a b");
  EXPECT_EQ(trim(" \t\r\n"), "");
  EXPECT_EQ(trim(""), "");
  EXPECT_EQ(trim("\tx\n", blanks), "x\n");  // HTTP's OWS: a line end stays
  EXPECT_EQ(trim("\v\fx\v", any_space), "x");
  EXPECT_EQ(trim("\vx", blanks_and_newlines), "\vx");
}

TEST(TextTest, HexRoundTrips) {
  const std::array<std::uint8_t, 4> bytes{0x00, 0x7f, 0xab, 0xff};
  EXPECT_EQ(to_hex(bytes), "007fabff");
  EXPECT_EQ(to_hex(std::string_view("\x01Z", 2)), "015a");
  EXPECT_EQ(from_hex("007FabfF"), std::string("\x00\x7f\xab\xff", 4));
  EXPECT_EQ(from_hex("abc"), std::nullopt);
  EXPECT_EQ(from_hex("zz"), std::nullopt);
  EXPECT_TRUE(is_hex("00aAfF", 6));
  EXPECT_FALSE(is_hex("00aAfF", 5));
  EXPECT_FALSE(is_hex("00aAfg", 6));
}

}  // namespace
}  // namespace clawbot::text
