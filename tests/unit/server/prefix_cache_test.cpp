#include "server/prefix_cache.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <span>
#include <string>

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

// A toy vocabulary: 0 is a control token (no text); the others spell what the table says.
std::string toy_piece(engine::Token t) {
  static const std::vector<std::string> pieces{"",   "Hello", " wor", "ld",     " world", "!", "Hel",
                                               "lo", " w",    "orld", " there", "?",      "\n"};
  return pieces.at(static_cast<std::size_t>(t));
}

TEST(AlignByTextTest, SameTokensAreATokenMatch) {
  const auto m = align_by_text(Tokens{0, 1, 4, 5}, Tokens{0, 1, 4, 5, 12}, toy_piece);
  EXPECT_EQ(m.cached, 4u);
  EXPECT_EQ(m.prompt, 4u);
}

TEST(AlignByTextTest, OtherTokensSpellingTheSameTextMatch) {
  // cached: <c> "Hel" "lo" " wor" "ld" "!"; prompt: <c> "Hello" " world" "!" "\n"
  const auto m = align_by_text(Tokens{0, 6, 7, 2, 3, 5}, Tokens{0, 1, 4, 5, 12}, toy_piece);
  EXPECT_EQ(m.cached, 6u);
  EXPECT_EQ(m.prompt, 4u);
  // Boundaries that never meet inside a word are fine as long as they meet again: " w"+"orld" = " wor"+"ld".
  const auto n = align_by_text(Tokens{1, 8, 9, 11}, Tokens{1, 2, 3, 5}, toy_piece);
  EXPECT_EQ(n.cached, 3u);
  EXPECT_EQ(n.prompt, 3u);
}

TEST(AlignByTextTest, StopsWhereTheTextDiffers) {
  // "Hello world?" vs "Hello world!": the match ends after " world", on both sides' boundary.
  const auto m = align_by_text(Tokens{6, 7, 2, 3, 11}, Tokens{1, 4, 5}, toy_piece);
  EXPECT_EQ(m.cached, 4u);
  EXPECT_EQ(m.prompt, 2u);
  // "Hello there" vs "Hello world": nothing after "Hello".
  const auto n = align_by_text(Tokens{6, 7, 10}, Tokens{1, 4}, toy_piece);
  EXPECT_EQ(n.cached, 2u);
  EXPECT_EQ(n.prompt, 1u);
}

TEST(AlignByTextTest, BoundariesMustMeetAtTheEnd) {
  // "Hel" vs "Hello": the prompt's token goes past the end of the cached text: no shared boundary after it.
  const auto m = align_by_text(Tokens{6}, Tokens{1, 5}, toy_piece);
  EXPECT_EQ(m.cached, 0u);
  EXPECT_EQ(m.prompt, 0u);
}

TEST(AlignByTextTest, ControlTokensMatchOnlyThemselves) {
  // A control token with no text is never skipped or spelled as text.
  const auto m = align_by_text(Tokens{1, 0, 4}, Tokens{1, 4}, toy_piece);
  EXPECT_EQ(m.cached, 1u);
  EXPECT_EQ(m.prompt, 1u);
  const auto n = align_by_text(Tokens{6, 7, 0, 4}, Tokens{1, 0, 2, 3}, toy_piece);
  EXPECT_EQ(n.cached, 4u);
  EXPECT_EQ(n.prompt, 4u);
}

TEST(AlignByTextTest, RandomSequencesAlwaysSpellTheSameText) {
  // The safety property: whatever the sequences, the aligned prefixes spell the same text (the prompt the
  // model sees is the client's text), and never less than the token-by-token match.
  std::mt19937 rng(7);
  const auto spell = [](std::span<const engine::Token> tokens) {
    std::string text;
    for (const auto t : tokens) text += toy_piece(t);
    return text;
  };
  std::uniform_int_distribution<int> token(0, 12), length(0, 12), coin(0, 3);
  int realigned = 0;  // rounds where the match went on past differing tokens
  for (int round = 0; round < 20000; ++round) {
    Tokens cached, prompt;
    const int shared = length(rng);
    for (int i = 0; i < shared; ++i) cached.push_back(static_cast<engine::Token>(token(rng)));
    prompt = cached;
    // Often the same text in other tokens, sometimes something else entirely.
    if (coin(rng) > 0) {
      for (auto& t : prompt) {
        if (t == 1 && coin(rng) == 0) t = 6;  // "Hello" -> "Hel" (and "lo" after it)
      }
      for (std::size_t i = 0; i < prompt.size(); ++i) {
        if (prompt[i] == 6 && (i + 1 == prompt.size() || prompt[i + 1] != 7))
          prompt.insert(prompt.begin() + i + 1, 7);
      }
    }
    for (int i = length(rng); i > 0; --i) prompt.push_back(static_cast<engine::Token>(token(rng)));
    for (int i = length(rng) / 2; i > 0; --i) cached.push_back(static_cast<engine::Token>(token(rng)));
    const auto m = align_by_text(cached, prompt, toy_piece);
    ASSERT_LE(m.cached, cached.size());
    ASSERT_LE(m.prompt, prompt.size());
    ASSERT_EQ(spell(std::span(cached).first(m.cached)), spell(std::span(prompt).first(m.prompt)))
        << "round " << round;
    ASSERT_GE(std::min(m.cached, m.prompt), common_prefix(cached, prompt)) << "round " << round;
    if (m.cached != m.prompt) ++realigned;
  }
  EXPECT_GT(realigned, 1000);
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

// The scheduler finds a cold entry, then saves the slot it is about to overwrite: that insert can evict the
// entry it found (bench/soak.sh with --cache-ram 4 aborted nodes with "cold cache entry gone").
TEST(ColdCacheTest, AMatchFoundBeforeAnInsertMayBeGoneAfterIt) {
  ColdCache cache(100);
  put(cache, {1, 2, 3}, 60, 0xA);
  const auto m = cache.find(Tokens{1, 2, 3, 4}, false);
  ASSERT_TRUE(m);
  EXPECT_TRUE(cache.contains(m->id));
  put(cache, {7, 8, 9}, 60, 0xB);  // wraps onto the first entry's bytes
  EXPECT_FALSE(cache.contains(m->id));
  EXPECT_THROW(cache.state(m->id), std::logic_error);
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
