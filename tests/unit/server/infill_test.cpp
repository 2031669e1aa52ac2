// Assembly of fill-in-the-middle prompts for POST /infill, with made-up token ids.
#include "server/infill.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sstream>

namespace clawbot::server {
namespace {

using Tokens = std::vector<engine::Token>;

constexpr engine::Token bos = 1, pre = 900, suf = 901, mid = 902;
const engine::FimTokens fim{pre, suf, mid, -1, -1, -1};

Tokens range(engine::Token first, int count) {
  Tokens t;
  for (int i = 0; i < count; ++i) t.push_back(first + i);
  return t;
}

TEST(InfillAssembly, PrefixPromptSuffixInTheFimOrder) {
  const auto out = assemble_infill(fim, bos, {{10, 11}, {20, 21}, {30}, {}}, 100);
  ASSERT_TRUE(out.fits);
  EXPECT_FALSE(out.truncated());
  EXPECT_EQ(out.tokens, (Tokens{bos, pre, 10, 11, 30, suf, 20, 21, mid}));
  const auto no_bos = assemble_infill(fim, std::nullopt, {{10}, {20}, {}, {}}, 100);
  EXPECT_EQ(no_bos.tokens, (Tokens{pre, 10, suf, 20, mid}));
}

TEST(InfillAssembly, ExtraContextComesBeforeThePrefix) {
  const auto out = assemble_infill(fim, bos, {{10}, {20}, {}, {70, 71}}, 100);
  EXPECT_EQ(out.tokens, (Tokens{bos, 70, 71, pre, 10, suf, 20, mid}));
}

TEST(InfillAssembly, OverBudgetKeepsTheCodeNearestTheCursorThreeToOne) {
  // 4 fixed tokens (BOS, PRE, SUF, MID) and 40 of room: 30 for the prefix, 10 for the suffix.
  const auto out = assemble_infill(fim, bos, {range(1000, 100), range(2000, 100), {}, {}}, 44);
  ASSERT_TRUE(out.fits);
  EXPECT_EQ(out.tokens.size(), 44u);
  EXPECT_EQ(out.prefix_dropped, 70);
  EXPECT_EQ(out.suffix_dropped, 90);
  EXPECT_TRUE(out.truncated());
  EXPECT_EQ(out.tokens[2], 1070);  // the prefix's last 30 tokens: its start is cut
  EXPECT_EQ(out.tokens[31], 1099);
  EXPECT_EQ(out.tokens[32], suf);
  EXPECT_EQ(out.tokens[33], 2000);  // the suffix's first 10: its end is cut
  EXPECT_EQ(out.tokens[42], 2009);
  EXPECT_EQ(out.tokens[43], mid);
}

TEST(InfillAssembly, AShortSideLeavesItsShareToTheOther) {
  const auto out = assemble_infill(fim, std::nullopt, {range(1000, 100), {2000, 2001}, {}, {}}, 43);
  EXPECT_EQ(out.suffix_dropped, 0);
  EXPECT_EQ(out.prefix_dropped, 100 - (43 - 3 - 2));
  const auto short_prefix = assemble_infill(fim, std::nullopt, {{1000}, range(2000, 100), {}, {}}, 43);
  EXPECT_EQ(short_prefix.prefix_dropped, 0);
  EXPECT_EQ(short_prefix.suffix_dropped, 100 - (43 - 3 - 1));
}

TEST(InfillAssembly, ExtraOnlyFillsWhatIsLeftLatestFirst) {
  const auto out = assemble_infill(fim, std::nullopt, {{10}, {20}, {}, range(500, 10)}, 9);
  EXPECT_EQ(out.extra_dropped, 6);
  EXPECT_EQ(out.tokens, (Tokens{506, 507, 508, 509, pre, 10, suf, 20, mid}));
}

TEST(InfillAssembly, PromptIsKeptWholeOrNotAtAll) {
  const auto out = assemble_infill(fim, bos, {{10}, {20}, range(30, 10), {}}, 14);
  ASSERT_TRUE(out.fits);
  EXPECT_EQ(out.prefix_dropped + out.suffix_dropped, 2);  // no room left for the code
  const auto too_long = assemble_infill(fim, bos, {{10}, {20}, range(30, 20), {}}, 14);
  EXPECT_FALSE(too_long.fits);
  EXPECT_TRUE(too_long.tokens.empty());
}

std::string vocab_path(const std::string& name) {
  const char* env = std::getenv("CLAWBOT_MODELS");
  std::stringstream dirs(env && *env ? env : CLAWBOT_DEFAULT_MODELS);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (!dir.empty() && std::filesystem::exists(std::filesystem::path(dir) / name))
      return (std::filesystem::path(dir) / name).string();
  }
  ADD_FAILURE() << "test model " << name << " not found in CLAWBOT_MODELS (a set-up error)";
  return name;
}

TEST(InfillTokenizer, CodeIsPlainTextAndAVocabularyWithoutFimSaysSo) {
  const auto model = engine::Model::load({.path = vocab_path("ggml-vocab-phi-3.gguf"), .vocab_only = true});
  const engine::Tokenizer tokenizer(model);
  EXPECT_FALSE(tokenizer.fim().has_value());  // phi-3 has no FIM tokens: /infill answers fim_not_supported
  // Made-up ids past the vocabulary's text tokens stand in for a code model's.
  const engine::FimTokens made_up{32001, 32002, 32003, -1, -1, -1};
  const std::string prefix = "x = \"<|endoftext|>\"\n";  // a special token's text inside code stays text
  const auto out = build_infill_prompt(tokenizer, made_up, {prefix, "\n", "", {}}, 1000);
  ASSERT_TRUE(out.fits);
  const auto pre_at = std::find(out.tokens.begin(), out.tokens.end(), made_up.pre);
  const auto suf_at = std::find(out.tokens.begin(), out.tokens.end(), made_up.suf);
  ASSERT_NE(pre_at, out.tokens.end());
  ASSERT_NE(suf_at, out.tokens.end());
  EXPECT_EQ(out.tokens.back(), made_up.mid);
  if (tokenizer.adds_bos()) {
    EXPECT_EQ(out.tokens.front(), tokenizer.bos());
  }
  const std::vector<engine::Token> prefix_tokens(pre_at + 1, suf_at);
  EXPECT_EQ(tokenizer.detokenize(prefix_tokens), prefix);
  const auto eos = tokenizer.eos();
  EXPECT_EQ(std::count(prefix_tokens.begin(), prefix_tokens.end(), eos), 0);
}

}  // namespace
}  // namespace clawbot::server
