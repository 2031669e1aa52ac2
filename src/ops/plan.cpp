#include "ops/plan.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>

#include "common/model_path.h"
#include "monitor/metrics.h"
#include "ops/file_io.h"

namespace clawbot::ops {
namespace {

constexpr std::uint32_t cell_pad = 256;    // libllama pads the context and each stream to 256 cells
constexpr std::uint32_t max_ubatch = 512;  // the engine's n_ubatch (src/engine/context.cpp)
constexpr std::uint64_t mib = 1u << 20;

std::uint32_t pad(std::uint32_t n, std::uint32_t to) {
  return (n + to - 1) / to * to;
}

// llama_ftype, as general.file_type stores it.
std::string file_type_name(std::int64_t ftype) {
  static const std::map<std::int64_t, std::string> names = {
      {0, "F32"},     {1, "F16"},     {2, "Q4_0"},       {3, "Q4_1"},    {7, "Q8_0"},     {8, "Q5_0"},
      {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"},    {12, "Q3_K_M"}, {13, "Q3_K_L"},  {14, "Q4_K_S"},
      {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},    {18, "Q6_K"},   {19, "IQ2_XXS"}, {20, "IQ2_XS"},
      {21, "Q2_K_S"}, {22, "IQ3_XS"}, {23, "IQ3_XXS"},   {24, "IQ1_S"},  {25, "IQ4_NL"},  {26, "IQ3_S"},
      {27, "IQ3_M"},  {28, "IQ2_S"},  {29, "IQ2_M"},     {30, "IQ4_XS"}, {31, "IQ1_M"},   {32, "BF16"},
      {36, "TQ1_0"},  {37, "TQ2_0"},  {38, "MXFP4_MOE"},
  };
  const auto it = names.find(ftype & 0xFFFF);  // bit 10 marks "guessed"
  return it == names.end() ? "" : it->second;
}

// llm_arch_is_recurrent / llm_arch_is_hybrid (llama-arch.cpp), by GGUF architecture name.
bool arch_is_recurrent(const std::string& arch) {
  static const std::set<std::string> archs = {"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"};
  return archs.contains(arch);
}
bool arch_is_hybrid(const std::string& arch) {
  static const std::set<std::string> archs = {"jamba",     "falcon-h1", "plamo2",     "granitehybrid",
                                              "lfm2",      "lfm2moe",   "nemotron_h", "nemotron_h_moe",
                                              "qwen3next", "qwen35",    "qwen35moe",  "kimi-linear"};
  return archs.contains(arch);
}
// Encoders: libllama gives them no memory module at all (llama_model::create_memory).
bool arch_is_encoder(const std::string& arch) {
  static const std::set<std::string> archs = {"bert",       "jina-bert-v2",   "jina-bert-v3",
                                              "nomic-bert", "nomic-bert-moe", "neo-bert",
                                              "eurobert",   "modern-bert",    "gemma-embedding"};
  return archs.contains(arch);
}
// The sliding-window pattern an architecture's loader assumes when the file does not say (every n-th layer
// is global).
std::uint32_t default_swa_pattern(const std::string& arch) {
  if (arch == "gemma2" || arch == "gpt-oss") return 2;
  if (arch == "gemma3") return 6;
  if (arch == "cohere2" || arch == "exaone4") return 4;
  return 0;
}

// A per-layer number that GGUF stores either once or as an array of n_layer values.
std::vector<std::uint32_t> per_layer(const GgufFile& file, const std::string& key, std::uint32_t n_layer,
                                     std::optional<std::uint32_t> fallback) {
  std::vector<std::uint32_t> out(n_layer, fallback.value_or(0));
  const GgufValue* value = file.find(key);
  if (!value) {
    if (!fallback) throw GgufError(file.source + ": the metadata has no '" + key + "', which the plan needs");
    return out;
  }
  if (value->is_array()) {
    if (value->items.size() < n_layer) {
      throw GgufError(file.source + ": '" + key + "' has " + std::to_string(value->items.size()) +
                      " values for " + std::to_string(n_layer) + " layers");
    }
    for (std::uint32_t il = 0; il < n_layer; ++il) {
      out[il] = static_cast<std::uint32_t>(value->items[il].as_int().value_or(0));
    }
  } else {
    std::fill(out.begin(), out.end(), static_cast<std::uint32_t>(value->as_int().value_or(0)));
  }
  return out;
}

// The types ggml's CPU backend repacks for matrix multiplication on this CPU (ggml-cpu/repack.cpp,
// ggml_repack_get_optimal_repack_type), for matrices whose row count is a multiple of 8.
bool cpu_repacks(std::uint32_t type_id) {
  enum : std::uint32_t {
    q4_0 = 2,
    q8_0 = 8,
    q2_K = 10,
    q4_K = 12,
    q5_K = 13,
    q6_K = 14,
    iq4_nl = 20,
    mxfp4 = 39
  };
#if defined(__x86_64__) || defined(__i386__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (type_id == q2_K) return avx512;
  return avx2 && (type_id == q4_0 || type_id == q4_K || type_id == iq4_nl || type_id == mxfp4);
#elif defined(__aarch64__)
  return type_id == q4_0 || type_id == q4_K || type_id == q5_K || type_id == q6_K || type_id == q8_0 ||
         type_id == iq4_nl || type_id == mxfp4;
#else
  (void)type_id;
  return false;
#endif
}

}  // namespace

ModelDims model_dims(const GgufFile& file) {
  ModelDims d;
  d.architecture = file.architecture();
  if (d.architecture.empty()) throw GgufError(file.source + ": the metadata has no general.architecture");
  d.name = file.get_string("general.name").value_or("");
  // A header may come from any URL: a count it claims sizes vectors here, so it is bounded first (libllama
  // loads at most 512 layers; a dimension must fit in 32 bits).
  auto required = [&](const std::string& suffix, std::int64_t max) {
    auto v = file.get_int(file.arch_key(suffix));
    if (!v || *v < 0) {
      throw GgufError(file.source + ": the metadata has no '" + file.arch_key(suffix) +
                      "', which the plan needs");
    }
    if (*v > max) {
      throw GgufError(file.source + ": '" + file.arch_key(suffix) + "' is " + std::to_string(*v) +
                      ", more than any model has (at most " + std::to_string(max) +
                      "); the header is damaged");
    }
    return static_cast<std::uint32_t>(*v);
  };
  d.n_layer = required("block_count", 512);
  d.n_embd = required("embedding_length", std::numeric_limits<std::uint32_t>::max());
  d.n_ctx_train = static_cast<std::uint32_t>(file.get_int(file.arch_key("context_length")).value_or(0));
  // Vocabulary: the metadata's count, else the tokenizer's, else the embedding matrix's rows.
  if (auto v = file.get_int(file.arch_key("vocab_size"))) {
    d.n_vocab = static_cast<std::uint32_t>(*v);
  } else if (const auto* tokens = file.find("tokenizer.ggml.tokens"); tokens && tokens->is_array()) {
    d.n_vocab = static_cast<std::uint32_t>(tokens->items.size());
  } else {
    for (const auto& t : file.tensors) {
      if (t.name == "token_embd.weight" && t.dims.size() >= 2)
        d.n_vocab = static_cast<std::uint32_t>(t.dims[1]);
    }
  }

  const auto n_head = per_layer(file, file.arch_key("attention.head_count"), d.n_layer, 0u);
  const auto n_head_kv = per_layer(file, file.arch_key("attention.head_count_kv"), d.n_layer, std::nullopt);
  // head_count_kv missing means "as many as head_count" (no GQA).
  std::vector<std::uint32_t> kv_heads =
      file.find(file.arch_key("attention.head_count_kv")) ? n_head_kv : n_head;
  const std::uint32_t n_head0 = n_head.empty() ? 0 : *std::max_element(n_head.begin(), n_head.end());
  const std::uint32_t head_default = n_head0 > 0 ? d.n_embd / n_head0 : 0;
  const auto key_length =
      static_cast<std::uint32_t>(file.get_int(file.arch_key("attention.key_length")).value_or(head_default));
  const auto value_length = static_cast<std::uint32_t>(
      file.get_int(file.arch_key("attention.value_length")).value_or(head_default));

  const auto ff = per_layer(file, file.arch_key("feed_forward_length"), d.n_layer, 0u);
  d.n_ff_max = ff.empty() ? 0 : *std::max_element(ff.begin(), ff.end());
  const auto experts_used = file.get_int(file.arch_key("expert_used_count")).value_or(0);
  const auto ff_expert = file.get_int(file.arch_key("expert_feed_forward_length")).value_or(0);
  const auto ff_shared = file.get_int(file.arch_key("expert_shared_feed_forward_length")).value_or(0);
  if (experts_used > 0 && ff_expert > 0) {
    d.n_ff_max =
        std::max<std::uint32_t>(d.n_ff_max, static_cast<std::uint32_t>(experts_used * ff_expert + ff_shared));
  }

  d.causal =
      !arch_is_encoder(d.architecture) && file.get_int(file.arch_key("attention.causal")).value_or(1) != 0;

  // Which layers are recurrent.
  std::vector<bool> recurrent(d.n_layer, false);
  if (arch_is_recurrent(d.architecture)) {
    std::fill(recurrent.begin(), recurrent.end(), true);
  } else if (arch_is_hybrid(d.architecture)) {
    if (d.architecture.starts_with("qwen3next") || d.architecture.starts_with("qwen35")) {
      const auto interval = file.get_int(file.arch_key("full_attention_interval")).value_or(4);
      for (std::uint32_t il = 0; il < d.n_layer; ++il)
        recurrent[il] = interval > 0 && (il + 1) % interval != 0;
    } else {
      for (std::uint32_t il = 0; il < d.n_layer; ++il) {
        // nemotron_h: layers with neither attention heads nor a recurrent block are plain MLPs.
        const bool mlp_only = d.architecture.starts_with("nemotron_h") && ff[il] > 0;
        recurrent[il] = kv_heads[il] == 0 && !mlp_only;
      }
    }
  }

  // Fixed recurrent state per sequence (llama_hparams::n_embd_r + n_embd_s, f32).
  std::uint64_t state_floats = 0;
  if (std::any_of(recurrent.begin(), recurrent.end(), [](bool r) { return r; })) {
    if (auto l_cache = file.get_int(file.arch_key("shortconv.l_cache"))) {
      state_floats = static_cast<std::uint64_t>(d.n_embd) *
                     static_cast<std::uint64_t>(std::max<std::int64_t>(*l_cache - 1, 0));
    } else if (auto wkv = file.get_int(file.arch_key("wkv.head_size"))) {
      const auto shift = file.get_int(file.arch_key("token_shift_count")).value_or(2);
      state_floats = static_cast<std::uint64_t>(shift) * d.n_embd +
                     static_cast<std::uint64_t>(d.n_embd) * static_cast<std::uint64_t>(*wkv);
    } else {
      const auto d_conv = file.get_int(file.arch_key("ssm.conv_kernel")).value_or(0);
      const auto d_inner = file.get_int(file.arch_key("ssm.inner_size")).value_or(0);
      const auto d_state = file.get_int(file.arch_key("ssm.state_size")).value_or(0);
      const auto n_group = file.get_int(file.arch_key("ssm.group_count")).value_or(0);
      state_floats = static_cast<std::uint64_t>(
          std::max<std::int64_t>(d_conv - 1, 0) * (d_inner + 2 * n_group * d_state) + d_state * d_inner);
    }
  }

  // Sliding-window layers.
  d.n_swa = static_cast<std::uint32_t>(file.get_int(file.arch_key("attention.sliding_window")).value_or(0));
  d.is_swa.assign(d.n_layer, false);
  if (d.n_swa > 0) {
    const GgufValue* pattern = file.find(file.arch_key("attention.sliding_window_pattern"));
    if (pattern && pattern->is_array()) {
      for (std::uint32_t il = 0; il < d.n_layer && il < pattern->items.size(); ++il) {
        d.is_swa[il] = pattern->items[il].as_int().value_or(0) != 0;
      }
    } else if (d.architecture.starts_with("lfm2")) {
      for (std::uint32_t il = 0; il < d.n_layer; ++il) d.is_swa[il] = !recurrent[il];
    } else {
      const std::uint32_t n = pattern ? static_cast<std::uint32_t>(pattern->as_int().value_or(0))
                                      : default_swa_pattern(d.architecture);
      for (std::uint32_t il = 0; il < d.n_layer; ++il) d.is_swa[il] = n == 0 || il % n < n - 1;
    }
  }

  // K and V row lengths per layer. MLA (DeepSeek-style) caches one compressed row and no V.
  const auto kv_lora_rank = file.get_int(file.arch_key("attention.kv_lora_rank")).value_or(0);
  const auto rope_dims = file.get_int(file.arch_key("rope.dimension_count")).value_or(0);
  d.n_embd_k.assign(d.n_layer, 0);
  d.n_embd_v.assign(d.n_layer, 0);
  d.recurrent_floats.assign(d.n_layer, 0);
  for (std::uint32_t il = 0; il < d.n_layer; ++il) {
    if (recurrent[il]) {
      d.recurrent_floats[il] = state_floats;
      if (d.architecture != "falcon-h1") continue;  // falcon-h1 layers have both
    }
    if (!d.causal || kv_heads[il] == 0) continue;
    if (kv_lora_rank > 0) {
      d.n_embd_k[il] = static_cast<std::uint32_t>(kv_lora_rank + rope_dims);
    } else {
      d.n_embd_k[il] = key_length * kv_heads[il];
      d.n_embd_v[il] = value_length * kv_heads[il];
    }
  }

  // Parameters and quantization.
  std::map<std::uint32_t, std::uint64_t> bytes_by_type;
  for (const auto& t : file.tensors) {
    d.n_params += t.elements();
    bytes_by_type[t.type_id] += t.bytes();
  }
  if (auto ftype = file.get_int("general.file_type")) d.file_type = file_type_name(*ftype);
  if (d.file_type.empty() && !bytes_by_type.empty()) {
    const auto dominant = std::max_element(bytes_by_type.begin(), bytes_by_type.end(),
                                           [](const auto& a, const auto& b) { return a.second < b.second; });
    d.file_type = std::string(ggml_type_by_id(dominant->first)->name);
    for (auto& c : d.file_type) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return d;
}

MemoryPlan plan_memory(const GgufFile& file, const ModelDims& dims, int ctx, int parallel,
                       const std::string& kv_type, bool kv_unified, int batch) {
  if (parallel < 1 || parallel > 256) {
    throw std::invalid_argument("--parallel " + std::to_string(parallel) + " must be between 1 and 256");
  }
  if (ctx < 0 || (ctx > 0 && ctx < 16)) {
    throw std::invalid_argument("--ctx " + std::to_string(ctx) +
                                " is too small (at least 16 tokens, or 0 for the model's own)");
  }
  if (batch < 1) throw std::invalid_argument("--batch must be at least 1");
  const GgmlType* kv_ggml = ggml_type_by_name(kv_type);
  if (!kv_ggml ||
      (kv_type != "f16" && kv_type != "q8_0" && kv_type != "q4_0" && kv_type != "f32" && kv_type != "bf16")) {
    throw std::invalid_argument("--kv-type '" + kv_type + "' is not one of f16, q8_0, q4_0");
  }

  MemoryPlan plan;
  plan.dims = dims;
  plan.source = file.source;
  plan.header_only = !file.has_tensor_data();
  plan.header_bytes_read = file.header_bytes_read;
  plan.file_size = file.file_size;
  plan.kv_type = kv_type;
  plan.kv_unified = kv_unified;

  // serve: --ctx per request (default the model's own, at most 8192), the cache holds ctx x parallel cells.
  const std::uint32_t per_request =
      ctx > 0 ? static_cast<std::uint32_t>(ctx)
              : std::min<std::uint32_t>(dims.n_ctx_train > 0 ? dims.n_ctx_train : 4096, 8192);
  plan.ctx_per_request = per_request;
  plan.parallel = static_cast<std::uint32_t>(parallel);
  // llama_context: pad the whole context, then each stream, to 256 cells.
  std::uint32_t n_ctx = pad(per_request * plan.parallel, cell_pad);
  std::uint32_t n_ctx_seq = n_ctx;
  if (!kv_unified) {
    n_ctx_seq = pad(n_ctx / plan.parallel, cell_pad);
    n_ctx = n_ctx_seq * plan.parallel;
  }
  plan.n_ctx = n_ctx;
  plan.n_ctx_seq = n_ctx_seq;
  plan.n_stream = kv_unified ? 1 : plan.parallel;
  // serve's n_batch is max(--batch, --prefill-chunk) (an embedding model: the whole input); n_ubatch <= 512.
  const std::uint32_t n_batch =
      dims.causal ? std::min<std::uint32_t>(n_ctx, static_cast<std::uint32_t>(batch)) : per_request;
  plan.n_ubatch = std::min(n_batch, max_ubatch);
  const std::uint64_t n_tokens = std::min(n_ctx, plan.n_ubatch);

  // Weights: every tensor's exact bytes, by type.
  std::map<std::string, WeightsByType> by_type;
  for (const auto& t : file.tensors) {
    auto& w = by_type[std::string(ggml_type_by_id(t.type_id)->name)];
    w.type = ggml_type_by_id(t.type_id)->name;
    ++w.tensors;
    w.elements += t.elements();
    w.bytes += t.bytes();
    plan.weights += t.bytes();
  }
  for (const auto& t : file.tensors) {
    if (t.dims.size() >= 2 && t.dims[1] % 8 == 0 && t.name != "token_embd.weight" && cpu_repacks(t.type_id)) {
      plan.weights_repacked += t.bytes();  // token_embd is read by row (get_rows), never repacked
    }
  }
  for (auto& [name, w] : by_type) plan.weights_by_type.push_back(w);
  std::sort(plan.weights_by_type.begin(), plan.weights_by_type.end(),
            [](const auto& a, const auto& b) { return a.bytes > b.bytes; });

  // KV cache: K and V rows for every cell of every stream, per attention layer (llama_kv_cache). Sliding-
  // window layers get the full size too: serve keeps libllama's default swa_full.
  const std::uint64_t cells = static_cast<std::uint64_t>(n_ctx_seq) * plan.n_stream;
  for (std::uint32_t il = 0; il < dims.n_layer; ++il) {
    if (dims.n_embd_k[il] % kv_ggml->block_size != 0 || dims.n_embd_v[il] % kv_ggml->block_size != 0) {
      throw std::invalid_argument(
          "--kv-type " + kv_type + " stores blocks of " + std::to_string(kv_ggml->block_size) +
          " values, and this model's K/V rows (" + std::to_string(dims.n_embd_k[il]) + " values in layer " +
          std::to_string(il) + ") are not whole blocks; use f16");
    }
    if (dims.n_embd_k[il] > 0) {
      plan.kv += (ggml_row_bytes(*kv_ggml, dims.n_embd_k[il]) +
                  (dims.n_embd_v[il] ? ggml_row_bytes(*kv_ggml, dims.n_embd_v[il]) : 0)) *
                 cells;
      ++plan.kv_layers;
      if (dims.is_swa[il]) ++plan.swa_layers;
    }
    if (dims.recurrent_floats[il] > 0) {
      // llama_memory_recurrent: one f32 state per sequence, whatever the context.
      plan.recurrent += dims.recurrent_floats[il] * 4 * plan.parallel;
      ++plan.recurrent_layers;
    }
  }

  // Output buffer: logits for one token per sequence (llama_context::output_reserve), embeddings too for an
  // embedding model.
  plan.output = static_cast<std::uint64_t>(dims.n_vocab) * plan.parallel * 4;
  if (!dims.causal) plan.output += static_cast<std::uint64_t>(dims.n_embd) * plan.parallel * 4;

  // Compute buffer: libllama reserves the worst-case graph, a full micro-batch with logits for each of its
  // tokens. The allocator reuses memory, so the peak is the larger of the output stage (the logits and the
  // last hidden states) and one layer (the f16 attention mask over a stream's cells, one per cache kind, and
  // the feed-forward activations). Measured against libllama's own figure by ops_plan_accuracy_test.
  const std::uint64_t output_stage =
      static_cast<std::uint64_t>(dims.n_vocab) * n_tokens * 4 + 2ull * dims.n_embd * n_tokens * 4;
  const std::uint64_t masks = plan.kv_layers == 0 ? 0 : (plan.swa_layers > 0 ? 2 : 1);
  const std::uint64_t mask_cells = dims.causal ? n_ctx_seq : n_tokens;
  const std::uint64_t layer_stage =
      masks * mask_cells * n_tokens * 2 + (3ull * dims.n_ff_max + 4ull * dims.n_embd) * n_tokens * 4;
  plan.compute = std::max(output_stage, layer_stage);

  // Runtime reserve: libllama's threads and graph metadata, the tokenizer, serve's own state and the
  // allocator's slack: a fixed part and a share of the buffers.
  plan.reserve = 64 * mib + plan.buffers() / 50;
  return plan;
}

int largest_fitting(int lo, int hi, const std::function<bool(int)>& fits) {
  int largest = 0;
  while (lo <= hi) {
    const int mid = lo + (hi - lo) / 2;
    if (fits(mid)) {
      largest = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return largest;
}

ServingSize fit_serving_size(ServingSize wanted, const std::function<bool(const ServingSize&)>& fits) {
  constexpr int ctx_floor = 512;  // below this a request holds too little to be useful; --parallel goes first
  ServingSize size = wanted;
  if (wanted.ctx > ctx_floor) {
    const int blocks = largest_fitting(ctx_floor / 256, wanted.ctx / 256, [&](int n) {
      return fits({.ctx = n * 256, .parallel = wanted.parallel});
    });
    size.ctx = blocks > 0 ? blocks * 256 : ctx_floor;
  }
  if (!fits(size)) {
    const int slots =
        largest_fitting(1, wanted.parallel, [&](int n) { return fits({.ctx = size.ctx, .parallel = n}); });
    size.parallel = std::max(slots, 1);
  }
  return size;
}

MachineMemory probe_machine_memory() {
  MachineMemory m;
  m.ram_total = monitor::system_memory_total_bytes();
  m.ram_available = monitor::system_memory_available_bytes();
  // A GPU, when the NVIDIA driver's tool is there (no CUDA needed to ask).
  if (FILE* pipe =
          ::popen("nvidia-smi --query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits "
                  "2>/dev/null",
                  "r")) {
    std::array<char, 512> line{};
    if (std::fgets(line.data(), static_cast<int>(line.size()), pipe)) {
      std::string text(line.data());
      const auto c1 = text.find(',');
      const auto c2 = text.find(',', c1 == std::string::npos ? c1 : c1 + 1);
      if (c1 != std::string::npos && c2 != std::string::npos) {
        m.gpu_name = text.substr(0, c1);
        m.gpu_total = std::atof(text.substr(c1 + 1, c2 - c1 - 1).c_str()) * mib;
        m.gpu_free = std::atof(text.substr(c2 + 1).c_str()) * mib;
      }
    }
    ::pclose(pipe);
  }
  return m;
}

}  // namespace clawbot::ops
