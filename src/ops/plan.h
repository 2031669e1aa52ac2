// `clawbot plan` and `clawbot models list|show|pull`: know before you load. Everything here reads only GGUF
// headers (src/ops/gguf_reader.h) and needs no libllama, so it is built in the front-end build too.
//
// The plan mirrors how `clawbot serve` allocates through libllama (llama-context.cpp, llama-kv-cache*.cpp,
// llama-memory-recurrent.cpp of the bundled llama.cpp): the context is --ctx x --parallel cells padded to
// 256, one KV stream per slot (or one unified stream), sliding-window layers at full size (libllama's
// default swa_full, which serve keeps), recurrent layers with one fixed state per slot, compute buffers
// reserved for a 512-token micro-batch with logits for every token.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ops/gguf_reader.h"

namespace CLI {
class App;
}

namespace clawbot::ops {

struct PlanOptions {
  std::string model;            // path, file name in CLAWBOT_MODELS, or http(s):// URL
  int ctx = 0;                  // tokens per request; 0: the model's own, at most 8192 (as serve)
  int parallel = 4;             // slots
  std::string kv_type = "f16";  // f16, q8_0, q4_0
  bool kv_unified = false;
  int batch = 512;  // serve's max(--batch, --prefill-chunk)
  bool json = false;
  bool compare_naive = false;
  double memory_gib = 0;  // > 0: plan for a machine with this much memory instead of this one
};

// The numbers of a model that decide its memory, read from GGUF metadata.
struct ModelDims {
  std::string architecture;
  std::string name;
  std::uint32_t n_layer = 0;
  std::uint32_t n_embd = 0;
  std::uint32_t n_vocab = 0;
  std::uint32_t n_ctx_train = 0;
  std::uint32_t n_ff_max = 0;                   // widest feed-forward (active experts' widths added for MoE)
  std::vector<std::uint32_t> n_embd_k;          // per layer: K row length (0: no KV cache in this layer)
  std::vector<std::uint32_t> n_embd_v;          // per layer: V row length (0: none, e.g. MLA)
  std::vector<bool> is_swa;                     // per layer: sliding-window attention
  std::vector<std::uint64_t> recurrent_floats;  // per layer: f32 state per sequence (0: not recurrent)
  std::uint32_t n_swa = 0;
  bool causal = true;  // false: an encoder (embeddings), no KV cache
  std::uint64_t n_params = 0;
  std::string file_type;  // e.g. Q4_K_M, from general.file_type or the dominant tensor type
};

// Throws GgufError when the metadata lacks what the plan needs (block_count, embedding_length, ...).
ModelDims model_dims(const GgufFile& file);

struct WeightsByType {
  std::string type;
  std::uint64_t tensors = 0;
  std::uint64_t elements = 0;
  std::uint64_t bytes = 0;
};

struct MemoryPlan {
  ModelDims dims;
  std::string source;
  bool header_only = false;
  std::uint64_t header_bytes_read = 0;
  std::uint64_t file_size = 0;
  // The context as libllama will make it.
  std::uint32_t ctx_per_request = 0;
  std::uint32_t parallel = 0;
  std::uint32_t n_ctx = 0;      // all KV cells
  std::uint32_t n_ctx_seq = 0;  // cells per stream
  std::uint32_t n_stream = 0;
  std::uint32_t n_ubatch = 0;
  std::string kv_type;
  bool kv_unified = false;
  // Breakdown, bytes.
  std::vector<WeightsByType> weights_by_type;
  std::uint64_t weights = 0;
  // Of the weights, the bytes libllama's CPU backend copies into its repacked layout at load (q4_0, q4_K,
  // iq4_nl, mxfp4 matrices on x86 with AVX2): an anonymous copy, while the mapped originals go cold (page
  // cache the kernel may drop). Not added to the total; libllama reports it as a "CPU_REPACK" buffer.
  std::uint64_t weights_repacked = 0;
  std::uint64_t kv = 0;         // attention layers' K and V
  std::uint64_t recurrent = 0;  // recurrent layers' fixed state
  std::uint32_t kv_layers = 0, swa_layers = 0, recurrent_layers = 0;
  std::uint64_t output = 0;   // logits (and embeddings) buffer
  std::uint64_t compute = 0;  // libllama's compute buffer (worst-case graph)
  std::uint64_t reserve = 0;  // runtime: threads, tokenizer, allocator slack
  std::uint64_t total() const { return weights + kv + recurrent + output + compute + reserve; }
  // What libllama allocates itself (the measurable part: weights, caches, output and compute buffers).
  std::uint64_t buffers() const { return weights + kv + recurrent + output + compute; }
};

// The plan for one configuration. Throws std::invalid_argument for a bad --ctx, --parallel or --kv-type.
MemoryPlan plan_memory(const GgufFile& file, const ModelDims& dims, int ctx, int parallel,
                       const std::string& kv_type, bool kv_unified, int batch = 512);

// What serve allocates for: tokens per request (--ctx) and slots (--parallel).
struct ServingSize {
  int ctx = 0;
  int parallel = 0;
};

// The largest n in [lo, hi] for which `fits(n)` holds, when `fits` holds for every n up to some bound (memory
// grows with the context and the slots); 0 when it holds for none.
int largest_fitting(int lo, int hi, const std::function<bool(int)>& fits);

// serve --fit: lowers --ctx first (to the largest multiple of 256 that fits, not below 512 or the --ctx asked
// for when that is smaller), then --parallel (to the largest that fits at that context). When nothing fits,
// it returns the smallest it tried (the caller checks `fits` on the answer and says why).
ServingSize fit_serving_size(ServingSize wanted, const std::function<bool(const ServingSize&)>& fits);

// This machine's memory, and a GPU's when nvidia-smi finds one.
struct MachineMemory {
  double ram_total = 0;
  double ram_available = 0;
  std::string gpu_name;  // empty: none found
  double gpu_total = 0;
  double gpu_free = 0;
};
MachineMemory probe_machine_memory();

// `clawbot plan`: prints the plan; returns the exit status (0 fits, 1 error, 2 does not fit).
int run_plan(const PlanOptions& options);

// `clawbot plan` (plan_cmd.cpp) and `clawbot models list|show|pull|synth` (models_cli.cpp) on `app`. After
// parsing, the returned function runs the one given and returns its exit status, or nullopt when the command
// line named another.
std::function<std::optional<int>()> add_plan_command(CLI::App& app);
std::function<std::optional<int>()> add_models_command(CLI::App& app);

struct ModelsListOptions {
  bool json = false;
};
struct ModelsShowOptions {
  std::string model;
  bool json = false;
  bool tensors = false;  // also list every tensor
};
struct ModelsPullOptions {
  std::string url;         // http(s)://... or hf://org/repo/file
  std::string output_dir;  // empty: the first model directory (common/model_path.h)
  std::string sha256;      // expected sum (hex); empty: a sidecar URL.sha256 when the server has one
  bool no_progress = false;
};

int run_models_list(const ModelsListOptions& options);
int run_models_show(const ModelsShowOptions& options);
int run_models_pull(const ModelsPullOptions& options);

// hf://org/repo/path/file -> https://huggingface.co/org/repo/resolve/main/path/file; other URLs unchanged.
std::string resolve_model_url(const std::string& url);

// A model named on the command line that is not a URL: the file, as a path or a name in the model
// directories; throws ClawbotError saying where it looked and which names are close otherwise.
std::string local_model_file(const std::string& name);

}  // namespace clawbot::ops
