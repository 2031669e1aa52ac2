// The rate limiter with an injected clock: a fixed start plus whole seconds.
#include <gtest/gtest.h>

#include "gateway/door/door.h"

namespace door = clawbot::gateway::door;
using std::chrono::seconds;

namespace {

const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1000);

door::KeyInfo key(std::string id, std::int64_t rpm, std::int64_t tpm) {
  return door::KeyInfo{std::move(id), "n", rpm, tpm};
}

}  // namespace

TEST(GatewayRateLimiter, RequestsPerMinuteOverASlidingWindow) {
  door::RateLimiter limiter;
  const auto k = key("k1", 3, 0);
  EXPECT_TRUE(limiter.admit(k, 0, 0, t0).allowed);
  EXPECT_TRUE(limiter.admit(k, 0, 0, t0 + seconds(30)).allowed);
  EXPECT_TRUE(limiter.admit(k, 0, 0, t0 + seconds(30)).allowed);
  const auto refused = limiter.admit(k, 0, 0, t0 + seconds(40));
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.reason, "requests per minute: 3 used of 3");
  EXPECT_EQ(refused.retry_after, seconds(20));  // the request at t0 leaves the window at t0 + 60
  EXPECT_FALSE(limiter.admit(k, 0, 0, t0 + seconds(59)).allowed);
  const auto later = limiter.admit(k, 0, 0, t0 + seconds(60));
  EXPECT_TRUE(later.allowed) << later.reason;
  // Now t0+30 (two) and t0+60 (one) are in the window: the next room comes at t0 + 90.
  const auto again = limiter.admit(k, 0, 0, t0 + seconds(61));
  EXPECT_FALSE(again.allowed);
  EXPECT_EQ(again.retry_after, seconds(29));
  EXPECT_TRUE(limiter.admit(k, 0, 0, t0 + seconds(90)).allowed);
}

TEST(GatewayRateLimiter, RetryAfterIsAtLeastOneSecond) {
  door::RateLimiter limiter;
  const auto k = key("burst", 2, 0);
  EXPECT_TRUE(limiter.admit(k, 0, 0, t0).allowed);
  EXPECT_TRUE(limiter.admit(k, 0, 0, t0).allowed);
  const auto refused = limiter.admit(k, 0, 0, t0 + std::chrono::milliseconds(999));
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, seconds(60));
  const auto last_second = limiter.admit(k, 0, 0, t0 + seconds(59) + std::chrono::milliseconds(500));
  EXPECT_FALSE(last_second.allowed);
  EXPECT_EQ(last_second.retry_after, seconds(1));
}

TEST(GatewayRateLimiter, TokensPerMinute) {
  door::RateLimiter limiter;
  const auto k = key("k2", 0, 10000);
  ASSERT_TRUE(limiter.admit(k, 0, 0, t0).allowed);
  limiter.add_tokens("k2", 4000, t0 + seconds(1));
  ASSERT_TRUE(limiter.admit(k, 0, 0, t0 + seconds(5)).allowed);  // 4000 of 10000 used
  limiter.add_tokens("k2", 6000, t0 + seconds(10));
  const auto refused = limiter.admit(k, 0, 0, t0 + seconds(20));
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.reason, "tokens per minute: 10000 used of 10000");
  EXPECT_EQ(refused.retry_after, seconds(41));  // the 4000 at t0+1 leave at t0+61
  EXPECT_TRUE(limiter.admit(k, 0, 0, t0 + seconds(61)).allowed);
  // An answer may overshoot: the next requests wait until enough tokens leave the window.
  limiter.add_tokens("k2", 20000, t0 + seconds(62));
  const auto overshoot = limiter.admit(k, 0, 0, t0 + seconds(63));
  EXPECT_FALSE(overshoot.allowed);
  EXPECT_EQ(overshoot.retry_after, seconds(59));
}

TEST(GatewayRateLimiter, DefaultsKeysOwnLimitsAndIndependence) {
  door::RateLimiter limiter;
  const auto uses_default = key("a", 0, 0);
  const auto own = key("b", 5, 0);
  EXPECT_TRUE(limiter.admit(uses_default, 1, 0, t0).allowed);
  const auto refused = limiter.admit(uses_default, 1, 0, t0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.reason, "requests per minute: 1 used of 1");
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.admit(own, 1, 0, t0).allowed) << i;  // its own 5 win
  EXPECT_FALSE(limiter.admit(own, 1, 0, t0).allowed);
  // No limit at all: always admitted.
  const auto free = key("c", 0, 0);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limiter.admit(free, 0, 0, t0).allowed);
}

TEST(GatewayRateLimiter, BothLimitsNamedAndTheLongerWaitWins) {
  door::RateLimiter limiter;
  const auto k = key("both", 1, 100);
  ASSERT_TRUE(limiter.admit(k, 0, 0, t0).allowed);
  limiter.add_tokens("both", 100, t0 + seconds(30));
  const auto refused = limiter.admit(k, 0, 0, t0 + seconds(31));
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.reason, "requests per minute: 1 used of 1; tokens per minute: 100 used of 100");
  EXPECT_EQ(refused.retry_after, seconds(59));  // tokens leave at t0+90, the request at t0+60
}

TEST(GatewayRateLimiter, ReservationsKeepParallelRequestsWithinTheTokenLimit) {
  door::RateLimiter limiter;
  const auto k = key("r1", 0, 100);
  // Three requests admitted at once, each wanting 40 tokens: the third gets only the 20 left; a fourth none.
  ASSERT_TRUE(limiter.admit(k, 0, 0, t0).allowed);
  EXPECT_EQ(limiter.admit(k, 0, 0, t0).tokens_per_minute, 100);
  EXPECT_EQ(limiter.reserve("r1", 100, 40, t0).reserved, 40);
  EXPECT_EQ(limiter.reserve("r1", 100, 40, t0).reserved, 40);
  EXPECT_EQ(limiter.reserve("r1", 100, 40, t0).reserved, 20);
  const auto none = limiter.reserve("r1", 100, 40, t0);
  EXPECT_FALSE(none.allowed);
  EXPECT_EQ(none.reason, "tokens per minute: 0 used and 100 reserved by running requests of 100");
  EXPECT_EQ(none.retry_after, seconds(1));  // reservations end with their requests
  // Admission sees the reservations too.
  const auto refused = limiter.admit(k, 0, 0, t0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.reason, "tokens per minute: 0 used and 100 reserved by running requests of 100");
  // Settling: the first used 10 of its 40; 30 are free again.
  limiter.settle("r1", 40, 10, t0 + seconds(1));
  EXPECT_EQ(limiter.reserve("r1", 100, 50, t0 + seconds(1)).reserved, 30);
  // A stream that counts past its reservation extends it, room or not; the window is then over the limit.
  limiter.extend("r1", 16);
  const auto over = limiter.admit(k, 0, 0, t0 + seconds(1));
  EXPECT_FALSE(over.allowed);
  EXPECT_EQ(over.reason, "tokens per minute: 10 used and 106 reserved by running requests of 100");
  // Everything settles: 10 + 40 + 20 + 46 = 116 used; room again once the first 10 leave the window.
  limiter.settle("r1", 40, 40, t0 + seconds(2));
  limiter.settle("r1", 20, 20, t0 + seconds(2));
  limiter.settle("r1", 46, 46, t0 + seconds(2));
  const auto after = limiter.admit(k, 0, 0, t0 + seconds(2));
  EXPECT_FALSE(after.allowed);
  EXPECT_EQ(after.reason, "tokens per minute: 116 used of 100");
  EXPECT_EQ(after.retry_after, seconds(60));  // t0+1's 10 leave at t0+61, still 106; t0+2's at t0+62
  EXPECT_TRUE(limiter.admit(k, 0, 0, t0 + seconds(62)).allowed);
}

TEST(GatewayRateLimiter, NoTokenLimitReservesNothing) {
  door::RateLimiter limiter;
  const auto d = limiter.reserve("free", 0, 500, t0);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.reserved, 0);
  limiter.settle("free", 0, 500, t0);  // counted all the same
  EXPECT_FALSE(limiter.admit(key("free", 0, 400), 0, 0, t0).allowed);
}

TEST(GatewayRateLimiter, AudioSecondsPerHourOverASlidingWindowOfMinutes) {
  door::RateLimiter limiter;
  using std::chrono::minutes;
  EXPECT_TRUE(limiter.admit_audio("k", 100, t0).allowed) << "nothing used yet";
  limiter.add_audio("k", 60.5, t0);
  EXPECT_TRUE(limiter.admit_audio("k", 100, t0 + minutes(10)).allowed);
  limiter.add_audio("k", 40, t0 + minutes(10));  // 100.5 of 100: the next is refused
  const auto refused = limiter.admit_audio("k", 100, t0 + minutes(20));
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.reason, "audio seconds per hour: 100 used of 100");
  // The minute of t0 leaves the window 60 minutes after it began: then 40 of 100 are left.
  const auto t0_minute =
      t0 - seconds(std::chrono::duration_cast<seconds>(t0.time_since_epoch()).count() % 60);
  EXPECT_EQ(refused.retry_after,
            std::chrono::duration_cast<seconds>(t0_minute + minutes(60) - (t0 + minutes(20))));
  EXPECT_FALSE(limiter.admit_audio("k", 100, t0_minute + minutes(60) - seconds(1)).allowed);
  EXPECT_TRUE(limiter.admit_audio("k", 100, t0_minute + minutes(60)).allowed);
  // No limit, another key, a higher limit: admitted.
  EXPECT_TRUE(limiter.admit_audio("k", 0, t0 + minutes(20)).allowed);
  EXPECT_TRUE(limiter.admit_audio("other", 100, t0 + minutes(20)).allowed);
  EXPECT_TRUE(limiter.admit_audio("k", 200, t0 + minutes(20)).allowed);
}
