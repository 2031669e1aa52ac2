// `models synth`: synthesized files load in libllama with the shapes they claim, decode (or embed), keep the
// tokenizer of their vocab file, and are reproducible. The vocab files come from CLAWBOT_MODELS (default
// ../shared/models); a missing one fails the test. Only tiny shapes and bge-small are written here.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gguf.h>
#include <gtest/gtest.h>
#include <llama.h>
#include <unistd.h>

#include "engine/engine.h"
#include "ops/ops.h"

namespace clawbot::ops {
namespace {

namespace fs = std::filesystem;

const std::string sentence = "The quick brown fox jumps over the lazy dog, 3 times!";

// One directory per test process (ctest runs each test on its own), removed at exit.
const fs::path& temp_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("clawbot-synth-test-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

class SynthEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* models = std::getenv("CLAWBOT_MODELS");
    std::string dirs = models && *models ? models : CLAWBOT_DEFAULT_MODELS;
    // llama.cpp's own vocab files and chat templates (qwen3-tools-tiny's), from the source in the dependency
    // cache
    dirs += std::string(":") + CLAWBOT_LLAMA_SOURCE_MODELS;
    ::setenv("CLAWBOT_MODELS", dirs.c_str(), 1);
    ::setenv("XDG_CACHE_HOME", (temp_dir() / "cache").c_str(), 1);  // default paths stay in the temp dir
    engine::init_backend(/*verbose=*/false);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(temp_dir(), ec);
  }
};
const auto* const environment = ::testing::AddGlobalTestEnvironment(new SynthEnvironment);

SynthResult synth(const std::string& shape, const std::string& quant, std::uint64_t seed = 42,
                  int threads = 2) {
  SynthOptions options;
  options.shape = shape;
  options.quant = quant;
  options.seed = seed;
  options.threads = threads;
  options.output = (temp_dir() / (shape + "-" + quant + "-" + std::to_string(seed) + ".gguf")).string();
  return synthesize_model(options);
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string tensor_type(const std::string& path, const std::string& tensor) {
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  gguf_context* g = gguf_init_from_file(path.c_str(), params);
  if (!g) return "unreadable";
  const auto id = gguf_find_tensor(g, tensor.c_str());
  std::string type = id < 0 ? "missing" : ggml_type_name(gguf_get_tensor_type(g, id));
  gguf_free(g);
  return type;
}

void expect_shape(const engine::Model& model, const SynthShape& shape) {
  const auto& info = model.info();
  EXPECT_EQ(info.architecture, shape.architecture);
  EXPECT_EQ(info.n_layer, shape.n_layer);
  EXPECT_EQ(info.n_embd, shape.n_embd);
  EXPECT_EQ(info.n_vocab, shape.n_vocab);
  EXPECT_EQ(info.n_ctx_train, shape.n_ctx);
  EXPECT_EQ(model.meta("general.name").value_or(""), "synthetic " + shape.name);
  EXPECT_EQ(model.meta("clawbot.synthetic").value_or(""), "true");
  EXPECT_EQ(model.meta("clawbot.synthetic.shape").value_or(""), shape.name);
}

// The synthesized tokenizer splits and joins text exactly as its source vocab does.
void expect_same_tokenizer(const engine::Model& model, const std::string& vocab_file) {
  const auto source = engine::Model::load({.path = find_model_file(vocab_file), .vocab_only = true});
  const engine::Tokenizer synthesized_tok(model);
  const engine::Tokenizer source_tok(source);
  const auto tokens = synthesized_tok.tokenize(sentence, /*add_special=*/false, /*parse_special=*/false);
  EXPECT_EQ(tokens, source_tok.tokenize(sentence, false, false));
  EXPECT_EQ(synthesized_tok.detokenize(tokens), source_tok.detokenize(tokens));
  EXPECT_EQ(synthesized_tok.bos(), source_tok.bos());
  EXPECT_EQ(synthesized_tok.eos(), source_tok.eos());
}

// Decodes a prompt of n_prompt tokens, then greedily n_generate more; every logit must be finite.
void expect_decodes(const engine::Model& model, int n_prompt, int n_generate) {
  // one thread: ggml's spinning workers crawl on an oversubscribed 2-core machine, and these models are tiny
  engine::Context context(model, {.n_ctx = 256, .n_batch = 64, .n_threads = 1});
  const engine::Tokenizer tokenizer(model);
  std::vector<engine::Token> prompt;
  while (static_cast<int>(prompt.size()) < n_prompt) {
    for (auto t : tokenizer.tokenize(sentence, prompt.empty(), false)) prompt.push_back(t);
  }
  prompt.resize(static_cast<std::size_t>(n_prompt));
  ASSERT_EQ(context.decode(prompt, 0), engine::DecodeStatus::ok);
  int pos = n_prompt;
  for (int i = 0; i < n_generate; ++i) {
    const float* logits = llama_get_logits_ith(context.get(), -1);
    ASSERT_NE(logits, nullptr);
    const auto n_vocab = static_cast<std::size_t>(model.info().n_vocab);
    ASSERT_TRUE(std::all_of(logits, logits + n_vocab, [](float x) { return std::isfinite(x); }))
        << "non-finite logit after " << pos << " tokens";
    const engine::Token next =
        static_cast<engine::Token>(std::max_element(logits, logits + n_vocab) - logits);
    const std::vector<engine::Token> one{next};
    ASSERT_EQ(context.decode(one, pos++), engine::DecodeStatus::ok);
  }
}

// ---------------------------------------------------------------- the shape table

TEST(SynthShapeTest, RealShapesHaveTheirParameterCounts) {
  // HF parameter counts (tied embeddings counted once, bge without its pooler); llama-3.2-1b adds the 32
  // RoPE factors that the converter stores as rope_freqs.weight.
  EXPECT_EQ(synth_shape_params(synth_shape("smollm2-135m")), 134515008u);
  EXPECT_EQ(synth_shape_params(synth_shape("qwen3-0.6b")), 596049920u);
  EXPECT_EQ(synth_shape_params(synth_shape("llama-3.2-1b")), 1235814400u + 32u);
  EXPECT_EQ(synth_shape_params(synth_shape("bge-small-en-v1.5")), 33212160u);

  const auto& llama = synth_shape("llama-3.2-1b");
  EXPECT_EQ(llama.n_layer, 16);
  EXPECT_EQ(llama.n_embd, 2048);
  EXPECT_EQ(llama.n_ff, 8192);
  EXPECT_EQ(llama.n_head_kv, 8);
  EXPECT_EQ(llama.n_vocab, 128256);
}

TEST(SynthShapeTest, UnknownShapeNamesTheKnownOnes) {
  try {
    synth_shape("gpt-5");
    FAIL() << "no error for an unknown shape";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown shape 'gpt-5'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("llama-3.2-1b"), std::string::npos) << e.what();
  }
}

TEST(SynthShapeTest, DefaultPathIsInTheCache) {
  EXPECT_EQ(synth_default_path("tiny-llama", "q8_0"),
            (temp_dir() / "cache" / "clawbot" / "models" / "tiny-llama-q8_0.gguf").string());
}

// ---------------------------------------------------------------- decoders

TEST(SynthModelTest, TinyLlamaF32LoadsDecodesAndKeepsTheTokenizer) {
  const auto result = synth("tiny-llama", "f32");
  const auto& shape = synth_shape("tiny-llama");
  const auto model = engine::Model::load({.path = result.path});
  expect_shape(model, shape);
  EXPECT_EQ(llama_model_ftype(model.get()), LLAMA_FTYPE_ALL_F32);
  EXPECT_EQ(tensor_type(result.path, "output.weight"), "f32");  // untied
  // 32064 real tokens padded to 32768 with unused ones that render as nothing
  EXPECT_EQ(llama_vocab_get_attr(model.vocab(), 32767), LLAMA_TOKEN_ATTR_UNUSED);
  EXPECT_EQ(engine::Tokenizer(model).piece(32767), "");
  expect_same_tokenizer(model, "ggml-vocab-phi-3.gguf");
  const engine::Tokenizer tokenizer(model);
  EXPECT_EQ(tokenizer.detokenize(tokenizer.tokenize(sentence, false, false)), sentence);
  expect_decodes(model, 16, 8);
}

TEST(SynthModelTest, TinyLlamaQ8_0IsQuantizedByLibllama) {
  const auto result = synth("tiny-llama", "q8_0");
  const auto model = engine::Model::load({.path = result.path});
  expect_shape(model, synth_shape("tiny-llama"));
  EXPECT_EQ(llama_model_ftype(model.get()), LLAMA_FTYPE_MOSTLY_Q8_0);
  EXPECT_EQ(tensor_type(result.path, "blk.0.attn_q.weight"), "q8_0");
  EXPECT_EQ(tensor_type(result.path, "blk.0.attn_norm.weight"), "f32");
  EXPECT_EQ(model.meta("clawbot.synthetic.quant").value_or(""), "q8_0");
  expect_same_tokenizer(model, "ggml-vocab-phi-3.gguf");
  expect_decodes(model, 16, 8);
  // the F16 intermediate is gone
  for (const auto& entry : fs::directory_iterator(temp_dir())) {
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
  }
}

TEST(SynthModelTest, TinySwaHasASlidingWindowAndDecodesPastIt) {
  const auto result = synth("tiny-swa", "f16");
  const auto& shape = synth_shape("tiny-swa");
  const auto model = engine::Model::load({.path = result.path});
  expect_shape(model, shape);
  EXPECT_EQ(llama_model_n_swa(model.get()), 32);
  expect_same_tokenizer(model, "ggml-vocab-phi-3.gguf");
  expect_decodes(model, 100, 20);  // well past the 32-token window
}

TEST(SynthModelTest, TinyHybridIsHybridAndDecodes) {
  const auto result = synth("tiny-hybrid", "q4_k_m");
  const auto& shape = synth_shape("tiny-hybrid");
  const auto model = engine::Model::load({.path = result.path});
  expect_shape(model, shape);
  EXPECT_TRUE(llama_model_is_hybrid(model.get()));
  EXPECT_FALSE(llama_model_is_recurrent(model.get()));
  EXPECT_EQ(llama_model_ftype(model.get()), LLAMA_FTYPE_MOSTLY_Q4_K_M);
  EXPECT_EQ(tensor_type(result.path, "blk.0.shortconv.conv.weight"), "f32");
  expect_same_tokenizer(model, "ggml-vocab-phi-3.gguf");
  expect_decodes(model, 40, 10);
}

// ---------------------------------------------------------------- encoder

TEST(SynthModelTest, BgeSmallEmbedsWithClsPooling) {
  const auto result = synth("bge-small-en-v1.5", "f16");
  const auto& shape = synth_shape("bge-small-en-v1.5");
  const auto model = engine::Model::load({.path = result.path});
  expect_shape(model, shape);
  EXPECT_TRUE(model.info().is_embedding);
  EXPECT_EQ(tensor_type(result.path, "blk.0.attn_q.weight"), "f16");
  EXPECT_EQ(tensor_type(result.path, "blk.0.attn_q.bias"), "f32");
  expect_same_tokenizer(model, "ggml-vocab-bert-bge.gguf");  // WordPiece, uncased: round-trips lower-cased

  llama_context_params params = llama_context_default_params();
  params.n_ctx = 512;
  params.n_batch = 512;
  params.n_ubatch = 512;
  params.embeddings = true;  // pooling type: the model's own (from its metadata)
  params.n_threads = 1;
  params.n_threads_batch = 1;
  llama_context* ctx = llama_init_from_model(model.get(), params);
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(llama_pooling_type(ctx), LLAMA_POOLING_TYPE_CLS);
  auto tokens = engine::Tokenizer(model).tokenize(sentence, /*add_special=*/true, false);
  ASSERT_EQ(llama_encode(ctx, llama_batch_get_one(tokens.data(), static_cast<int32_t>(tokens.size()))), 0);
  const float* embedding = llama_get_embeddings_seq(ctx, 0);
  ASSERT_NE(embedding, nullptr);
  EXPECT_EQ(llama_model_n_embd(model.get()), 384);
  double norm = 0;
  for (int i = 0; i < 384; ++i) {
    ASSERT_TRUE(std::isfinite(embedding[i])) << "dimension " << i;
    norm += static_cast<double>(embedding[i]) * embedding[i];
  }
  EXPECT_GT(norm, 0.0);
  llama_free(ctx);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(SynthModelTest, QwenToolsTinyHasQwen3sToolTokensEndAndChatTemplate) {
  const auto result = synth("qwen3-tools-tiny", "f16");
  const auto& shape = synth_shape("qwen3-tools-tiny");
  const auto model = engine::Model::load({.path = result.path});
  expect_shape(model, shape);
  const engine::Tokenizer tok(model);
  const std::pair<const char*, engine::Token> tokens[] = {
      {"<tool_call>", 151657},      {"</tool_call>", 151658}, {"<tool_response>", 151665},
      {"</tool_response>", 151666}, {"<think>", 151667},      {"</think>", 151668},
      {"<|im_start|>", 151644},     {"<|im_end|>", 151645}};
  for (const auto& [text, id] : tokens) {
    EXPECT_EQ(tok.tokenize(text, false, true), std::vector<engine::Token>{id}) << text;
    EXPECT_EQ(tok.piece(id, true), text);
  }
  // user-defined, as Qwen3's converted GGUF has them: matched in plain text too, and shown in the output
  EXPECT_EQ(tok.tokenize("<tool_call>", false, false), std::vector<engine::Token>{151657});
  EXPECT_EQ(tok.piece(151657), "<tool_call>");
  EXPECT_EQ(tok.eos(), 151645);
  EXPECT_TRUE(tok.is_end_of_generation(151645));
  EXPECT_TRUE(tok.is_end_of_generation(151643));
  EXPECT_FALSE(tok.is_end_of_generation(151657));
  const std::string template_file =
      std::string(CLAWBOT_LLAMA_SOURCE_MODELS) + "/templates/Qwen-Qwen3-0.6B.jinja";
  EXPECT_EQ(model.info().chat_template, read_text(template_file));
  EXPECT_NE(model.info().chat_template.find("<tool_call>"), std::string::npos);
  EXPECT_NE(model.meta("general.description").value_or("").find("Qwen-Qwen3-0.6B.jinja"), std::string::npos);
  expect_decodes(model, 12, 4);
}

TEST(SynthModelTest, ChatTemplateFileOverridesTheShapes) {
  SynthOptions options;
  options.shape = "qwen3-tools-tiny";
  options.quant = "f16";
  options.threads = 2;
  options.chat_template_file =
      std::string(CLAWBOT_LLAMA_SOURCE_MODELS) + "/templates/Qwen-Qwen2.5-7B-Instruct.jinja";
  options.output = (temp_dir() / "qwen3-tools-other-template.gguf").string();
  const auto result = synthesize_model(options);
  const auto model = engine::Model::load({.path = result.path, .vocab_only = true});
  EXPECT_EQ(model.info().chat_template, read_text(options.chat_template_file));
  // another template is another file: not reused in place of the first
  options.chat_template_file = std::string(CLAWBOT_LLAMA_SOURCE_MODELS) + "/templates/Qwen-Qwen3-0.6B.jinja";
  EXPECT_FALSE(synthesize_model(options).reused);
  options.chat_template_file = (temp_dir() / "no-such.jinja").string();
  EXPECT_THROW(synthesize_model(options), ClawbotError);
}

TEST(SynthModelTest, BgeRerankerTinyRanksWithItsClassificationHead) {
  const auto result = synth("bge-reranker-tiny", "q8_0");
  const auto model = engine::Model::load({.path = result.path});
  expect_shape(model, synth_shape("bge-reranker-tiny"));
  EXPECT_EQ(model.info().pooling, LLAMA_POOLING_TYPE_RANK);
  EXPECT_TRUE(model.info().is_embedding);
  for (const char* tensor : {"cls.weight", "cls.bias", "cls.output.weight", "cls.output.bias"}) {
    EXPECT_NE(tensor_type(result.path, tensor), "missing") << tensor;
  }
  EXPECT_EQ(llama_model_n_cls_out(model.get()), 1u);

  llama_context_params params = llama_context_default_params();
  params.n_ctx = 512;
  params.n_batch = 512;
  params.n_ubatch = 512;
  params.embeddings = true;
  params.n_threads = 1;
  params.n_threads_batch = 1;
  llama_context* ctx = llama_init_from_model(model.get(), params);
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(llama_pooling_type(ctx), LLAMA_POOLING_TYPE_RANK);
  auto tokens = engine::Tokenizer(model).tokenize("what is a cat? a cat is an animal", true, false);
  ASSERT_EQ(llama_encode(ctx, llama_batch_get_one(tokens.data(), static_cast<int32_t>(tokens.size()))), 0);
  const float* score = llama_get_embeddings_seq(ctx, 0);
  ASSERT_NE(score, nullptr);
  EXPECT_TRUE(std::isfinite(score[0]));
  llama_free(ctx);
}

// ---------------------------------------------------------------- reuse and reproducibility

TEST(SynthModelTest, SameParametersReuseTheFileOtherSeedsRewriteIt) {
  SynthOptions options{.shape = "tiny-llama", .quant = "f16", .seed = 7, .threads = 2};  // default path
  const auto first = synthesize_model(options);
  EXPECT_FALSE(first.reused);
  EXPECT_EQ(first.path, synth_default_path("tiny-llama", "f16"));
  const std::string first_bytes = read_bytes(first.path);

  const auto again = synthesize_model(options);
  EXPECT_TRUE(again.reused);
  EXPECT_EQ(again.path, first.path);

  options.seed = 8;
  const auto reseeded = synthesize_model(options);
  EXPECT_FALSE(reseeded.reused);
  EXPECT_NE(read_bytes(reseeded.path), first_bytes);

  // a truncated file is not reused
  fs::resize_file(reseeded.path, fs::file_size(reseeded.path) / 2);
  EXPECT_FALSE(synthesize_model(options).reused);
}

TEST(SynthModelTest, BytesDependOnTheSeedOnlyNotOnThreads) {
  const auto one_thread = synth("tiny-llama", "f16", 99, 1);
  SynthOptions options{.shape = "tiny-llama", .quant = "f16", .seed = 99, .threads = 2};
  options.output = (temp_dir() / "two-threads.gguf").string();
  const auto two_threads = synthesize_model(options);
  EXPECT_EQ(read_bytes(one_thread.path), read_bytes(two_threads.path));
}

TEST(SynthModelTest, WeightsAreNormalWithStd002AndNormsAreOne) {
  const auto result = synth("tiny-llama", "f32");
  ggml_context* data = nullptr;
  gguf_init_params params{/*no_alloc=*/false, &data};
  gguf_context* g = gguf_init_from_file(result.path.c_str(), params);
  ASSERT_NE(g, nullptr);
  const ggml_tensor* embd = ggml_get_tensor(data, "token_embd.weight");
  const ggml_tensor* norm = ggml_get_tensor(data, "blk.0.attn_norm.weight");
  ASSERT_NE(embd, nullptr);
  ASSERT_NE(norm, nullptr);
  const auto* w = static_cast<const float*>(embd->data);
  const auto n = ggml_nelements(embd);
  double sum = 0, sum_sq = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    sum += w[i];
    sum_sq += static_cast<double>(w[i]) * w[i];
  }
  const double mean = sum / static_cast<double>(n);
  EXPECT_NEAR(mean, 0.0, 1e-4);
  EXPECT_NEAR(std::sqrt(sum_sq / static_cast<double>(n) - mean * mean), 0.02, 2e-4);
  const auto* ones = static_cast<const float*>(norm->data);
  EXPECT_TRUE(std::all_of(ones, ones + ggml_nelements(norm), [](float x) { return x == 1.0f; }));
  gguf_free(g);
  ggml_free(data);
}

// ---------------------------------------------------------------- errors

void expect_error(SynthOptions options, const std::string& fragment) {
  if (options.output.empty()) options.output = (temp_dir() / "error.gguf").string();
  try {
    synthesize_model(options);
    ADD_FAILURE() << "no error; expected one mentioning: " << fragment;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(options.output));
}

TEST(SynthErrorTest, UnknownQuant) {
  expect_error({.shape = "tiny-llama", .quant = "q3_k_s"}, "unknown quant 'q3_k_s'");
}

TEST(SynthErrorTest, VocabLargerThanTheShape) {
  expect_error({.shape = "bge-small-en-v1.5", .quant = "f16", .vocab_from = "ggml-vocab-phi-3.gguf"},
               "has 32064 tokens, more than the 30522 of shape bge-small-en-v1.5");
}

TEST(SynthErrorTest, MissingVocabFile) {
  expect_error({.shape = "tiny-llama", .quant = "f16", .vocab_from = "no-such-vocab.gguf"},
               "no model file 'no-such-vocab.gguf'");
}

TEST(SynthErrorTest, VocabFileWithoutTokenizer) {
  const auto path = temp_dir() / "not-a-vocab.gguf";
  gguf_context* g = gguf_init_empty();
  gguf_set_val_str(g, "general.architecture", "llama");
  ASSERT_TRUE(gguf_write_to_file(g, path.c_str(), false));
  gguf_free(g);
  expect_error({.shape = "tiny-llama", .quant = "f16", .vocab_from = path.string()}, "has no tokenizer");
}

TEST(SynthErrorTest, NeverOverwritesAFileThatIsNotSynthetic) {
  const auto path = temp_dir() / "precious.gguf";
  std::ofstream(path) << "my real model";
  SynthOptions options{.shape = "tiny-llama", .quant = "f16"};
  options.output = path.string();
  try {
    synthesize_model(options);
    ADD_FAILURE() << "overwrote a file that is not synthetic";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("already exists and is not a synthetic model"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(read_bytes(path.string()), "my real model");
  options.force = true;
  EXPECT_FALSE(synthesize_model(options).reused);
  EXPECT_EQ(engine::Model::load({.path = path.string()}).info().architecture, "llama");
}

TEST(SynthErrorTest, CommandLineReportsErrorsAndExitsOne) {
  testing::internal::CaptureStderr();
  const int status = run_models_synth({.shape = "nope"});
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(status, 1);
  EXPECT_NE(err.find("clawbot models synth: unknown shape 'nope'"), std::string::npos) << err;
}

}  // namespace
}  // namespace clawbot::ops
