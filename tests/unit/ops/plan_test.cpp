// The memory plan's arithmetic, and the reference deployment: header-only GGUF files with the published
// shapes of Llama-3.3-70B-Instruct (Q4_K_M, as llama.cpp's quantizer lays it out) and Qwen3-Next-80B-A3B.
// No libllama: this test runs in both builds. (ops_plan_accuracy_test checks the plan against libllama.)
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "gguf_test_writer.h"
#include "ops/plan.h"

namespace clawbot::ops {
namespace {

namespace fs = std::filesystem;

constexpr std::uint32_t f32 = 0, q4_k = 12, q5_k = 13, q6_k = 14;
constexpr std::uint64_t gib = 1ull << 30;

std::uint64_t bytes_of(std::uint32_t type, std::uint64_t elements) {
  switch (type) {
    case f32:
      return elements * 4;
    case q4_k:
      return elements / 256 * 144;
    case q5_k:
      return elements / 256 * 176;
    case q6_k:
      return elements / 256 * 210;
  }
  return 0;
}

void tensor(test::GgufWriter& w, const std::string& name, std::vector<std::uint64_t> dims,
            std::uint32_t type) {
  std::uint64_t n = 1;
  for (auto d : dims) n *= d;
  w.tensor(name, std::move(dims), type, bytes_of(type, n));
}

// llama.cpp's use_more_bits (llama-quant.cpp): the layers Q4_K_M gives Q6_K for attn_v and ffn_down.
bool use_more_bits(int i, int n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

// meta-llama/Llama-3.3-70B-Instruct config.json, quantized as llama-quantize Q4_K_M does: q4_K, with Q6_K
// output, attn_v Q6_K/Q5_K (the 70B bump) and ffn_down Q6_K on the use_more_bits layers, f32 norms.
test::GgufWriter llama_3_3_70b_q4_k_m() {
  const int n_layer = 80;
  const std::uint64_t n_embd = 8192, n_ff = 28672, n_vocab = 128256, head_dim = 128, n_head = 64, n_kv = 8;
  test::GgufWriter w;
  w.str("general.architecture", "llama");
  w.str("general.name", "Llama 3.3 70B Instruct (header only)");
  w.u32("general.file_type", 15);  // MOSTLY_Q4_K_M
  w.u32("llama.block_count", n_layer);
  w.u32("llama.context_length", 131072);
  w.u32("llama.embedding_length", n_embd);
  w.u32("llama.feed_forward_length", n_ff);
  w.u32("llama.attention.head_count", n_head);
  w.u32("llama.attention.head_count_kv", n_kv);
  w.u32("llama.vocab_size", n_vocab);
  w.u32("llama.rope.dimension_count", head_dim);
  tensor(w, "token_embd.weight", {n_embd, n_vocab}, q4_k);
  tensor(w, "rope_freqs.weight", {head_dim / 2}, f32);
  for (int il = 0; il < n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    tensor(w, p + "attn_norm.weight", {n_embd}, f32);
    tensor(w, p + "attn_q.weight", {n_embd, n_head * head_dim}, q4_k);
    tensor(w, p + "attn_k.weight", {n_embd, n_kv * head_dim}, q4_k);
    tensor(w, p + "attn_v.weight", {n_embd, n_kv * head_dim}, use_more_bits(il, n_layer) ? q6_k : q5_k);
    tensor(w, p + "attn_output.weight", {n_head * head_dim, n_embd}, q4_k);
    tensor(w, p + "ffn_norm.weight", {n_embd}, f32);
    tensor(w, p + "ffn_gate.weight", {n_embd, n_ff}, q4_k);
    tensor(w, p + "ffn_up.weight", {n_embd, n_ff}, q4_k);
    tensor(w, p + "ffn_down.weight", {n_ff, n_embd}, use_more_bits(il, n_layer) ? q6_k : q4_k);
  }
  tensor(w, "output_norm.weight", {n_embd}, f32);
  tensor(w, "output.weight", {n_embd, n_vocab}, q6_k);
  return w;
}

// Qwen/Qwen3-Next-80B-A3B-Instruct config.json: 48 layers, every 4th full attention (16 heads, 2 KV heads of
// 256), the others gated delta-net (conv kernel 4, 16 key heads and 32 value heads of 128), 512 experts.
// Only the metadata matters here, and one tensor.
test::GgufWriter qwen3_next_80b() {
  test::GgufWriter w;
  w.str("general.architecture", "qwen3next");
  w.u32("qwen3next.block_count", 48);
  w.u32("qwen3next.context_length", 262144);
  w.u32("qwen3next.embedding_length", 2048);
  w.u32("qwen3next.feed_forward_length", 5120);
  w.u32("qwen3next.attention.head_count", 16);
  w.u32("qwen3next.attention.head_count_kv", 2);
  w.u32("qwen3next.attention.key_length", 256);
  w.u32("qwen3next.attention.value_length", 256);
  w.u32("qwen3next.expert_count", 512);
  w.u32("qwen3next.expert_used_count", 10);
  w.u32("qwen3next.expert_feed_forward_length", 512);
  w.u32("qwen3next.expert_shared_feed_forward_length", 512);
  w.u32("qwen3next.ssm.conv_kernel", 4);
  w.u32("qwen3next.ssm.state_size", 128);
  w.u32("qwen3next.ssm.group_count", 16);
  w.u32("qwen3next.ssm.time_step_rank", 32);
  w.u32("qwen3next.ssm.inner_size", 4096);
  w.u32("qwen3next.full_attention_interval", 4);
  w.u32("qwen3next.vocab_size", 151936);
  tensor(w, "token_embd.weight", {2048, 151936}, q4_k);
  return w;
}

GgufFile parse(const test::GgufWriter& w) {
  const fs::path path =
      fs::temp_directory_path() / ("clawbot-plan-test-" + std::to_string(::getpid()) + ".gguf");
  w.write(path.string(), false);
  GgufFile file = read_gguf(path.string());
  fs::remove(path);
  return file;
}

TEST(PlanReference, Llama33_70B_Q4_K_M_WeightsMatchThePublishedFileSize) {
  const GgufFile file = parse(llama_3_3_70b_q4_k_m());
  EXPECT_FALSE(file.has_tensor_data());
  const ModelDims dims = model_dims(file);
  EXPECT_EQ(dims.file_type, "Q4_K_M");
  // 70.55 B parameters (the model card says 70B; config.json's shapes give 70,553,706,560).
  EXPECT_EQ(dims.n_params, 70'553'706'560u);
  const MemoryPlan plan = plan_memory(file, dims, 8192, 4, "f16", false);
  // bartowski/Llama-3.3-70B-Instruct-GGUF lists Llama-3.3-70B-Instruct-Q4_K_M.gguf as 42.52 GB (a few MB of
  // it are the tokenizer, which a header-only file of ours lacks): within 0.1%, as README says (7.5 MB,
  // 0.02%, below it).
  const double published = 42.52e9;
  EXPECT_NEAR(static_cast<double>(plan.weights), published, published * 0.001)
      << "weights " << plan.weights << " bytes";
  // KV cache: 80 layers x 8 KV heads x 128 x (K and V) x 2 bytes = 320 KiB a cell, for 4 x 8192 cells: 10
  // GiB.
  EXPECT_EQ(plan.kv, 80ull * 8 * 128 * 2 * 2 * 4 * 8192);
  EXPECT_EQ(plan.kv, 10 * gib);
  EXPECT_EQ(plan.recurrent, 0u);
  EXPECT_EQ(plan.n_ctx, 32768u);
  EXPECT_EQ(plan.n_stream, 4u);
  // Output: logits for 4 sequences; compute: logits of a 512-token step dominate (128256 x 512 x 4 bytes).
  EXPECT_EQ(plan.output, 128256ull * 4 * 4);
  EXPECT_EQ(plan.compute, 128256ull * 512 * 4 + 2ull * 8192 * 512 * 4);
  // q8_0 cache halves it, nearly: 34 bytes per 32 values instead of 64.
  const MemoryPlan q8 = plan_memory(file, dims, 8192, 4, "q8_0", false);
  EXPECT_EQ(q8.kv, 80ull * 2 * (1024 / 32 * 34) * 4 * 8192);
}

TEST(PlanReference, Qwen3Next80B_HybridCacheAndFixedState) {
  const GgufFile file = parse(qwen3_next_80b());
  const ModelDims dims = model_dims(file);
  const MemoryPlan plan = plan_memory(file, dims, 32768, 2, "f16", false);
  // 12 attention layers (every 4th) x 2 KV heads x 256 x (K and V) x 2 bytes = 24 KiB a cell, 65536 cells:
  // 1.5 GiB for two 32K conversations.
  EXPECT_EQ(plan.kv_layers, 12u);
  EXPECT_EQ(plan.kv, 12ull * 2 * 256 * 2 * 2 * 65536);
  EXPECT_EQ(plan.kv, 3 * gib / 2);
  // 36 delta-net layers, each f32 state of (4-1) x (4096 + 2 x 16 x 128) conv + 128 x 4096 recurrent values,
  // per sequence, whatever the context.
  EXPECT_EQ(plan.recurrent_layers, 36u);
  EXPECT_EQ(plan.recurrent, 36ull * (3 * (4096 + 2 * 16 * 128) + 128 * 4096) * 4 * 2);
  const MemoryPlan longer = plan_memory(file, dims, 65536, 2, "f16", false);
  EXPECT_EQ(longer.recurrent, plan.recurrent);
  EXPECT_EQ(longer.kv, 2 * plan.kv);
}

test::GgufWriter gemma3_like(bool with_pattern_array) {
  test::GgufWriter w;
  w.str("general.architecture", "gemma3");
  w.u32("gemma3.block_count", 12);
  w.u32("gemma3.embedding_length", 256);
  w.u32("gemma3.feed_forward_length", 1024);
  w.u32("gemma3.attention.head_count", 4);
  w.u32("gemma3.attention.head_count_kv", 1);
  w.u32("gemma3.attention.key_length", 64);
  w.u32("gemma3.attention.value_length", 64);
  w.u32("gemma3.attention.sliding_window", 512);
  if (with_pattern_array) {
    std::vector<bool> pattern(12, true);
    pattern[11] = false;
    w.bool_array("gemma3.attention.sliding_window_pattern", pattern);
  }
  w.u32("gemma3.vocab_size", 1024);
  tensor(w, "token_embd.weight", {256, 1024}, f32);
  return w;
}

TEST(PlanArithmetic, SlidingWindowLayersFollowTheArchitecturesPattern) {
  // gemma3 without a pattern key: 5 local layers to 1 global (llama.cpp's default for gemma3).
  const GgufFile file = parse(gemma3_like(false));
  const ModelDims dims = model_dims(file);
  int swa = 0;
  for (bool s : dims.is_swa) swa += s ? 1 : 0;
  EXPECT_EQ(swa, 10);
  EXPECT_FALSE(dims.is_swa[5]);
  EXPECT_FALSE(dims.is_swa[11]);
  // Every layer keeps the full context (serve keeps libllama's swa_full): 12 x 64 x 2 x 2 bytes a cell.
  const MemoryPlan plan = plan_memory(file, dims, 4096, 1, "f16", false);
  EXPECT_EQ(plan.swa_layers, 10u);
  EXPECT_EQ(plan.kv, 12ull * 64 * 2 * 2 * 4096);

  const ModelDims from_array = model_dims(parse(gemma3_like(true)));
  swa = 0;
  for (bool s : from_array.is_swa) swa += s ? 1 : 0;
  EXPECT_EQ(swa, 11);
}

TEST(PlanArithmetic, ContextIsPaddedLikeLibllama) {
  const GgufFile file = parse(gemma3_like(false));
  const ModelDims dims = model_dims(file);
  // 1000 x 3 = 3000 -> 3072, per stream 1024 -> 3072 cells.
  MemoryPlan plan = plan_memory(file, dims, 1000, 3, "f16", false);
  EXPECT_EQ(plan.n_ctx_seq, 1024u);
  EXPECT_EQ(plan.n_ctx, 3072u);
  // 300 x 3 = 900 -> 1024, per stream 341 -> 512: 1536 cells (libllama rounds each stream up).
  plan = plan_memory(file, dims, 300, 3, "f16", false);
  EXPECT_EQ(plan.n_ctx_seq, 512u);
  EXPECT_EQ(plan.n_ctx, 1536u);
  // Unified: one stream of 1024.
  plan = plan_memory(file, dims, 300, 3, "f16", true);
  EXPECT_EQ(plan.n_ctx, 1024u);
  EXPECT_EQ(plan.n_stream, 1u);
  // Default ctx: the model's own at most 8192; this one says none, so 4096.
  plan = plan_memory(file, dims, 0, 1, "f16", false);
  EXPECT_EQ(plan.ctx_per_request, 4096u);
}

TEST(PlanArithmetic, BadOptionsAreRefusedByName) {
  const GgufFile file = parse(gemma3_like(false));
  const ModelDims dims = model_dims(file);
  EXPECT_THROW(plan_memory(file, dims, 8, 1, "f16", false), std::invalid_argument);
  EXPECT_THROW(plan_memory(file, dims, 1024, 0, "f16", false), std::invalid_argument);
  try {
    plan_memory(file, dims, 1024, 1, "q3_K", false);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--kv-type 'q3_K'"), std::string::npos);
  }
}

TEST(PlanArithmetic, MissingMetadataIsNamed) {
  test::GgufWriter w;
  w.str("general.architecture", "llama");
  w.u32("llama.embedding_length", 64);
  try {
    model_dims(parse(w));
    FAIL();
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("llama.block_count"), std::string::npos) << e.what();
  }
}

// Found by fuzzing (tests/fuzz/corpus/gguf/regression-huge-block-count): a header from any URL claimed 4
// billion layers, and the plan sized a vector per layer before anything said no (a minute and gigabytes).
TEST(PlanArithmetic, ImpossibleLayerCountsAreRefusedBeforeAnyAllocation) {
  test::GgufWriter w;
  w.str("general.architecture", "llama");
  w.u32("llama.block_count", 4'000'000'000u);
  w.u32("llama.embedding_length", 64);
  w.u32("llama.attention.head_count", 4);
  try {
    model_dims(parse(w));
    FAIL();
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("'llama.block_count' is 4000000000"), std::string::npos) << e.what();
  }
}

TEST(ModelUrls, HuggingFaceShorthand) {
  EXPECT_EQ(resolve_model_url("hf://Qwen/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf"),
            "https://huggingface.co/Qwen/Qwen3-8B-GGUF/resolve/main/Qwen3-8B-Q4_K_M.gguf");
  EXPECT_EQ(resolve_model_url("hf://org/repo/sub/dir/f.gguf"),
            "https://huggingface.co/org/repo/resolve/main/sub/dir/f.gguf");
  EXPECT_EQ(resolve_model_url("http://127.0.0.1:8000/m.gguf"), "http://127.0.0.1:8000/m.gguf");
  EXPECT_THROW(resolve_model_url("hf://org/repo"), std::invalid_argument);
}

}  // namespace
}  // namespace clawbot::ops
