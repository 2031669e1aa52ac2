// serve's memory check and --fit: the planner's arithmetic (`clawbot plan`, tested against libllama's own
// buffers), split between host and GPU by the share of layers offloaded.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include <spdlog/spdlog.h>

#include "ops/gguf_reader.h"
#include "server/serve_internal.h"

namespace clawbot::server {
namespace {

// What a configuration needs on the host and on the GPU, by the plan.
struct Need {
  double host = 0, gpu = 0, kv = 0;
};

class MemoryCheck {
 public:
  MemoryCheck(const ServeOptions& options, const engine::Model& model, const ops::PreparedModel& prepared)
      : options_(options), info_(model.info()) {
    // CLAWBOT_MEMORY_AVAILABLE (bytes) stands in for the system's figure: a seam for tests and for operators
    // who want to leave room for other processes.
    const char* available_override = std::getenv("CLAWBOT_MEMORY_AVAILABLE");
    // A decrypted model's memory is taken already (so not available) but it is the weights counted below.
    const double decrypted_bytes =
        prepared.decrypted ? static_cast<double>(prepared.decrypted->stats().plaintext_bytes) : 0.0;
    // (The seam may also name a file that holds the bytes: monitor reads either.)
    const bool overridden = available_override && *available_override;
    available_ = monitor::system_memory_available_bytes() + (overridden ? 0.0 : decrypted_bytes);
    try {
      header_ = ops::read_gguf(prepared.path);
      dims_ = ops::model_dims(*header_);
    } catch (const std::exception& e) {
      header_.reset();
      spdlog::debug("memory plan unavailable ({}); the memory is not checked", e.what());
    }
    // With layers on a GPU, their share of the KV cache and compute buffers goes there too; the weights are
    // there already (the memory figures below are read after loading), and the host keeps only the rest.
    if (options.gpu_layers != 0) gpus_ = engine::accelerators();
    offloaded_ =
        gpus_.empty()
            ? 0.0
            : std::min(1.0, options.gpu_layers < 0 ? 1.0 : options.gpu_layers / (info_.n_layer + 1.0));
    for (const auto& gpu : gpus_) gpu_free_ += static_cast<double>(gpu.free_bytes);
  }

  // The planner cannot plan a file it cannot read, or a configuration it refuses (a --kv-type whose blocks do
  // not divide the model's rows): then libllama alone says whether it can allocate.
  std::optional<Need> need(const ops::ServingSize& size) const {
    if (!header_) return std::nullopt;
    try {
      const auto plan =
          ops::plan_memory(*header_, *dims_, size.ctx, size.parallel, options_.kv_type, options_.kv_unified,
                           std::max(options_.batch, options_.prefill_chunk));
      const auto weights = static_cast<double>(plan.weights);
      const auto kv = static_cast<double>(plan.kv + plan.recurrent);
      const auto compute = static_cast<double>(plan.compute);
      const auto reserve = static_cast<double>(plan.output + plan.reserve);
      return Need{.host = (1 - offloaded_) * (weights + kv + compute) + reserve,
                  .gpu = offloaded_ * (kv + compute),
                  .kv = kv};
    } catch (const std::invalid_argument& e) {
      spdlog::debug("memory plan unavailable ({}); the memory is not checked", e.what());
      return std::nullopt;
    }
  }

  bool fits(const ops::ServingSize& size) const {
    const auto needed = need(size);
    return !needed ||
           ((available_ <= 0 || needed->host <= available_) && (gpus_.empty() || needed->gpu <= gpu_free_));
  }

  std::string shortfall(const ops::ServingSize& size) const {
    const Need needed = need(size).value_or(Need{});
    char text[512];
    if (available_ > 0 && needed.host > available_) {
      std::snprintf(
          text, sizeof text,
          "needs about %.2f GiB (weights %.2f GiB, KV cache %.2f GiB for %d slots x %d tokens at %s) "
          "but %.2f GiB of memory is available",
          gib(needed.host), gib(static_cast<double>(info_.size_bytes)), gib(needed.kv), size.parallel,
          size.ctx, options_.kv_type.c_str(), gib(available_));
    } else {
      std::snprintf(text, sizeof text,
                    "needs about %.2f GiB of GPU memory besides the weights (KV cache and compute buffers; "
                    "KV cache %.2f GiB for %d slots x %d tokens at %s) but %.2f GiB is free on %s (%s) "
                    "after loading the weights",
                    gib(needed.gpu), gib(needed.kv * offloaded_), size.parallel, size.ctx,
                    options_.kv_type.c_str(), gib(gpu_free_), gpus_.front().name.c_str(),
                    gpus_.front().description.c_str());
    }
    return text;
  }

  std::string room() const {
    return fmt::format(
        "{:.2f} GiB of available memory{}", gib(available_),
        gpus_.empty() ? std::string() : fmt::format(" and {:.2f} GiB free on the GPU", gib(gpu_free_)));
  }
  bool has_gpu() const { return !gpus_.empty(); }

 private:
  const ServeOptions& options_;
  const engine::ModelInfo& info_;
  double available_ = 0;
  std::optional<ops::GgufFile> header_;
  std::optional<ops::ModelDims> dims_;
  std::vector<engine::Accelerator> gpus_;
  double offloaded_ = 0;
  double gpu_free_ = 0;
};

}  // namespace

ops::ServingSize size_for_memory(const ServeOptions& options, const engine::Model& model,
                                 const ops::PreparedModel& prepared) {
  const auto& info = model.info();
  // --ctx is what one request may use; the cache holds that much for every slot (never divided among them).
  const ops::ServingSize wanted{
      .ctx = options.ctx > 0 ? options.ctx : static_cast<int>(std::min<std::int64_t>(info.n_ctx_train, 8192)),
      .parallel = options.parallel};
  // Know before allocating: weights + KV cache + compute buffers + a reserve against what the system has.
  const MemoryCheck memory(options, model, prepared);
  if (memory.fits(wanted)) return wanted;
  if (!options.fit) {
    throw std::runtime_error("this configuration " + memory.shortfall(wanted) +
                             ".\nLower --ctx or --parallel, use --kv-type q8_0 or q4_0" +
                             (memory.has_gpu() ? ", keep some layers on the CPU with --gpu-layers" : "") +
                             ", or pass --fit to lower them automatically.");
  }
  const ops::ServingSize size =
      ops::fit_serving_size(wanted, [&memory](const ops::ServingSize& s) { return memory.fits(s); });
  if (!memory.fits(size)) {
    throw std::runtime_error("even " + std::to_string(size.parallel) + " slot of " +
                             std::to_string(size.ctx) + " tokens " + memory.shortfall(size) +
                             ": this model does not fit this machine");
  }
  spdlog::warn("--fit: lowered --ctx {} to {} and --parallel {} to {} to fit {}", wanted.ctx, size.ctx,
               wanted.parallel, size.parallel, memory.room());
  return size;
}

}  // namespace clawbot::server
