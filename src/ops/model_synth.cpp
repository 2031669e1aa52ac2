// `clawbot models synth`: GGUF files with the exact shapes of real models and seeded random weights.
//
// The file is written the way convert_hf_to_gguf.py writes a real one (same tensor names, shapes and
// metadata keys, norms F32, matrices F32 or F16), then quantized by libllama's own quantizer. Weights stream
// to disk chunk by chunk, so even a 1B model never sits in memory; a quantized file goes through an F16
// intermediate beside the output, removed afterwards.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numbers>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <ggml.h>
#include <gguf.h>
#include <llama.h>

#include "common/cli_error.h"
#include "common/error.h"
#include "common/model_path.h"
#include "common/text.h"
#include "common/user_dirs.h"
#include "engine/engine.h"
#include "ops/ops.h"

namespace clawbot::ops {
namespace {

namespace fs = std::filesystem;

// Bump when the bytes written for the same parameters change: cached files of an older version are rewritten.
constexpr std::uint32_t generator_version = 2;
constexpr float weight_std = 0.02f;             // the usual initializer_range of HF configs
constexpr std::uint32_t token_type_unused = 5;  // LLAMA_TOKEN_TYPE_UNUSED

// ---------------------------------------------------------------- tensors

enum class Fill { normal, ones, zeros, values };

struct TensorPlan {
  std::string name;
  std::vector<std::int64_t> ne;  // ggml order: ne[0] is the row length
  Fill fill = Fill::normal;
  bool keep_f32 = false;        // stays F32 at every quant (besides 1-D tensors, which always do)
  std::vector<float> values{};  // Fill::values
};

std::string blk(int layer, const char* what) {
  return "blk." + std::to_string(layer) + "." + what;
}

bool is_attention_layer(const SynthShape& shape, int layer) {
  return shape.attention_layers.empty() ||
         std::find(shape.attention_layers.begin(), shape.attention_layers.end(), layer) !=
             shape.attention_layers.end();
}

// rope_freqs.weight exactly as convert_hf_to_gguf.py computes it for rope_scaling type llama3.
std::vector<float> llama3_rope_factors(const SynthShape& shape) {
  const int dim = shape.head_dim;
  const double old_ctx = shape.rope_original_ctx;
  const double low_freq_wavelen = old_ctx / shape.rope_low_freq_factor;
  const double high_freq_wavelen = old_ctx / shape.rope_high_freq_factor;
  std::vector<float> factors;
  for (int i = 0; i < dim; i += 2) {
    const double freq = 1.0 / std::pow(static_cast<double>(shape.rope_theta), static_cast<double>(i) / dim);
    const double wavelen = 2.0 * std::numbers::pi / freq;
    double factor = 1.0;
    if (wavelen > low_freq_wavelen) {
      factor = shape.rope_scaling_factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth = (old_ctx / wavelen - shape.rope_low_freq_factor) /
                            (shape.rope_high_freq_factor - shape.rope_low_freq_factor);
      factor = 1.0 / ((1.0 - smooth) / shape.rope_scaling_factor + smooth);
    }
    factors.push_back(static_cast<float>(factor));
  }
  return factors;
}

// The tensors of a decoder (llama, qwen3, gemma3, lfm2), named and shaped as libllama's loader wants them
// (src/models/<arch>.cpp, load_arch_tensors).
void plan_decoder(const SynthShape& s, std::int64_t n_vocab, std::vector<TensorPlan>& out) {
  const std::int64_t e = s.n_embd, ff = s.n_ff, d = s.head_dim;
  const std::int64_t q_dim = d * s.n_head, kv_dim = d * s.n_head_kv;
  auto norm = [&](std::string name, std::int64_t n) { out.push_back({std::move(name), {n}, Fill::ones}); };
  auto matrix = [&](std::string name, std::int64_t cols, std::int64_t rows) {
    out.push_back({std::move(name), {cols, rows}});
  };

  matrix("token_embd.weight", e, n_vocab);
  if (s.rope_scaling_factor > 0.0f) {
    out.push_back({"rope_freqs.weight", {d / 2}, Fill::values, true, llama3_rope_factors(s)});
  }
  for (int i = 0; i < s.n_layer; ++i) {
    norm(blk(i, "attn_norm.weight"), e);
    if (is_attention_layer(s, i)) {
      // lfm2 attention keeps q and output at n_embd (its heads divide it exactly)
      matrix(blk(i, "attn_q.weight"), e, q_dim);
      matrix(blk(i, "attn_k.weight"), e, kv_dim);
      matrix(blk(i, "attn_v.weight"), e, kv_dim);
      matrix(blk(i, "attn_output.weight"), q_dim, e);
      if (s.qk_norm) {
        norm(blk(i, "attn_q_norm.weight"), d);
        norm(blk(i, "attn_k_norm.weight"), d);
      }
    } else {
      // conv kernel {L, n_embd}: never quantized, F32 as the converter leaves it
      out.push_back({blk(i, "shortconv.conv.weight"), {s.shortconv_l_cache, e}, Fill::normal, true});
      matrix(blk(i, "shortconv.in_proj.weight"), e, 3 * e);
      matrix(blk(i, "shortconv.out_proj.weight"), e, e);
    }
    if (s.architecture == "gemma3") norm(blk(i, "post_attention_norm.weight"), e);
    norm(blk(i, "ffn_norm.weight"), e);
    matrix(blk(i, "ffn_gate.weight"), e, ff);
    matrix(blk(i, "ffn_up.weight"), e, ff);
    matrix(blk(i, "ffn_down.weight"), ff, e);
    if (s.architecture == "gemma3") norm(blk(i, "post_ffw_norm.weight"), e);
  }
  // lfm2 names its final norm token_embd_norm (libllama's LLM_TENSOR_OUTPUT_NORM_LFM2)
  norm(s.architecture == "lfm2" ? "token_embd_norm.weight" : "output_norm.weight", e);
  if (!s.tied_embeddings) matrix("output.weight", e, n_vocab);
}

// BERT (src/models/bert.cpp): learned positions, token types, post-norm layers with biases.
void plan_bert(const SynthShape& s, std::int64_t n_vocab, std::vector<TensorPlan>& out) {
  const std::int64_t e = s.n_embd, ff = s.n_ff;
  auto vec = [&](std::string name, std::int64_t n, Fill fill) {
    out.push_back({std::move(name), {n}, fill});
  };
  auto linear = [&](const std::string& name, std::int64_t cols, std::int64_t rows) {
    out.push_back({name + ".weight", {cols, rows}});
    vec(name + ".bias", rows, Fill::zeros);
  };
  auto layer_norm = [&](const std::string& name) {
    vec(name + ".weight", e, Fill::ones);
    vec(name + ".bias", e, Fill::zeros);
  };

  out.push_back({"token_embd.weight", {e, n_vocab}});
  // bert's graph adds a view of token_types directly (no get_rows), which needs F32, as the converter stores
  // it
  out.push_back({"token_types.weight", {e, 2}, Fill::normal, true});
  out.push_back({"position_embd.weight", {e, s.n_ctx}});
  layer_norm("token_embd_norm");
  for (int i = 0; i < s.n_layer; ++i) {
    linear(blk(i, "attn_q"), e, e);
    linear(blk(i, "attn_k"), e, e);
    linear(blk(i, "attn_v"), e, e);
    linear(blk(i, "attn_output"), e, e);
    layer_norm(blk(i, "attn_output_norm"));
    linear(blk(i, "ffn_up"), e, ff);
    linear(blk(i, "ffn_down"), ff, e);
    layer_norm(blk(i, "layer_output_norm"));
  }
  if (s.classifier_head) {  // src/models/bert.cpp: cls {n_embd, n_embd}, cls.output {n_embd, n_cls_out = 1}
    linear("cls", e, e);
    linear("cls.output", e, 1);
  }
}

std::vector<TensorPlan> plan_tensors(const SynthShape& shape) {
  std::vector<TensorPlan> plan;
  if (shape.architecture == "bert") {
    plan_bert(shape, shape.n_vocab, plan);
  } else {
    plan_decoder(shape, shape.n_vocab, plan);
  }
  return plan;
}

std::int64_t n_elements(const TensorPlan& t) {
  std::int64_t n = 1;
  for (auto x : t.ne) n *= x;
  return n;
}

// ---------------------------------------------------------------- quant types

struct QuantInfo {
  std::string_view name;
  llama_ftype ftype;
  bool quantized;  // written as F16 first, then quantized by libllama
};

constexpr QuantInfo quant_infos[] = {
    {"f32", LLAMA_FTYPE_ALL_F32, false},
    {"f16", LLAMA_FTYPE_MOSTLY_F16, false},
    {"q8_0", LLAMA_FTYPE_MOSTLY_Q8_0, true},
    {"q4_k_m", LLAMA_FTYPE_MOSTLY_Q4_K_M, true},
};

const QuantInfo& quant_info(std::string_view name) {
  const std::string lower = text::lower(name);
  for (const auto& q : quant_infos) {
    if (q.name == lower) return q;
  }
  throw ClawbotError(ErrorKind::invalid_request,
                     "unknown quant '" + std::string(name) + "'; use f32, f16, q8_0 or q4_k_m");
}

// ---------------------------------------------------------------- small helpers

struct GgufFree {
  void operator()(gguf_context* c) const noexcept { gguf_free(c); }
};
using GgufPtr = std::unique_ptr<gguf_context, GgufFree>;
struct GgmlFree {
  void operator()(ggml_context* c) const noexcept { ggml_free(c); }
};
using GgmlPtr = std::unique_ptr<ggml_context, GgmlFree>;

GgufPtr read_gguf_header(const std::string& path) {
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  return GgufPtr(gguf_init_from_file(path.c_str(), params));
}

std::string fnv1a_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw ClawbotError(ErrorKind::internal, "cannot read vocab file '" + path + "': " + std::strerror(errno));
  std::uint64_t h = 0xcbf29ce484222325ull;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      h ^= static_cast<unsigned char>(buf[static_cast<std::size_t>(i)]);
      h *= 0x100000001b3ull;
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Normal(0, stddev) by Box-Muller, two values per 64 random bits (24-bit uniforms: tails to 5.7 sigma).
void fill_normal(float* out, std::size_t n, std::uint64_t state, float stddev) {
  constexpr float two_pi = 2.0f * std::numbers::pi_v<float>;
  for (std::size_t i = 0; i < n; i += 2) {
    const std::uint64_t r = splitmix64(state);
    const float u1 = static_cast<float>((r >> 40) + 1) * 0x1p-24f;  // (0, 1]
    const float u2 = static_cast<float>((r >> 16) & 0xFFFFFF) * 0x1p-24f;
    const float radius = stddev * std::sqrt(-2.0f * std::log(u1));
    out[i] = radius * std::cos(two_pi * u2);
    if (i + 1 < n) out[i + 1] = radius * std::sin(two_pi * u2);
  }
}

std::string format_mib(std::uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

// Removes a temporary file on every way out unless released.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove(path_, ec);
    }
  }
  const std::string& path() const noexcept { return path_; }
  void release() noexcept { path_.clear(); }

 private:
  std::string path_;
};

// ---------------------------------------------------------------- metadata

void copy_kv(gguf_context* dst, const gguf_context* src, std::int64_t id) {
  const char* key = gguf_get_key(src, id);
  switch (gguf_get_kv_type(src, id)) {
    case GGUF_TYPE_UINT8:
      gguf_set_val_u8(dst, key, gguf_get_val_u8(src, id));
      break;
    case GGUF_TYPE_INT8:
      gguf_set_val_i8(dst, key, gguf_get_val_i8(src, id));
      break;
    case GGUF_TYPE_UINT16:
      gguf_set_val_u16(dst, key, gguf_get_val_u16(src, id));
      break;
    case GGUF_TYPE_INT16:
      gguf_set_val_i16(dst, key, gguf_get_val_i16(src, id));
      break;
    case GGUF_TYPE_UINT32:
      gguf_set_val_u32(dst, key, gguf_get_val_u32(src, id));
      break;
    case GGUF_TYPE_INT32:
      gguf_set_val_i32(dst, key, gguf_get_val_i32(src, id));
      break;
    case GGUF_TYPE_FLOAT32:
      gguf_set_val_f32(dst, key, gguf_get_val_f32(src, id));
      break;
    case GGUF_TYPE_UINT64:
      gguf_set_val_u64(dst, key, gguf_get_val_u64(src, id));
      break;
    case GGUF_TYPE_INT64:
      gguf_set_val_i64(dst, key, gguf_get_val_i64(src, id));
      break;
    case GGUF_TYPE_FLOAT64:
      gguf_set_val_f64(dst, key, gguf_get_val_f64(src, id));
      break;
    case GGUF_TYPE_BOOL:
      gguf_set_val_bool(dst, key, gguf_get_val_bool(src, id));
      break;
    case GGUF_TYPE_STRING:
      gguf_set_val_str(dst, key, gguf_get_val_str(src, id));
      break;
    case GGUF_TYPE_ARRAY: {
      const auto type = gguf_get_arr_type(src, id);
      const std::size_t n = gguf_get_arr_n(src, id);
      if (type == GGUF_TYPE_STRING) {
        std::vector<const char*> items(n);
        for (std::size_t i = 0; i < n; ++i) items[i] = gguf_get_arr_str(src, id, i);
        gguf_set_arr_str(dst, key, items.data(), n);
      } else {
        gguf_set_arr_data(dst, key, type, gguf_get_arr_data(src, id), n);
      }
      break;
    }
    default:
      throw ClawbotError(ErrorKind::internal,
                         std::string("metadata key '") + key + "' has a type this tool cannot copy");
  }
}

// Copies the tokenizer (every tokenizer.* key) and pads it with unused tokens to n_vocab, the way
// convert_hf_to_gguf.py pads a vocabulary smaller than the embedding: "[PAD<id>]", score -1000, type unused.
void copy_tokenizer(gguf_context* dst, const gguf_context* vocab, std::int64_t n_vocab) {
  const std::int64_t tokens_id = gguf_find_key(vocab, "tokenizer.ggml.tokens");
  const auto n_source = static_cast<std::int64_t>(gguf_get_arr_n(vocab, tokens_id));
  const bool pad = n_source < n_vocab;
  for (std::int64_t id = 0; id < gguf_get_n_kv(vocab); ++id) {
    const std::string key = gguf_get_key(vocab, id);
    if (!key.starts_with("tokenizer.")) continue;
    if (!pad) {
      copy_kv(dst, vocab, id);
    } else if (key == "tokenizer.ggml.tokens") {
      std::vector<std::string> storage;
      storage.reserve(static_cast<std::size_t>(n_vocab - n_source));
      for (std::int64_t t = n_source; t < n_vocab; ++t) storage.push_back("[PAD" + std::to_string(t) + "]");
      std::vector<const char*> items;
      items.reserve(static_cast<std::size_t>(n_vocab));
      for (std::int64_t t = 0; t < n_source; ++t)
        items.push_back(gguf_get_arr_str(vocab, id, static_cast<std::size_t>(t)));
      for (const auto& s : storage) items.push_back(s.c_str());
      gguf_set_arr_str(dst, key.c_str(), items.data(), items.size());
    } else if (key == "tokenizer.ggml.scores" && gguf_get_arr_type(vocab, id) == GGUF_TYPE_FLOAT32) {
      const auto* src = static_cast<const float*>(gguf_get_arr_data(vocab, id));
      std::vector<float> scores(src, src + n_source);
      scores.resize(static_cast<std::size_t>(n_vocab), -1000.0f);
      gguf_set_arr_data(dst, key.c_str(), GGUF_TYPE_FLOAT32, scores.data(), scores.size());
    } else if (key == "tokenizer.ggml.token_type" && gguf_get_arr_type(vocab, id) == GGUF_TYPE_INT32) {
      const auto* src = static_cast<const std::int32_t*>(gguf_get_arr_data(vocab, id));
      std::vector<std::int32_t> types(src, src + n_source);
      types.resize(static_cast<std::size_t>(n_vocab), token_type_unused);
      gguf_set_arr_data(dst, key.c_str(), GGUF_TYPE_INT32, types.data(), types.size());
    } else if (gguf_get_kv_type(vocab, id) == GGUF_TYPE_ARRAY &&
               gguf_get_arr_n(vocab, id) == static_cast<std::size_t>(n_source)) {
      throw ClawbotError(ErrorKind::internal,
                         "vocab key '" + key + "' has one entry per token and this tool cannot pad it");
    } else {
      copy_kv(dst, vocab, id);
    }
  }
  if (pad && gguf_find_key(vocab, "tokenizer.ggml.token_type") < 0) {
    std::vector<std::int32_t> types(static_cast<std::size_t>(n_vocab), 1);  // normal
    std::fill(types.begin() + n_source, types.end(), token_type_unused);
    gguf_set_arr_data(dst, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types.data(), types.size());
  }
}

// Puts the shape's added tokens at their ids (over the padding there) and sets its end-of-sequence token.
void add_shape_tokens(gguf_context* dst, const SynthShape& shape) {
  if (shape.eos_token >= 0) {
    gguf_set_val_u32(dst, "tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(shape.eos_token));
  }
  if (shape.added_tokens.empty()) return;
  const std::int64_t tokens_id = gguf_find_key(dst, "tokenizer.ggml.tokens");
  const std::int64_t types_id = gguf_find_key(dst, "tokenizer.ggml.token_type");
  const auto n = static_cast<std::int64_t>(gguf_get_arr_n(dst, tokens_id));
  std::vector<std::string> texts;
  texts.reserve(static_cast<std::size_t>(n));
  for (std::int64_t t = 0; t < n; ++t)
    texts.emplace_back(gguf_get_arr_str(dst, tokens_id, static_cast<std::size_t>(t)));
  const auto* source_types = static_cast<const std::int32_t*>(gguf_get_arr_data(dst, types_id));
  std::vector<std::int32_t> types(source_types, source_types + n);
  for (const auto& added : shape.added_tokens) {
    if (added.id >= n) {
      throw ClawbotError(ErrorKind::internal, "shape " + shape.name + ": token id " +
                                                  std::to_string(added.id) + " is beyond its vocabulary of " +
                                                  std::to_string(n));
    }
    texts[static_cast<std::size_t>(added.id)] = added.text;
    types[static_cast<std::size_t>(added.id)] = added.type;
  }
  std::vector<const char*> items;
  items.reserve(texts.size());
  for (const auto& text : texts) items.push_back(text.c_str());
  gguf_set_arr_str(dst, "tokenizer.ggml.tokens", items.data(), items.size());
  gguf_set_arr_data(dst, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types.data(), types.size());
}

// The chat template file to embed: --chat-template-file, else the shape's, looked for beside the vocab file
// (llama.cpp's models/templates/ sits beside its models/ggml-vocab-*.gguf) and then in CLAWBOT_MODELS. Empty
// when the shape has none.
std::string find_chat_template(const SynthShape& shape, const std::string& vocab_path,
                               const std::string& given) {
  if (!given.empty()) {
    std::error_code ec;
    if (!fs::is_regular_file(given, ec)) {
      throw ClawbotError(ErrorKind::invalid_request, "--chat-template-file '" + given + "' is not a file");
    }
    return given;
  }
  if (shape.chat_template_file.empty()) return {};
  const fs::path beside = fs::path(vocab_path).parent_path() / shape.chat_template_file;
  std::error_code ec;
  if (fs::is_regular_file(beside, ec)) return beside.string();
  try {
    return find_model_file(fs::path(shape.chat_template_file).filename().string());
  } catch (const ClawbotError&) {
    throw ClawbotError(
        ErrorKind::invalid_request,
        "shape " + shape.name + " carries the chat template " + shape.chat_template_file +
            ", found neither at " + beside.string() +
            " nor in CLAWBOT_MODELS; name it with --chat-template-file (llama.cpp's source has it "
            "under models/templates/)");
  }
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ClawbotError(ErrorKind::internal, "cannot read '" + path + "': " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Provenance {
  std::string quant;
  std::uint64_t seed = 0;
  std::string vocab_name;
  std::string vocab_hash;     // of the vocab file, and of the chat template when one is embedded
  std::string chat_template;  // embedded as tokenizer.chat_template; empty: the vocab file's, if any
  std::string template_name;  // its file name, for the description
};

void set_metadata(gguf_context* g, const SynthShape& s, const Provenance& p, llama_ftype file_type) {
  const std::string a = s.architecture;
  auto u32 = [&](const std::string& key, std::uint32_t v) {
    gguf_set_val_u32(g, (a + "." + key).c_str(), v);
  };
  auto f32 = [&](const std::string& key, float v) { gguf_set_val_f32(g, (a + "." + key).c_str(), v); };
  auto n = [](std::int64_t v) { return static_cast<std::uint32_t>(v); };

  gguf_set_val_str(g, "general.architecture", a.c_str());
  gguf_set_val_str(g, "general.type", "model");
  gguf_set_val_str(g, "general.name", ("synthetic " + s.name).c_str());
  const std::string description = "Synthetic model with the shape of " + s.name + " (" + s.source +
                                  "): random weights (seed " + std::to_string(p.seed) + "), tokenizer of " +
                                  p.vocab_name +
                                  (p.template_name.empty() ? "" : ", chat template " + p.template_name) +
                                  ". For benchmarks and tests only; its output is meaningless.";
  gguf_set_val_str(g, "general.description", description.c_str());
  gguf_set_val_u32(g, "general.file_type", static_cast<std::uint32_t>(file_type));

  gguf_set_val_bool(g, "clawbot.synthetic", true);
  gguf_set_val_str(g, "clawbot.synthetic.shape", s.name.c_str());
  gguf_set_val_str(g, "clawbot.synthetic.quant", p.quant.c_str());
  gguf_set_val_u64(g, "clawbot.synthetic.seed", p.seed);
  gguf_set_val_u32(g, "clawbot.synthetic.generator", generator_version);
  gguf_set_val_str(g, "clawbot.synthetic.vocab_file", p.vocab_name.c_str());
  gguf_set_val_str(g, "clawbot.synthetic.vocab_hash", p.vocab_hash.c_str());

  u32("context_length", s.n_ctx);
  u32("embedding_length", n(s.n_embd));
  u32("block_count", n(s.n_layer));
  u32("feed_forward_length", n(s.n_ff));
  u32("attention.head_count", n(s.n_head));
  if (s.attention_layers.empty()) {
    u32("attention.head_count_kv", n(s.n_head_kv));
  } else {
    // hybrid: 0 KV heads marks a recurrent layer
    std::vector<std::int32_t> kv(static_cast<std::size_t>(s.n_layer), 0);
    for (auto layer : s.attention_layers) kv[static_cast<std::size_t>(layer)] = s.n_head_kv;
    gguf_set_arr_data(g, (a + ".attention.head_count_kv").c_str(), GGUF_TYPE_INT32, kv.data(), kv.size());
  }
  if (a == "bert") {
    f32("attention.layer_norm_epsilon", s.norm_eps);
    gguf_set_val_bool(g, (a + ".attention.causal").c_str(), s.causal);
    if (s.pooling >= 0) u32("pooling_type", n(s.pooling));
    return;
  }
  gguf_set_val_u32(g, (a + ".vocab_size").c_str(), n(s.n_vocab));
  u32("attention.key_length", n(s.head_dim));
  u32("attention.value_length", n(s.head_dim));
  u32("rope.dimension_count", n(s.head_dim));
  f32("rope.freq_base", s.rope_theta);
  f32("attention.layer_norm_rms_epsilon", s.norm_eps);
  if (s.sliding_window > 0) {
    u32("attention.sliding_window", s.sliding_window);
    u32("attention.sliding_window_pattern", s.sliding_window_pattern);
    f32("rope.freq_base_swa", s.rope_theta_swa);
  }
  if (s.shortconv_l_cache > 0) u32("shortconv.l_cache", s.shortconv_l_cache);
}

// ---------------------------------------------------------------- writing

ggml_type stored_type(const TensorPlan& t, ggml_type matrix_type) {
  return t.ne.size() < 2 || t.keep_f32 ? GGML_TYPE_F32 : matrix_type;
}

class GgufStreamWriter {
 public:
  explicit GgufStreamWriter(const std::string& path) : path_(path), file_(std::fopen(path.c_str(), "wb")) {
    if (!file_)
      throw ClawbotError(ErrorKind::internal, "cannot create '" + path + "': " + std::strerror(errno));
    std::setvbuf(file_.get(), nullptr, _IOFBF, 1 << 22);
  }
  FILE* get() const noexcept { return file_.get(); }
  void write(const void* data, std::size_t n) {
    if (n > 0 && std::fwrite(data, 1, n, file_.get()) != n) fail();
    written_ += n;
  }
  void pad_to(std::size_t alignment) {
    static const char zeros[64] = {};
    const std::size_t pad = (alignment - written_ % alignment) % alignment;
    write(zeros, pad);
  }
  void set_written(std::size_t n) noexcept { written_ = n; }
  // Flushes and closes, throwing when any write failed; without it the destructor closes quietly (on a
  // throw).
  void close() {
    if (std::fflush(file_.get()) != 0 || std::ferror(file_.get())) fail();  // (the destructor closes it)
    if (std::fclose(file_.release()) != 0) fail();
  }

 private:
  [[noreturn]] void fail() const {
    throw ClawbotError(ErrorKind::internal,
                       "cannot write '" + path_ + "': " + std::strerror(errno) + " (disk full?)");
  }
  struct Closer {
    void operator()(FILE* file) const noexcept { std::fclose(file); }
  };
  std::string path_;
  std::unique_ptr<FILE, Closer> file_;
  std::size_t written_ = 0;
};

// Writes one tensor's values in chunks. Random values come in blocks of 2^16, each from its own stream
// seeded by (seed, tensor name, block): the bytes do not depend on the number of threads.
void write_tensor(GgufStreamWriter& out, const TensorPlan& t, ggml_type type, std::uint64_t seed,
                  int threads) {
  constexpr std::int64_t block = 1 << 16;
  constexpr std::int64_t chunk = block * 64;
  const std::int64_t total = n_elements(t);
  std::uint64_t tensor_seed = seed ^ fnv1a(t.name);
  tensor_seed = splitmix64(tensor_seed);

  std::vector<float> values(static_cast<std::size_t>(std::min(total, chunk)));
  std::vector<ggml_fp16_t> halves(type == GGML_TYPE_F16 ? values.size() : 0);
  for (std::int64_t begin = 0; begin < total; begin += chunk) {
    const std::int64_t count = std::min(chunk, total - begin);
    float* dst = values.data();
    switch (t.fill) {
      case Fill::ones:
        std::fill_n(dst, count, 1.0f);
        break;
      case Fill::zeros:
        std::fill_n(dst, count, 0.0f);
        break;
      case Fill::values:
        std::copy_n(t.values.begin() + begin, count, dst);
        break;
      case Fill::normal: {
        const std::int64_t n_blocks = (count + block - 1) / block;
        auto work = [&](std::int64_t first, std::int64_t last) {
          for (std::int64_t b = first; b < last; ++b) {
            const std::int64_t at = b * block;
            const std::int64_t n = std::min(block, count - at);
            std::uint64_t block_seed = tensor_seed ^ static_cast<std::uint64_t>((begin + at) / block);
            fill_normal(dst + at, static_cast<std::size_t>(n), splitmix64(block_seed), weight_std);
            if (type == GGML_TYPE_F16) ggml_fp32_to_fp16_row(dst + at, halves.data() + at, n);
          }
        };
        const std::int64_t n_threads = std::clamp<std::int64_t>(threads, 1, n_blocks);
        std::vector<std::thread> pool;
        for (std::int64_t k = 1; k < n_threads; ++k) {
          pool.emplace_back(work, n_blocks * k / n_threads, n_blocks * (k + 1) / n_threads);
        }
        work(0, n_blocks / n_threads);
        for (auto& th : pool) th.join();
        out.write(type == GGML_TYPE_F16 ? static_cast<const void*>(halves.data()) : dst,
                  static_cast<std::size_t>(count) * ggml_type_size(type));
        continue;
      }
    }
    if (type == GGML_TYPE_F16) {
      ggml_fp32_to_fp16_row(dst, halves.data(), count);
      out.write(halves.data(), static_cast<std::size_t>(count) * sizeof(ggml_fp16_t));
    } else {
      out.write(dst, static_cast<std::size_t>(count) * sizeof(float));
    }
  }
}

// Writes an unquantized file: matrices of matrix_type (F32 or F16), everything 1-D in F32.
void write_unquantized(const std::string& path, const SynthShape& shape, const gguf_context* vocab,
                       const Provenance& provenance, ggml_type matrix_type, llama_ftype file_type,
                       std::uint64_t seed, int threads,
                       const std::function<void(const std::string&)>& progress) {
  const auto plan = plan_tensors(shape);

  GgufPtr g(gguf_init_empty());
  set_metadata(g.get(), shape, provenance, file_type);
  copy_tokenizer(g.get(), vocab, shape.n_vocab);
  add_shape_tokens(g.get(), shape);
  if (!provenance.chat_template.empty()) {
    gguf_set_val_str(g.get(), "tokenizer.chat_template", provenance.chat_template.c_str());
  }

  ggml_init_params params{(plan.size() + 1) * ggml_tensor_overhead(), nullptr, /*no_alloc=*/true};
  GgmlPtr ctx(ggml_init(params));
  if (!ctx) throw ClawbotError(ErrorKind::internal, "cannot allocate tensor metadata");
  std::vector<ggml_type> types;
  for (const auto& t : plan) {
    types.push_back(stored_type(t, matrix_type));
    ggml_tensor* tensor =
        ggml_new_tensor(ctx.get(), types.back(), static_cast<int>(t.ne.size()), t.ne.data());
    ggml_set_name(tensor, t.name.c_str());
    gguf_add_tensor(g.get(), tensor);
  }

  GgufStreamWriter out(path);
  if (!gguf_write_to_file_ptr(g.get(), out.get(), /*only_meta=*/true)) {
    throw ClawbotError(ErrorKind::internal, "cannot write the GGUF header of '" + path + "'");
  }
  out.set_written(gguf_get_meta_size(g.get()));
  const std::size_t alignment = gguf_get_alignment(g.get());
  std::uint64_t done = 0;
  const std::uint64_t total = synth_shape_params(shape);
  int last_percent = -1;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    write_tensor(out, plan[i], types[i], seed, threads);
    out.pad_to(alignment);
    done += static_cast<std::uint64_t>(n_elements(plan[i]));
    const int percent = static_cast<int>(100 * done / total);
    if (progress && percent / 10 != last_percent / 10) {
      progress("writing " + std::string(ggml_type_name(matrix_type)) +
               " weights: " + std::to_string(percent) + "%");
      last_percent = percent;
    }
  }
  out.close();
}

enum class Existing { none, same, other_synthetic, foreign };

// What is already at `path`: nothing, the same synthetic file (reusable), another synthetic file (rewritable,
// also when its data is truncated), or something else, which is never overwritten without --force.
Existing classify_existing(const std::string& path, const SynthShape& shape, const Provenance& p) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return Existing::none;
  if (!fs::is_regular_file(path, ec)) return Existing::foreign;
  GgufPtr g = read_gguf_header(path);
  if (!g) return Existing::foreign;
  const auto synthetic_id = gguf_find_key(g.get(), "clawbot.synthetic");
  if (synthetic_id < 0 || gguf_get_kv_type(g.get(), synthetic_id) != GGUF_TYPE_BOOL ||
      !gguf_get_val_bool(g.get(), synthetic_id)) {
    return Existing::foreign;
  }
  auto str = [&](const char* key) -> std::string {
    const auto id = gguf_find_key(g.get(), key);
    return id >= 0 && gguf_get_kv_type(g.get(), id) == GGUF_TYPE_STRING ? gguf_get_val_str(g.get(), id) : "";
  };
  const auto seed_id = gguf_find_key(g.get(), "clawbot.synthetic.seed");
  const auto version_id = gguf_find_key(g.get(), "clawbot.synthetic.generator");
  const bool same = seed_id >= 0 && gguf_get_kv_type(g.get(), seed_id) == GGUF_TYPE_UINT64 &&
                    gguf_get_val_u64(g.get(), seed_id) == p.seed && version_id >= 0 &&
                    gguf_get_kv_type(g.get(), version_id) == GGUF_TYPE_UINT32 &&
                    gguf_get_val_u32(g.get(), version_id) == generator_version &&
                    str("clawbot.synthetic.shape") == shape.name &&
                    str("clawbot.synthetic.quant") == p.quant &&
                    str("clawbot.synthetic.vocab_hash") == p.vocab_hash;
  if (!same) return Existing::other_synthetic;
  try {
    engine::check_gguf_file(path);  // its data is all there
  } catch (const engine::EngineError&) {
    return Existing::other_synthetic;
  }
  return Existing::same;
}

std::string temp_path(const std::string& path, const char* what) {
  return path + "." + what + "-" + std::to_string(::getpid()) + ".tmp";
}

void print_shapes() {
  std::printf("%-18s %-7s %6s %6s %6s %9s %7s %7s %9s  %s\n", "shape", "arch", "layers", "embd", "ffn",
              "heads/kv", "vocab", "ctx", "params", "source");
  for (const auto& s : synth_shapes()) {
    const std::string heads = std::to_string(s.n_head) + "/" + std::to_string(s.n_head_kv);
    const double params = static_cast<double>(synth_shape_params(s)) / 1e6;
    std::printf("%-18s %-7s %6d %6d %6d %9s %7lld %7u %8.1fM  %s\n", s.name.c_str(), s.architecture.c_str(),
                s.n_layer, s.n_embd, s.n_ff, heads.c_str(), static_cast<long long>(s.n_vocab), s.n_ctx,
                params, s.source.c_str());
  }
}

}  // namespace

// ---------------------------------------------------------------- public

std::uint64_t synth_shape_params(const SynthShape& shape) {
  std::uint64_t total = 0;
  for (const auto& t : plan_tensors(shape)) total += static_cast<std::uint64_t>(n_elements(t));
  return total;
}

std::string synth_default_path(std::string_view shape, std::string_view quant) {
  const fs::path base = user_dirs::require(user_dirs::Kind::cache, "name the file with -o");
  return (base / "clawbot" / "models" / (std::string(shape) + "-" + std::string(quant) + ".gguf")).string();
}

std::string find_model_file(const std::string& name) {
  return clawbot::require_model_file(name);
}

SynthResult synthesize_model(const SynthOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  const SynthShape& shape = synth_shape(options.shape);
  const QuantInfo& quant = quant_info(options.quant);
  const auto& progress = options.on_progress;
  const int threads = options.threads > 0
                          ? options.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  const std::string vocab_path =
      find_model_file(options.vocab_from.empty() ? shape.vocab_file : options.vocab_from);
  GgufPtr vocab = read_gguf_header(vocab_path);
  if (!vocab)
    throw ClawbotError(ErrorKind::internal, "vocab file '" + vocab_path + "' is not a readable GGUF file");
  const std::int64_t tokens_id = gguf_find_key(vocab.get(), "tokenizer.ggml.tokens");
  if (tokens_id < 0 || gguf_get_kv_type(vocab.get(), tokens_id) != GGUF_TYPE_ARRAY ||
      gguf_get_arr_type(vocab.get(), tokens_id) != GGUF_TYPE_STRING) {
    throw ClawbotError(ErrorKind::internal,
                       "vocab file '" + vocab_path + "' has no tokenizer (no tokenizer.ggml.tokens)");
  }
  const auto n_tokens = static_cast<std::int64_t>(gguf_get_arr_n(vocab.get(), tokens_id));
  if (n_tokens > shape.n_vocab) {
    throw ClawbotError(ErrorKind::internal, "vocab file '" + vocab_path + "' has " +
                                                std::to_string(n_tokens) + " tokens, more than the " +
                                                std::to_string(shape.n_vocab) + " of shape " + shape.name);
  }
  if (shape.architecture == "bert" && gguf_find_key(vocab.get(), "tokenizer.ggml.token_type_count") < 0) {
    gguf_set_val_u32(vocab.get(), "tokenizer.ggml.token_type_count", 2);  // bert's type embedding has 2 rows
  }

  Provenance provenance{
      .quant = std::string(quant.name),
      .seed = options.seed,
      .vocab_name = fs::path(vocab_path).filename().string(),
      .vocab_hash = fnv1a_file(vocab_path),
      .chat_template = {},
      .template_name = {},
  };
  if (const auto template_path = find_chat_template(shape, vocab_path, options.chat_template_file);
      !template_path.empty()) {
    provenance.chat_template = read_text_file(template_path);
    provenance.template_name = fs::path(template_path).filename().string();
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(fnv1a(provenance.chat_template)));
    provenance.vocab_hash += std::string("+") + hex;
  }
  const std::string path =
      options.output.empty() ? synth_default_path(shape.name, quant.name) : options.output;

  SynthResult result;
  result.path = path;
  if (!options.force) {
    switch (classify_existing(path, shape, provenance)) {
      case Existing::same:
        result.reused = true;
        result.size_bytes = fs::file_size(path);
        return result;
      case Existing::foreign:
        throw ClawbotError(
            ErrorKind::internal,
            "'" + path +
                "' already exists and is not a synthetic model; choose another -o, or --force to "
                "overwrite it");
      case Existing::none:
      case Existing::other_synthetic:
        break;
    }
  }

  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    if (ec)
      throw ClawbotError(ErrorKind::internal,
                         "cannot create directory '" + parent.string() + "': " + ec.message());
  }
  if (progress) {
    progress(shape.name + ": " + std::to_string(synth_shape_params(shape)) + " weights, tokenizer of " +
             provenance.vocab_name + " (" + std::to_string(n_tokens) + " tokens" +
             (n_tokens < shape.n_vocab ? ", padded to " + std::to_string(shape.n_vocab) : std::string()) +
             "), seed " + std::to_string(options.seed));
  }

  TempFile final_tmp(temp_path(path, "partial"));
  if (!quant.quantized) {
    const ggml_type matrix_type = quant.ftype == LLAMA_FTYPE_ALL_F32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    write_unquantized(final_tmp.path(), shape, vocab.get(), provenance, matrix_type, quant.ftype,
                      options.seed, threads, progress);
  } else {
    TempFile f16_tmp(temp_path(path, "f16"));
    write_unquantized(f16_tmp.path(), shape, vocab.get(), provenance, GGML_TYPE_F16, LLAMA_FTYPE_MOSTLY_F16,
                      options.seed, threads, progress);
    if (progress) progress("quantizing to " + std::string(quant.name) + " with libllama");
    llama_backend_init();  // idempotent; the quantizer needs ggml's tables
    llama_model_quantize_params params = llama_model_quantize_default_params();
    params.nthread = threads;
    params.ftype = quant.ftype;
    if (llama_model_quantize(f16_tmp.path().c_str(), final_tmp.path().c_str(), &params) != 0) {
      throw ClawbotError(ErrorKind::internal, "libllama could not quantize '" + f16_tmp.path() + "' to " +
                                                  std::string(quant.name) + " (its message is above)");
    }
  }
  fs::rename(final_tmp.path(), path, ec);
  if (ec)
    throw ClawbotError(ErrorKind::internal,
                       "cannot move the new file into place as '" + path + "': " + ec.message());
  final_tmp.release();

  result.size_bytes = fs::file_size(path);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return result;
}

int run_models_synth(const SynthOptions& options) {
  try {
    if (options.list) {
      print_shapes();
      return 0;
    }
    if (options.shape.empty())
      throw ClawbotError(ErrorKind::invalid_request,
                         "name a shape (`clawbot models synth --list` shows them)");
    engine::init_backend(/*verbose=*/false);
    SynthOptions opts = options;
    opts.on_progress = [](const std::string& line) {
      std::fprintf(stderr, "clawbot models synth: %s\n", line.c_str());
    };
    const SynthResult result = synthesize_model(opts);
    if (result.reused) {
      std::fprintf(
          stderr,
          "clawbot models synth: reusing %s (same shape, quant, seed and vocab; --force rewrites it)\n",
          result.path.c_str());
    } else {
      std::fprintf(stderr, "clawbot models synth: wrote %s (%s) in %.1f s\n", result.path.c_str(),
                   format_mib(result.size_bytes).c_str(), result.seconds);
    }
    std::printf("%s\n", result.path.c_str());
    return 0;
  } catch (const std::exception& e) {
    return cli_error("clawbot models synth", e.what(), 1);
  }
}

}  // namespace clawbot::ops
