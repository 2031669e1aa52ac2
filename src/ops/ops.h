// Operations on model files. `clawbot models synth` writes GGUF files with the exact shapes of real models,
// seeded random weights, a real tokenizer and real quantization: speed does not depend on weight values, so
// they stand in for the real models in benchmarks. Their output is meaningless; every file is labelled
// synthetic in its metadata (`clawbot.synthetic = true`, `general.name = "synthetic <shape>"`).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace clawbot::ops {

// The shape of a model: everything that decides its speed and memory, nothing of its weights.
// A token put into the copied vocabulary at its real id (over padding), e.g. Qwen3's <tool_call>.
struct SynthToken {
  std::int64_t id = 0;
  std::string text{};
  std::int32_t type =
      4;  // llama_token_type: 4 user-defined (as the converter marks HF's non-special added tokens)
};

struct SynthShape {
  std::string name{};          // e.g. "llama-3.2-1b"
  std::string architecture{};  // general.architecture: llama, qwen3, gemma3, lfm2, bert
  std::string source{};        // the config the numbers come from
  std::string vocab_file{};    // the vocab-only GGUF (in CLAWBOT_MODELS) whose tokenizer is copied
  std::int32_t n_layer = 0;
  std::int32_t n_embd = 0;
  std::int32_t n_ff = 0;
  std::int32_t n_head = 0;
  std::int32_t n_head_kv = 0;
  std::int32_t head_dim = 0;
  std::int64_t n_vocab = 0;  // the tokenizer is padded with unused tokens up to this size
  std::uint32_t n_ctx = 0;   // training context
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;
  bool tied_embeddings = true;  // no output.weight: the token embedding is the output layer
  bool qk_norm = false;         // per-head RMS norm of Q and K (qwen3, gemma3, lfm2)
  // Llama 3 RoPE scaling (stored as rope_freqs.weight); factor 0: none.
  float rope_scaling_factor = 0.0f;
  float rope_low_freq_factor = 0.0f;
  float rope_high_freq_factor = 0.0f;
  std::uint32_t rope_original_ctx = 0;
  // Sliding-window attention (gemma3): window in tokens and pattern (every n-th layer is global); 0: none.
  std::uint32_t sliding_window = 0;
  std::uint32_t sliding_window_pattern = 0;
  float rope_theta_swa = 0.0f;
  // Hybrid (lfm2): the layers that are attention; the others are short convolutions. Empty: all attention.
  std::vector<std::int32_t> attention_layers{};
  std::uint32_t shortconv_l_cache = 0;
  // Encoder (bert): bidirectional attention, pooled output.
  bool causal = true;
  std::int32_t pooling = -1;  // llama_pooling_type; -1: none
  // Rerankers (bge-reranker): the sequence classification head, cls (n_embd x n_embd, tanh) then cls.output
  // (n_embd -> 1 score), as llama.cpp's rank pooling reads it.
  bool classifier_head = false;
  // Tool-calling test models: tokens the vocab file lacks, at their real ids; the model's own chat template
  // (a file found beside the vocab file, as llama.cpp keeps models/templates/ beside
  // models/ggml-vocab-*.gguf, or in CLAWBOT_MODELS); its end-of-sequence token when it differs from the vocab
  // file's (-1: keep).
  std::vector<SynthToken> added_tokens{};
  std::string chat_template_file{};
  std::int64_t eos_token = -1;
};

// Every shape `models synth` knows, in the order --list prints them.
const std::vector<SynthShape>& synth_shapes();
// The shape of that name; throws ClawbotError naming the known shapes.
const SynthShape& synth_shape(std::string_view name);
// Number of weights (tensor elements) a file of this shape holds.
std::uint64_t synth_shape_params(const SynthShape& shape);

struct SynthOptions {
  std::string shape{};
  std::string quant = "q8_0";  // f32, f16, q8_0 or q4_k_m
  std::string output{};        // empty: the cache, synth_default_path(shape, quant)
  std::uint64_t seed = 42;
  std::string vocab_from{};          // empty: the shape's own vocab file
  std::string chat_template_file{};  // empty: the shape's own (if it has one)
  int threads = 0;                   // 0: all cores
  bool force = false;                // write it again even when a matching file exists
  bool list = false;                 // --list: print the shapes instead
  // Progress lines for people (stderr in the CLI); empty: silent.
  std::function<void(const std::string&)> on_progress{};
};

struct SynthResult {
  std::string path{};
  bool reused = false;  // a file with the same shape, quant, seed and vocab was already there
  std::uint64_t size_bytes = 0;
  double seconds = 0.0;
};

// ${XDG_CACHE_HOME:-~/.cache}/clawbot/models/<shape>-<quant>.gguf
std::string synth_default_path(std::string_view shape, std::string_view quant);

// Writes the file (or finds it already written) and returns where it is. Throws ClawbotError with a
// message naming the problem: unknown shape or quant, vocab file missing or too large, disk errors.
SynthResult synthesize_model(const SynthOptions& options);

// A model or vocab file by name: an existing path as given, else the first directory of CLAWBOT_MODELS
// (colon-separated, default ../shared/models) that holds it. Throws ClawbotError when none does.
std::string find_model_file(const std::string& name);

// `clawbot models synth`: prints the path as the last stdout line. Returns the process exit status.
int run_models_synth(const SynthOptions& options);

}  // namespace clawbot::ops
