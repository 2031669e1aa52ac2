#include "bench/workload.h"

#include <gtest/gtest.h>

#include <set>
#include <sstream>

namespace clawbot::bench {
namespace {

using json = nlohmann::json;

// Words plus periods: what make_prompt counts as tokens.
int rough_tokens(const std::string& text) {
  std::istringstream in(text);
  std::string word;
  int n = 0;
  while (in >> word) n += 1 + (word.back() == '.' ? 1 : 0);
  return n;
}

TEST(PromptTest, SameSeedSameText) {
  EXPECT_EQ(make_prompt(1, 50), make_prompt(1, 50));
  EXPECT_NE(make_prompt(1, 50), make_prompt(2, 50));
}

TEST(PromptTest, HasAboutTheTokensAskedFor) {
  for (int tokens : {1, 2, 3, 7, 64, 500}) {
    const auto text = make_prompt(derive_seed(42, stream_independent, 0), tokens);
    EXPECT_EQ(rough_tokens(text), tokens) << text;
  }
}

TEST(PromptTest, UsesTheWordList) {
  std::set<std::string> known(word_list().begin(), word_list().end());
  std::istringstream in(make_prompt(5, 200));
  std::string word;
  while (in >> word) {
    if (word.back() == '.') word.pop_back();
    word[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(word[0])));
    EXPECT_TRUE(known.count(word)) << word;
  }
  EXPECT_GE(word_list().size(), 100u);
}

TEST(PromptTest, DerivedSeedsDiffer) {
  std::set<std::uint64_t> seeds;
  for (std::uint64_t stream : {stream_independent, stream_system, stream_conversation}) {
    for (std::uint64_t i = 0; i < 100; ++i) seeds.insert(derive_seed(42, stream, i));
  }
  EXPECT_EQ(seeds.size(), 300u);
  EXPECT_NE(derive_seed(1, stream_independent, 0), derive_seed(2, stream_independent, 0));
}

TEST(RequestTest, StreamsWithUsageAndAsksForTheLength) {
  RequestSettings settings;
  settings.model = "m";
  settings.max_tokens = 16;
  settings.temperature = 0.5;
  settings.seed = 9;
  const json messages = json::array({{{"role", "user"}, {"content", "hi"}}});
  const json body = chat_request(settings, messages);
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["messages"], messages);
  EXPECT_EQ(body["max_tokens"], 16);
  EXPECT_EQ(body["temperature"], 0.5);
  EXPECT_EQ(body["seed"], 9);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["min_tokens"], 16);

  settings.ignore_eos = false;
  const json strict = chat_request(settings, messages);
  EXPECT_FALSE(strict.contains("ignore_eos"));
  EXPECT_FALSE(strict.contains("min_tokens"));
}

TEST(ConversationTest, EachTurnSendsTheWholeHistory) {
  Conversation c(42, 0, "be brief", 8);
  json first = c.next_messages();
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0]["role"], "system");
  EXPECT_EQ(first[0]["content"], "be brief");
  EXPECT_EQ(first[1]["role"], "user");
  EXPECT_EQ(first, c.next_messages());  // asking twice changes nothing

  c.answered("answer one");
  EXPECT_EQ(c.turns_done(), 1);
  json second = c.next_messages();
  ASSERT_EQ(second.size(), 4u);
  EXPECT_EQ(second[1], first[1]);
  EXPECT_EQ(second[2]["role"], "assistant");
  EXPECT_EQ(second[2]["content"], "answer one");
  EXPECT_EQ(second[3]["role"], "user");
  EXPECT_NE(second[3]["content"], first[1]["content"]);

  c.answered("answer two");
  json third = c.next_messages();
  ASSERT_EQ(third.size(), 6u);
  EXPECT_EQ(third[4]["content"], "answer two");
}

TEST(ConversationTest, ConversationsShareTheSystemPromptOnly) {
  Conversation a(42, 0, "system", 8);
  Conversation b(42, 1, "system", 8);
  Conversation a_again(42, 0, "system", 8);
  EXPECT_EQ(a.next_messages()[0], b.next_messages()[0]);
  EXPECT_NE(a.next_messages()[1], b.next_messages()[1]);
  EXPECT_EQ(a.next_messages(), a_again.next_messages());  // seeded: the same run twice sends the same
}

TEST(ConversationTest, NoSystemPrompt) {
  Conversation c(1, 0, "", 4);
  const json m = c.next_messages();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0]["role"], "user");
}

}  // namespace
}  // namespace clawbot::bench
