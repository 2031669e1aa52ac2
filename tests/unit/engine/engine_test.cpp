// Engine tests on the real files in CLAWBOT_MODELS (default ../shared/models). A missing model fails the
// test.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>
#include <llama.h>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "test_models.h"

namespace clawbot::engine {
namespace {

namespace fs = std::filesystem;

using test::model_path;

// Loading is the slow part; each model is loaded once for the whole suite.
const Model& stories() {
  static Model m = Model::load({.path = model_path("stories260K.gguf")});
  return m;
}
const Model& phi3_vocab() {
  static Model m = Model::load({.path = model_path("ggml-vocab-phi-3.gguf"), .vocab_only = true});
  return m;
}
const Model& bert_vocab() {
  static Model m = Model::load({.path = model_path("ggml-vocab-bert-bge.gguf"), .vocab_only = true});
  return m;
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

// ---------------------------------------------------------------- model metadata

TEST(ModelTest, StoriesMetadata) {
  const auto& info = stories().info();
  EXPECT_EQ(info.architecture, "llama");
  EXPECT_EQ(info.name, "stories260K");
  EXPECT_EQ(info.n_ctx_train, 2048);
  EXPECT_EQ(info.n_vocab, 512);
  EXPECT_EQ(info.n_layer, 5);
  EXPECT_EQ(info.n_embd, 64);
  EXPECT_GT(info.n_params, 250'000u);
  EXPECT_LT(info.n_params, 350'000u);
  EXPECT_GT(info.size_bytes, 1'000'000u);
  EXPECT_TRUE(info.chat_template.empty());
  EXPECT_FALSE(info.is_embedding);
}

TEST(ModelTest, VocabOnlyFilesTellChatAndEmbedding) {
  EXPECT_EQ(phi3_vocab().info().architecture, "phi3");
  EXPECT_NE(phi3_vocab().info().chat_template.find("<|user|>"), std::string::npos);
  EXPECT_FALSE(phi3_vocab().info().is_embedding);
  EXPECT_EQ(bert_vocab().info().architecture, "bert");
  EXPECT_TRUE(bert_vocab().info().is_embedding);
}

// ---------------------------------------------------------------- model file checks

class BadModelFileTest : public ::testing::Test {
 protected:
  fs::path dir_ = fs::temp_directory_path() / ("clawbot-engine-test-" + std::to_string(::getpid()));
  void SetUp() override { fs::create_directories(dir_); }
  void TearDown() override { fs::remove_all(dir_); }
  std::string expect_refused(const std::string& path) {
    try {
      check_gguf_file(path);
    } catch (const ModelFileError& e) {
      return e.what();
    }
    ADD_FAILURE() << path << " was accepted";
    return {};
  }
};

TEST_F(BadModelFileTest, MissingFileIsNamed) {
  const auto msg = expect_refused((dir_ / "nope.gguf").string());
  EXPECT_NE(msg.find("nope.gguf"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not found"), std::string::npos) << msg;
}

TEST_F(BadModelFileTest, NotGguf) {
  const auto path = (dir_ / "notes.gguf").string();
  std::ofstream(path) << "this is a text file, not a model\n";
  const auto msg = expect_refused(path);
  EXPECT_NE(msg.find("not a GGUF file"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

TEST_F(BadModelFileTest, TruncatedWeights) {
  const auto source = model_path("stories260K.gguf");
  const auto path = (dir_ / "half.gguf").string();
  fs::copy_file(source, path);
  fs::resize_file(path, fs::file_size(source) / 2);
  const auto msg = expect_refused(path);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_THROW(Model::load({.path = path}), ModelFileError);
}

TEST_F(BadModelFileTest, TruncatedHeader) {
  const auto source = model_path("stories260K.gguf");
  const auto path = (dir_ / "head.gguf").string();
  fs::copy_file(source, path);
  fs::resize_file(path, 200);
  const auto msg = expect_refused(path);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST_F(BadModelFileTest, IntactFilePasses) {
  EXPECT_NO_THROW(check_gguf_file(model_path("stories260K.gguf")));
}

// ---------------------------------------------------------------- tokenizer

TEST(TokenizerTest, RoundTripStories) {
  const Tokenizer tok(stories());
  const std::string text = "Once upon a time, there was a little girl named Lily.";
  const auto tokens = tok.tokenize(text, false, false);
  ASSERT_GT(tokens.size(), 5u);
  EXPECT_LT(tokens.size(), text.size());
  EXPECT_EQ(tok.detokenize(tokens), text);
}

TEST(TokenizerTest, RoundTripMultibyte) {
  const Tokenizer tok(phi3_vocab());
  const std::string text = "héllo wörld, naïve café — 世界 🙂 ok";
  const auto tokens = tok.tokenize(text, false, false);
  EXPECT_EQ(tok.detokenize(tokens), text);
}

TEST(TokenizerTest, SpecialTokensAddedAndParsed) {
  const Tokenizer tok(phi3_vocab());
  const auto with_bos = tok.tokenize("hi", true, false);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos.front(), tok.bos());
  EXPECT_EQ(tok.bos(), 1);
  const auto parsed = tok.tokenize("<|user|>", false, true);
  ASSERT_EQ(parsed.size(), 1u) << "the special marker should be one token";
  EXPECT_EQ(tok.piece(parsed[0], true), "<|user|>");
  EXPECT_GT(tok.tokenize("<|user|>", false, false).size(), 1u) << "unparsed, it is plain text";
  EXPECT_TRUE(tok.is_end_of_generation(tok.eos()));
}

// ---------------------------------------------------------------- UTF-8 streaming

TEST(Utf8StreamDecoderTest, HoldsSplitCharacterUntilComplete) {
  Utf8StreamDecoder d;
  const std::string smile = "\xF0\x9F\x99\x82";  // U+1F642
  EXPECT_EQ(d.push("a"), "a");
  EXPECT_EQ(d.push(smile.substr(0, 1)), "");
  EXPECT_EQ(d.push(smile.substr(1, 2)), "");
  EXPECT_EQ(d.push(smile.substr(3) + "b"), smile + "b");
  EXPECT_EQ(d.flush(), "");
}

TEST(Utf8StreamDecoderTest, InvalidBytesBecomeReplacement) {
  Utf8StreamDecoder d;
  EXPECT_EQ(d.push("x\x80y"), "x\xEF\xBF\xBDy");
  EXPECT_EQ(d.push("\xE4\xB8"), "");        // start of a 3-byte character
  EXPECT_EQ(d.push("z"), "\xEF\xBF\xBDz");  // broken by an ASCII byte
  EXPECT_EQ(d.push("\xC3"), "");
  EXPECT_EQ(d.flush(), "\xEF\xBF\xBD");  // cut off at the end
}

TEST(Utf8StreamDecoderTest, TokenByTokenStaysValid) {
  // Phi-3's vocab spells rare characters as byte tokens, so a character spans several tokens.
  const Tokenizer tok(phi3_vocab());
  const std::string text = "日本語 🙂🎉 ünïcödé";
  const auto tokens = tok.tokenize(text, false, false);
  Utf8StreamDecoder d;
  std::string joined;
  int held_back = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string piece = tok.piece(tokens[i]);
    if (i == 0 && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);  // SentencePiece's leading space
    const std::string out = d.push(piece);
    EXPECT_TRUE(is_valid_utf8(out)) << "token " << i;
    if (!is_valid_utf8(piece)) ++held_back;
    joined += out;
  }
  joined += d.flush();
  EXPECT_EQ(joined, text);
  EXPECT_GT(held_back, 0) << "this text should exercise characters split across tokens";
}

// ---------------------------------------------------------------- chat templates

TEST(ChatTemplateTest, ModelsOwnTemplate) {
  const auto tmpl = ChatTemplate::from_model(phi3_vocab());
  const std::vector<ChatMessage> chat{{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Tell a story"}};
  EXPECT_EQ(
      tmpl.apply(chat, true),
      "<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nTell a story<|end|>\n<|assistant|>\n");
}

TEST(ChatTemplateTest, BuiltinChatml) {
  const auto tmpl = ChatTemplate::builtin("chatml");
  const std::vector<ChatMessage> chat{{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(
      tmpl.apply(chat, true),
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(tmpl.apply(chat, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplateTest, ModelWithoutTemplateSaysWhatToDo) {
  try {
    (void)ChatTemplate::from_model(stories());
    FAIL() << "stories260K has no chat template";
  } catch (const EngineError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("no chat template"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--chat-template"), std::string::npos) << msg;
    EXPECT_NE(msg.find("chatml"), std::string::npos) << msg;
  }
}

TEST(ChatTemplateTest, UnknownBuiltinListsNames) {
  try {
    (void)ChatTemplate::builtin("no-such-template");
    FAIL();
  } catch (const EngineError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("no-such-template"), std::string::npos);
    EXPECT_NE(msg.find("llama3"), std::string::npos);
  }
  const auto names = ChatTemplate::builtin_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "chatml"), names.end());
}

// ---------------------------------------------------------------- sampler

std::vector<Token> generate(Context& ctx, const SamplingParams& params, int n) {
  const Tokenizer tok(stories());
  const auto prompt = tok.tokenize("Once upon a time", true, false);
  ctx.clear();
  EXPECT_EQ(ctx.decode(prompt, 0), DecodeStatus::ok);
  Sampler sampler(params, stories());
  std::vector<Token> out;
  int pos = static_cast<int>(prompt.size());
  for (int i = 0; i < n; ++i) {
    const Token t = sampler.sample(ctx);
    out.push_back(t);
    const Token one[] = {t};
    EXPECT_EQ(ctx.decode(one, pos++), DecodeStatus::ok);
  }
  return out;
}

TEST(SamplerTest, SameSeedSameTokens) {
  Context ctx(stories(), {.n_ctx = 256, .n_batch = 64, .n_threads = 2});
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  const auto a = generate(ctx, p, 24);
  const auto b = generate(ctx, p, 24);
  EXPECT_EQ(a, b);
  bool any_differs = false;  // other seeds should draw differently at least once
  for (std::uint32_t seed = 1; seed <= 4 && !any_differs; ++seed) {
    p.seed = seed;
    any_differs = generate(ctx, p, 24) != a;
  }
  EXPECT_TRUE(any_differs);
}

TEST(SamplerTest, GreedyIsDeterministicAndReadable) {
  Context ctx(stories(), {.n_ctx = 256, .n_batch = 64, .n_threads = 2});
  SamplingParams p;
  p.temperature = 0.0f;
  const auto a = generate(ctx, p, 20);
  p.seed = 7;  // the seed does not matter to greedy decoding
  EXPECT_EQ(generate(ctx, p, 20), a);
  const std::string text = Tokenizer(stories()).detokenize(a);
  EXPECT_TRUE(is_valid_utf8(text));
  EXPECT_GT(text.size(), 20u) << text;
}

TEST(SamplerTest, RepeatPenaltyChangesGreedyChoice) {
  Context ctx(stories(), {.n_ctx = 256, .n_batch = 64, .n_threads = 2});
  SamplingParams plain;
  plain.temperature = 0.0f;
  SamplingParams penalised = plain;
  penalised.repeat_penalty = 3.0f;
  EXPECT_NE(generate(ctx, plain, 40), generate(ctx, penalised, 40));
}

TEST(SamplerTest, BannedTokensAreNeverDrawn) {
  Context ctx(stories(), {.n_ctx = 256, .n_batch = 64, .n_threads = 2});
  const Tokenizer tok(stories());
  const auto prompt = tok.tokenize("Once upon a time", true, false);
  for (const float temperature : {0.0f, 1.0f}) {
    SamplingParams p;
    p.temperature = temperature;
    p.seed = 3;
    ctx.clear();
    ASSERT_EQ(ctx.decode(prompt, 0), DecodeStatus::ok);
    const Token first = Sampler(p, stories()).sample(ctx);
    // The same logits, the first choice banned (and a second token for good measure): something else comes.
    ctx.clear();
    ASSERT_EQ(ctx.decode(prompt, 0), DecodeStatus::ok);
    const Token banned[] = {first, static_cast<Token>((first + 1) % tok.n_vocab())};
    const Token other = Sampler(p, stories()).sample(ctx, -1, banned);
    EXPECT_NE(other, banned[0]);
    EXPECT_NE(other, banned[1]);
  }
}

// Plain greedy takes the argmax itself instead of running llama.cpp's chain: it must pick what the chain
// picks, ties (the first of equal maxima) and ignore_eos included.
TEST(SamplerTest, GreedyPicksWhatLlamaCppsGreedyChainPicks) {
  Context ctx(stories(), {.n_ctx = 256, .n_batch = 64, .n_threads = 2});
  const Tokenizer tok(stories());
  const int n_vocab = tok.n_vocab();
  const Token eos = tok.eos();
  ASSERT_GE(eos, 0);
  auto chain_pick = [&](bool ignore_eos) {
    llama_sampler* chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (ignore_eos) {
      std::vector<llama_logit_bias> never;
      for (Token t = 0; t < n_vocab; ++t) {
        if (tok.is_end_of_generation(t)) never.push_back({t, -INFINITY});
      }
      llama_sampler_chain_add(
          chain, llama_sampler_init_logit_bias(n_vocab, static_cast<int32_t>(never.size()), never.data()));
    }
    llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    const Token t = llama_sampler_sample(chain, ctx.get(), -1);
    llama_sampler_free(chain);
    return t;
  };
  const auto prompt = tok.tokenize("Once upon a time", true, false);
  for (const bool ignore_eos : {false, true}) {
    SamplingParams p;
    p.temperature = 0;
    p.ignore_eos = ignore_eos;
    for (const char* layout : {"model", "tie", "eos on top"}) {
      ctx.clear();
      ASSERT_EQ(ctx.decode(prompt, 0), DecodeStatus::ok);
      float* logits = llama_get_logits_ith(ctx.get(), -1);
      ASSERT_NE(logits, nullptr);
      const std::string which = layout;
      if (which == "tie") {
        for (int i = 0; i < n_vocab; ++i) logits[i] = 0;
        logits[n_vocab - 2] = logits[7] = logits[n_vocab / 2] = 3;  // the first of them wins
      } else if (which == "eos on top") {
        logits[eos] = 1e9f;
      }
      const std::vector<float> saved(logits, logits + n_vocab);
      const Token ours = Sampler(p, stories()).sample(ctx);
      std::copy(saved.begin(), saved.end(), logits);
      EXPECT_EQ(ours, chain_pick(ignore_eos)) << layout << (ignore_eos ? ", ignore_eos" : "");
      if (which == "tie") {
        EXPECT_EQ(ours, 7);
      }
      if (which == "eos on top") {
        EXPECT_EQ(ours == eos, !ignore_eos);
      }
    }
  }
}

// ---------------------------------------------------------------- grammar sampling

struct Constrained {
  std::string text;
  std::vector<Token> tokens;
  bool ended = false;  // on an end-of-generation token
};

// Generates under params' grammar from `prompt` until an end-of-generation token or `limit` tokens.
Constrained generate_constrained(Context& ctx, const SamplingParams& params, int limit,
                                 const std::string& prompt = "Once upon a time",
                                 std::span<const Token> banned = {}) {
  const Tokenizer tok(stories());
  const auto input = tok.tokenize(prompt, true, false);
  ctx.clear();
  EXPECT_EQ(ctx.decode(input, 0), DecodeStatus::ok);
  Sampler sampler(params, stories());
  Constrained out;
  int pos = static_cast<int>(input.size());
  for (int i = 0; i < limit; ++i) {
    const Token t = sampler.sample(ctx, -1, banned);
    if (tok.is_end_of_generation(t)) {
      out.ended = true;
      break;
    }
    out.tokens.push_back(t);
    const Token one[] = {t};
    EXPECT_EQ(ctx.decode(one, pos++), DecodeStatus::ok);
  }
  out.text = tok.detokenize(out.tokens);
  return out;
}

// A JSON object of a fixed shape, as a JSON schema becomes.
constexpr const char* person_grammar =
    R"(root ::= "{" ws "\"name\"" ws ":" ws string ws "," ws "\"age\"" ws ":" ws number ws "}"
string ::= "\"" [a-zA-Z ]{1,12} "\""
number ::= [1-9] [0-9]{0,2}
ws ::= [ ]?
)";

TEST(GrammarTest, AnAlternationForcesOneOfItsWords) {
  Context ctx(stories(), {.n_ctx = 256, .n_batch = 64, .n_threads = 2});
  for (const float temperature : {0.0f, 1.0f}) {
    for (std::uint32_t seed = 1; seed <= (temperature > 0 ? 4u : 1u); ++seed) {
      SamplingParams p;
      p.temperature = temperature;
      p.seed = seed;
      p.grammar = R"(root ::= "yes" | "no")";
      const auto out = generate_constrained(ctx, p, 20);
      EXPECT_TRUE(out.text == "yes" || out.text == "no") << out.text;
      EXPECT_TRUE(out.ended) << "the grammar is complete: only the end of generation may follow";
    }
  }
}

TEST(GrammarTest, AJsonGrammarGivesParseableJson) {
  Context ctx(stories(), {.n_ctx = 256, .n_batch = 64, .n_threads = 2});
  for (const float temperature : {0.0f, 0.8f}) {
    SamplingParams p;
    p.temperature = temperature;
    p.seed = 11;
    p.grammar = person_grammar;
    const auto out = generate_constrained(ctx, p, 100);
    ASSERT_TRUE(out.ended) << out.text;
    const auto parsed = nlohmann::json::parse(out.text, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << out.text;
    EXPECT_TRUE(parsed.at("name").is_string()) << out.text;
    EXPECT_TRUE(parsed.at("age").is_number_integer()) << out.text;
  }
}

// Greedy under a grammar checks the unconstrained argmax, then a shortlist, then the whole vocabulary: it
// must pick what llama.cpp's chain of grammar-then-greedy picks, token for token.
TEST(GrammarTest, GreedyPicksWhatTheGrammarThenGreedyChainPicks) {
  Context ctx(stories(), {.n_ctx = 256, .n_batch = 64, .n_threads = 2});
  SamplingParams p;
  p.temperature = 0;
  p.grammar = person_grammar;
  const auto ours = generate_constrained(ctx, p, 100);

  const Tokenizer tok(stories());
  const auto input = tok.tokenize("Once upon a time", true, false);
  ctx.clear();
  ASSERT_EQ(ctx.decode(input, 0), DecodeStatus::ok);
  llama_sampler* chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
  llama_sampler_chain_add(chain, llama_sampler_init_grammar(stories().vocab(), person_grammar, "root"));
  llama_sampler_chain_add(chain, llama_sampler_init_greedy());
  std::vector<Token> reference;
  int pos = static_cast<int>(input.size());
  for (int i = 0; i < 100; ++i) {
    const Token t = llama_sampler_sample(chain, ctx.get(), -1);
    if (tok.is_end_of_generation(t)) break;
    reference.push_back(t);
    const Token one[] = {t};
    ASSERT_EQ(ctx.decode(one, pos++), DecodeStatus::ok);
  }
  llama_sampler_free(chain);
  EXPECT_EQ(ours.tokens, reference) << ours.text << " vs " << tok.detokenize(reference);
}

TEST(GrammarTest, ALazyGrammarLetsTextThroughUntilItsTrigger) {
  Context ctx(stories(), {.n_ctx = 256, .n_batch = 64, .n_threads = 2});
  SamplingParams free_text;
  free_text.temperature = 0;
  const auto plain = generate_constrained(ctx, free_text, 40);
  const auto at = plain.text.find(" there");
  ASSERT_NE(at, std::string::npos) << plain.text;

  SamplingParams lazy = free_text;
  lazy.grammar = R"(root ::= " there" " was a yes")";
  lazy.grammar_lazy = true;
  lazy.grammar_trigger_patterns = {"( there)"};
  const auto out = generate_constrained(ctx, lazy, 60);
  EXPECT_EQ(out.text, plain.text.substr(0, at) + " there was a yes") << plain.text;
  EXPECT_TRUE(out.ended);
}

TEST(GrammarTest, ACompleteGrammarEndsTheAnswerEvenWhereTheEndIsBanned) {
  Context ctx(stories(), {.n_ctx = 256, .n_batch = 64, .n_threads = 2});
  for (const float temperature : {0.0f, 1.0f}) {
    SamplingParams p;
    p.temperature = temperature;
    p.ignore_eos = true;
    p.grammar = R"(root ::= "yes")";
    const auto out = generate_constrained(ctx, p, 20);
    EXPECT_EQ(out.text, "yes");
    EXPECT_TRUE(out.ended);
    // min_tokens bans the end the same way
    p.ignore_eos = false;
    const auto& ends = stories().info().end_of_generation;
    const auto banned = generate_constrained(ctx, p, 20, "Once upon a time", ends);
    EXPECT_EQ(banned.text, "yes");
    EXPECT_TRUE(banned.ended);
  }
}

TEST(GrammarTest, AGrammarThatAllowsNoTokenIsAnErrorNotAHang) {
  Context ctx(stories(), {.n_ctx = 256, .n_batch = 64, .n_threads = 2});
  for (const float temperature : {0.0f, 1.0f}) {
    SamplingParams p;
    p.temperature = temperature;
    // The end-of-generation token in the middle: the end is allowed only where the grammar is complete.
    p.grammar = "root ::= <[" + std::to_string(Tokenizer(stories()).eos()) + R"(]> "a")";
    try {
      generate_constrained(ctx, p, 5);
      ADD_FAILURE() << "no error";
    } catch (const GrammarError& e) {
      EXPECT_EQ(e.error().kind, ErrorKind::invalid_request);
      EXPECT_EQ(e.error().param, "grammar");
      EXPECT_NE(std::string(e.what()).find("no next token"), std::string::npos) << e.what();
    }
  }
}

SamplingParams with_grammar(std::string grammar, std::vector<std::string> patterns = {},
                            std::vector<Token> tokens = {}, bool lazy = false) {
  SamplingParams p;
  p.grammar = std::move(grammar);
  p.grammar_lazy = lazy;
  p.grammar_trigger_patterns = std::move(patterns);
  p.grammar_trigger_tokens = std::move(tokens);
  return p;
}

TEST(GrammarTest, AnInvalidGrammarIsAnErrorNamingTheField) {
  const struct {
    SamplingParams params;
    const char* param;
    const char* says;
  } cases[] = {
      {with_grammar(R"(root ::= "yes)"), "grammar", "not a valid GBNF grammar"},
      {with_grammar(R"(root ::= answer)"), "grammar", "not a valid GBNF grammar"},
      {with_grammar(R"(start ::= "yes")"), "grammar", "'root'"},
      {with_grammar(R"(root ::= root "a" | "b")"), "grammar", "left recursion"},
      {with_grammar(R"(root ::= "a")", {}, {}, true), "grammar", "needs a trigger"},
      {with_grammar(R"(root ::= "a")", {"(["}, {}, true), "grammar_trigger_patterns", "not a valid regex"},
      {with_grammar(R"(root ::= "a")", {}, {100000}, true), "grammar_trigger_tokens",
       "not in the vocabulary"},
  };
  for (const auto& c : cases) {
    for (const bool through_sampler : {false, true}) {
      try {
        if (through_sampler) {
          Sampler sampler(c.params, stories());
        } else {
          check_grammar(stories(), c.params);
        }
        ADD_FAILURE() << c.params.grammar << ": accepted";
      } catch (const GrammarError& e) {
        EXPECT_EQ(e.error().kind, ErrorKind::invalid_request);
        EXPECT_EQ(e.error().param, c.param) << e.what();
        EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_NO_THROW(check_grammar(stories(), with_grammar(person_grammar)));
  EXPECT_NO_THROW(check_grammar(stories(), SamplingParams()));
}

TEST(ContextTest, PromptLongerThanBatchIsChunked) {
  Context ctx(stories(), {.n_ctx = 512, .n_batch = 32, .n_threads = 2});
  const Tokenizer tok(stories());
  std::string text;
  for (int i = 0; i < 20; ++i) text += "The cat sat on the mat. ";
  const auto prompt = tok.tokenize(text, true, false);
  ASSERT_GT(prompt.size(), 100u);
  EXPECT_EQ(ctx.decode(prompt, 0), DecodeStatus::ok);
}

}  // namespace
}  // namespace clawbot::engine
