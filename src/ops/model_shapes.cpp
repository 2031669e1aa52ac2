// The shapes `models synth` knows. The numbers come from each model's config.json on Hugging Face (named in
// `source`); the tiny shapes are made up for fast tests and keep the structure of their architecture.
#include <stdexcept>

#include "common/error.h"
#include "ops/ops.h"

namespace clawbot::ops {
namespace {

std::vector<SynthShape> make_shapes() {
  std::vector<SynthShape> shapes;
  shapes.push_back({
      .name = "tiny-llama",
      .architecture = "llama",
      .source = "made up: the smallest useful llama (untied output layer, vocab padded to 32768)",
      .vocab_file = "ggml-vocab-phi-3.gguf",
      .n_layer = 2,
      .n_embd = 64,
      .n_ff = 256,
      .n_head = 4,
      .n_head_kv = 2,
      .head_dim = 16,
      .n_vocab = 32768,  // phi-3's 32064 padded, so the tests cover padding
      .n_ctx = 2048,
      .tied_embeddings = false,
  });
  shapes.push_back({
      .name = "tiny-swa",
      .architecture = "gemma3",
      .source = "made up: gemma3 with a 32-token sliding window on even layers, global attention on odd ones",
      .vocab_file = "ggml-vocab-phi-3.gguf",
      .n_layer = 4,
      .n_embd = 64,
      .n_ff = 256,
      .n_head = 4,
      .n_head_kv = 2,
      .head_dim = 16,
      .n_vocab = 32064,
      .n_ctx = 2048,
      .rope_theta = 1000000.0f,
      .norm_eps = 1e-6f,
      .qk_norm = true,
      .sliding_window = 32,
      .sliding_window_pattern = 2,
      .rope_theta_swa = 10000.0f,
  });
  shapes.push_back({
      .name = "tiny-hybrid",
      .architecture = "lfm2",
      .source = "made up: lfm2 with short-convolution layers 0 and 2, attention layers 1 and 3",
      .vocab_file = "ggml-vocab-phi-3.gguf",
      .n_layer = 4,
      .n_embd = 64,
      .n_ff = 256,
      .n_head = 4,
      .n_head_kv = 2,
      .head_dim = 16,
      .n_vocab = 32064,
      .n_ctx = 2048,
      .rope_theta = 1000000.0f,
      .qk_norm = true,
      .attention_layers = {1, 3},
      .shortconv_l_cache = 3,
  });
  shapes.push_back({
      .name = "smollm2-135m",
      .architecture = "llama",
      .source = "HuggingFaceTB/SmolLM2-135M config.json",
      .vocab_file = "ggml-vocab-phi-3.gguf",
      .n_layer = 30,
      .n_embd = 576,
      .n_ff = 1536,
      .n_head = 9,
      .n_head_kv = 3,
      .head_dim = 64,
      .n_vocab = 49152,
      .n_ctx = 8192,
      .rope_theta = 100000.0f,
      .norm_eps = 1e-5f,
  });
  shapes.push_back({
      .name = "qwen3-0.6b",
      .architecture = "qwen3",
      .source = "Qwen/Qwen3-0.6B config.json",
      .vocab_file = "ggml-vocab-phi-3.gguf",
      .n_layer = 28,
      .n_embd = 1024,
      .n_ff = 3072,
      .n_head = 16,
      .n_head_kv = 8,
      .head_dim = 128,
      .n_vocab = 151936,
      .n_ctx = 40960,
      .rope_theta = 1000000.0f,
      .norm_eps = 1e-6f,
      .qk_norm = true,
  });
  shapes.push_back({
      .name = "llama-3.2-1b",
      .architecture = "llama",
      .source = "meta-llama/Llama-3.2-1B config.json (rope_scaling llama3: factor 32, low 1, high 4, 8192)",
      .vocab_file = "ggml-vocab-phi-3.gguf",
      .n_layer = 16,
      .n_embd = 2048,
      .n_ff = 8192,
      .n_head = 32,
      .n_head_kv = 8,
      .head_dim = 64,
      .n_vocab = 128256,
      .n_ctx = 131072,
      .rope_theta = 500000.0f,
      .norm_eps = 1e-5f,
      .rope_scaling_factor = 32.0f,
      .rope_low_freq_factor = 1.0f,
      .rope_high_freq_factor = 4.0f,
      .rope_original_ctx = 8192,
  });
  shapes.push_back({
      .name = "gemma3-270m",
      .architecture = "gemma3",
      .source = "google/gemma-3-270m config.json (sliding window 512, 5 local layers to 1 global)",
      .vocab_file = "ggml-vocab-phi-3.gguf",
      .n_layer = 18,
      .n_embd = 640,
      .n_ff = 2048,
      .n_head = 4,
      .n_head_kv = 1,
      .head_dim = 256,
      .n_vocab = 262144,
      .n_ctx = 32768,
      .rope_theta = 1000000.0f,
      .norm_eps = 1e-6f,
      .qk_norm = true,
      .sliding_window = 512,
      .sliding_window_pattern = 6,
      .rope_theta_swa = 10000.0f,
  });
  shapes.push_back({
      .name = "lfm2-350m",
      .architecture = "lfm2",
      .source = "LiquidAI/LFM2-350M config.json (full_attn_idxs 2,5,8,10,12,14; block_ff_dim 6656 adjusted "
                "to 4608)",
      .vocab_file = "ggml-vocab-phi-3.gguf",
      .n_layer = 16,
      .n_embd = 1024,
      .n_ff = 4608,
      .n_head = 16,
      .n_head_kv = 8,
      .head_dim = 64,
      .n_vocab = 65536,
      .n_ctx = 128000,
      .rope_theta = 1000000.0f,
      .norm_eps = 1e-5f,
      .qk_norm = true,
      .attention_layers = {2, 5, 8, 10, 12, 14},
      .shortconv_l_cache = 3,
  });
  shapes.push_back({
      .name = "bge-small-en-v1.5",
      .architecture = "bert",
      .source = "BAAI/bge-small-en-v1.5 config.json (pooling CLS from its 1_Pooling/config.json)",
      .vocab_file = "ggml-vocab-bert-bge.gguf",
      .n_layer = 12,
      .n_embd = 384,
      .n_ff = 1536,
      .n_head = 12,
      .n_head_kv = 12,
      .head_dim = 32,
      .n_vocab = 30522,
      .n_ctx = 512,
      .norm_eps = 1e-12f,
      .causal = false,
      .pooling = 2,  // LLAMA_POOLING_TYPE_CLS
  });
  shapes.push_back({
      .name = "bge-tiny",
      .architecture = "bert",
      .source = "made up: bge-small-en-v1.5's structure (BERT, CLS pooling) and vocabulary, tiny layers (for "
                "knowledge-base tests: 50 times less compute a token than bge-small)",
      .vocab_file = "ggml-vocab-bert-bge.gguf",
      .n_layer = 2,
      .n_embd = 128,
      .n_ff = 512,
      .n_head = 4,
      .n_head_kv = 4,
      .head_dim = 32,
      .n_vocab = 30522,
      .n_ctx = 512,
      .norm_eps = 1e-12f,
      .causal = false,
      .pooling = 2,  // LLAMA_POOLING_TYPE_CLS
  });
  shapes.push_back({
      .name = "qwen3-tools-tiny",
      .architecture = "qwen3",
      .source = "made up: Qwen3-0.6B's architecture, vocabulary, tool-call tokens and chat template, tiny "
                "layers (for tool-calling and reasoning tests)",
      .vocab_file = "ggml-vocab-qwen2.gguf",
      .n_layer = 2,
      .n_embd = 64,
      .n_ff = 192,
      .n_head = 4,
      .n_head_kv = 2,
      .head_dim = 16,
      .n_vocab = 151936,
      .n_ctx = 40960,
      .rope_theta = 1000000.0f,
      .norm_eps = 1e-6f,
      .qk_norm = true,
      // Qwen3's added tokens that Qwen2's vocab file lacks and its template uses (the rest of 151646..151668
      // stays padding)
      .added_tokens = {{151657, "<tool_call>"},
                       {151658, "</tool_call>"},
                       {151665, "<tool_response>"},
                       {151666, "</tool_response>"},
                       {151667, "<think>"},
                       {151668, "</think>"}},
      .chat_template_file = "templates/Qwen-Qwen3-0.6B.jinja",
      .eos_token = 151645,  // <|im_end|>, as Qwen3's own GGUF files have it
  });
  shapes.push_back({
      .name = "bge-reranker-tiny",
      .architecture = "bert",
      .source = "made up: bge-reranker's structure (BERT, classification head, rank pooling), tiny layers",
      .vocab_file = "ggml-vocab-bert-bge.gguf",
      .n_layer = 2,
      .n_embd = 64,
      .n_ff = 256,
      .n_head = 4,
      .n_head_kv = 4,
      .head_dim = 16,
      .n_vocab = 30522,
      .n_ctx = 512,
      .norm_eps = 1e-12f,
      .causal = false,
      .pooling = 4,  // LLAMA_POOLING_TYPE_RANK
      .classifier_head = true,
  });
  return shapes;
}

}  // namespace

const std::vector<SynthShape>& synth_shapes() {
  static const std::vector<SynthShape> shapes = make_shapes();
  return shapes;
}

const SynthShape& synth_shape(std::string_view name) {
  std::string names;
  for (const auto& s : synth_shapes()) {
    if (s.name == name) return s;
    names += (names.empty() ? "" : ", ") + s.name;
  }
  throw ClawbotError(ErrorKind::invalid_request,
                     "unknown shape '" + std::string(name) + "'; known shapes: " + names);
}

}  // namespace clawbot::ops
