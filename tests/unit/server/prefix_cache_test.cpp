#include "server/prefix_cache.h"

#include <gtest/gtest.h>

#include <cstring>

namespace clawbot::server {
namespace {

using Tokens = std::vector<engine::Token>;

void put(ColdCache& cache, Tokens tokens, std::size_t size, std::uint8_t fill) {
  auto room = cache.insert(std::move(tokens), size);
  ASSERT_EQ(room.size(), size);
  std::memset(room.data(), fill, size);
}

TEST(CommonPrefixTest, CountsSharedLeadingTokens) {
  EXPECT_EQ(common_prefix(Tokens{1, 2, 3}, Tokens{1, 2, 4}), 2u);
  EXPECT_EQ(common_prefix(Tokens{1, 2}, Tokens{1, 2, 3}), 2u);
  EXPECT_EQ(common_prefix(Tokens{}, Tokens{1}), 0u);
  EXPECT_EQ(common_prefix(Tokens{5}, Tokens{1}), 0u);
}

TEST(ColdCacheTest, FindsLongestSharedPrefix) {
  ColdCache cache(1000);
  put(cache, {1, 2, 3, 4}, 100, 0xA);
  put(cache, {1, 2, 9}, 100, 0xB);
  auto m = cache.find(Tokens{1, 2, 3, 7, 8}, false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->length, 3u);
  EXPECT_EQ(cache.tokens(m->id), (Tokens{1, 2, 3, 4}));
  EXPECT_EQ(cache.state(m->id)[0], 0xA);
  EXPECT_FALSE(cache.find(Tokens{7, 7}, false));
}

TEST(ColdCacheTest, ExactOnlyNeedsTheWholeEntryAsPrefix) {
  ColdCache cache(1000);
  put(cache, {1, 2, 3, 4}, 10, 1);
  put(cache, {1, 2}, 10, 2);
  auto m = cache.find(Tokens{1, 2, 3, 5}, true);  // {1,2,3,4} shares 3 but is not a prefix
  ASSERT_TRUE(m);
  EXPECT_EQ(m->length, 2u);
  EXPECT_EQ(cache.state(m->id)[0], 2);
}

TEST(ColdCacheTest, EvictsOldestWhenFullAndTracksBytes) {
  ColdCache cache(300);
  put(cache, {1}, 100, 1);
  put(cache, {2}, 100, 2);
  put(cache, {3}, 100, 3);
  EXPECT_EQ(cache.bytes_used(), 300u);
  put(cache, {4}, 150, 4);  // wraps over the two oldest
  EXPECT_EQ(cache.entries(), 2u);
  EXPECT_EQ(cache.evictions(), 2u);
  EXPECT_FALSE(cache.find(Tokens{1}, false));
  EXPECT_FALSE(cache.find(Tokens{2}, false));
  ASSERT_TRUE(cache.find(Tokens{3}, false));
  auto m = cache.find(Tokens{4}, false);
  ASSERT_TRUE(m);
  EXPECT_EQ(cache.state(m->id)[149], 4);  // the newest bytes are intact
  EXPECT_EQ(cache.state(cache.find(Tokens{3}, false)->id)[99], 3);
  EXPECT_EQ(cache.bytes_used(), 250u);
}

TEST(ColdCacheTest, TooLargeIsRefusedAndEraseFreesBytes) {
  ColdCache cache(100);
  EXPECT_TRUE(cache.insert(Tokens{1}, 101).empty());
  put(cache, {1, 2}, 60, 9);
  cache.shrink_last(40);
  EXPECT_EQ(cache.bytes_used(), 40u);
  const auto id = cache.find(Tokens{1, 2}, true)->id;
  cache.erase(id);
  EXPECT_EQ(cache.bytes_used(), 0u);
  EXPECT_EQ(cache.entries(), 0u);
  EXPECT_TRUE(cache.contains_exact(Tokens{}) == false);
}

TEST(ColdCacheTest, DisabledCacheStoresNothing) {
  ColdCache cache(0);
  EXPECT_TRUE(cache.insert(Tokens{1}, 1).empty());
  EXPECT_FALSE(cache.find(Tokens{1}, false));
}

}  // namespace
}  // namespace clawbot::server
