// `clawbot plan`: its command line, the verdict against this machine's memory, and how it is printed. The
// arithmetic is in plan.cpp.
#include <cstdio>
#include <memory>
#include <utility>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "audio/whisper_file.h"
#include "common/cli_error.h"
#include "monitor/metrics.h"
#include "ops/file_io.h"
#include "ops/plan.h"

namespace clawbot::ops {
namespace {

// Bits per weight of common quantizations (llama.cpp's quantize table), to say which would fit.
struct QuantChoice {
  const char* name;
  double bits_per_weight;
};
constexpr std::array<QuantChoice, 8> quant_choices = {{
    {"Q8_0", 8.50},
    {"Q6_K", 6.56},
    {"Q5_K_M", 5.69},
    {"Q4_K_M", 4.89},
    {"IQ4_XS", 4.46},
    {"Q3_K_M", 3.91},
    {"IQ3_XXS", 3.21},
    {"Q2_K", 2.96},
}};

nlohmann::json plan_json(const MemoryPlan& p) {
  nlohmann::json weights = nlohmann::json::array();
  for (const auto& w : p.weights_by_type) {
    weights.push_back(
        {{"type", w.type}, {"tensors", w.tensors}, {"elements", w.elements}, {"bytes", w.bytes}});
  }
  return {
      {"model",
       {{"source", p.source},
        {"architecture", p.dims.architecture},
        {"name", p.dims.name},
        {"parameters", p.dims.n_params},
        {"quantization", p.dims.file_type},
        {"layers", p.dims.n_layer},
        {"context_train", p.dims.n_ctx_train},
        {"vocab", p.dims.n_vocab},
        {"sliding_window", p.dims.n_swa},
        {"header_only", p.header_only},
        {"file_bytes", p.file_size},
        {"header_bytes_read", p.header_bytes_read}}},
      {"config",
       {{"ctx", p.ctx_per_request},
        {"parallel", p.parallel},
        {"kv_type", p.kv_type},
        {"kv_unified", p.kv_unified},
        {"kv_cells", p.n_ctx},
        {"kv_cells_per_stream", p.n_ctx_seq},
        {"streams", p.n_stream},
        {"ubatch", p.n_ubatch}}},
      {"bytes",
       {{"weights", p.weights},
        {"weights_repacked_for_cpu", p.weights_repacked},
        {"kv_cache", p.kv},
        {"recurrent_state", p.recurrent},
        {"output", p.output},
        {"compute", p.compute},
        {"reserve", p.reserve},
        {"total", p.total()}}},
      {"layers", {{"kv", p.kv_layers}, {"sliding_window", p.swa_layers}, {"recurrent", p.recurrent_layers}}},
      {"weights_by_type", weights},
  };
}

// The rule of thumb people use: 2 bytes a parameter, context x 4 bytes, plus 8 GB.
double naive_bytes(const MemoryPlan& p) {
  return static_cast<double>(p.dims.n_params) * 2.0 + static_cast<double>(p.ctx_per_request) * 4.0 + 8e9;
}

// The plan against a budget: does it fit, what is the most that would, which quantization would.
struct PlanVerdict {
  MachineMemory machine;
  double budget = 0;
  bool fits = false;
  int largest_ctx = 0;                                     // at --parallel
  int largest_parallel = 0;                                // at --ctx
  std::vector<std::pair<std::string, double>> quant_fits;  // when it does not fit: name, total bytes
};

PlanVerdict judge(const GgufFile& file, const ModelDims& dims, const MemoryPlan& plan,
                  const PlanOptions& options) {
  PlanVerdict v;
  v.machine = probe_machine_memory();
  v.budget = options.memory_gib > 0 ? options.memory_gib * 1024.0 * 1024 * 1024 : v.machine.ram_available;
  v.fits = static_cast<double>(plan.total()) <= v.budget;
  auto fits_with = [&](int ctx, int parallel) {
    return static_cast<double>(
               plan_memory(file, dims, ctx, parallel, options.kv_type, options.kv_unified, options.batch)
                   .total()) <= v.budget;
  };
  // Largest context per request at this parallelism (multiples of 256, up to the training context).
  const int ctx_ceiling = static_cast<int>(std::max<std::uint32_t>(dims.n_ctx_train, plan.ctx_per_request));
  v.largest_ctx = 256 * largest_fitting(1, (ctx_ceiling + 255) / 256,
                                        [&](int cells) { return fits_with(cells * 256, options.parallel); });
  v.largest_parallel = largest_fitting(
      1, 256, [&](int slots) { return fits_with(static_cast<int>(plan.ctx_per_request), slots); });
  // Which quantization would fit, when this one does not: the weights scale with bits per weight.
  if (!v.fits) {
    const double current_bpw = 8.0 * static_cast<double>(plan.weights) /
                               static_cast<double>(std::max<std::uint64_t>(dims.n_params, 1));
    for (const auto& q : quant_choices) {
      if (q.bits_per_weight >= current_bpw - 0.05) continue;
      const double weights = static_cast<double>(dims.n_params) * q.bits_per_weight / 8.0;
      const double total = static_cast<double>(plan.total() - plan.weights) + weights;
      if (total <= v.budget) v.quant_fits.emplace_back(q.name, total);
    }
  }
  return v;
}

void print_json(const MemoryPlan& plan, const PlanVerdict& v, const PlanOptions& options) {
  nlohmann::json out = plan_json(plan);
  out["machine"] = {{"ram_total", v.machine.ram_total},
                    {"ram_available", v.machine.ram_available},
                    {"budget", v.budget},
                    {"budget_from", options.memory_gib > 0 ? "--memory" : "available RAM"}};
  if (!v.machine.gpu_name.empty()) {
    out["machine"]["gpu"] = {
        {"name", v.machine.gpu_name}, {"total", v.machine.gpu_total}, {"free", v.machine.gpu_free}};
  }
  out["fits"] = v.fits;
  out["largest_ctx"] = v.largest_ctx;
  out["largest_parallel"] = v.largest_parallel;
  nlohmann::json quants = nlohmann::json::array();
  for (const auto& [name, total] : v.quant_fits) quants.push_back({{"quantization", name}, {"total", total}});
  out["quantizations_that_fit"] = quants;
  if (options.compare_naive) out["naive_bytes"] = naive_bytes(plan);
  std::printf("%s\n", out.dump(2).c_str());
}

std::string size_text(double bytes) {
  return detail::format_binary_size(bytes);
}
std::string size_text(std::uint64_t bytes) {
  return detail::format_binary_size(static_cast<double>(bytes));
}

// The breakdown: one line per kind of memory.
void print_breakdown(const MemoryPlan& plan, const PlanOptions& options) {
  std::printf("  weights          %12s  ", size_text(plan.weights).c_str());
  for (std::size_t i = 0; i < plan.weights_by_type.size(); ++i) {
    const auto& w = plan.weights_by_type[i];
    std::printf("%s%s %s (%llu)", i ? ", " : "", w.type.c_str(), size_text(w.bytes).c_str(),
                static_cast<unsigned long long>(w.tensors));
  }
  std::printf("\n");
  if (plan.weights_repacked > 0) {
    std::printf(
        "    CPU repack     %12s  of them copied at load into the CPU backend's faster layout (the mapped "
        "originals go cold)\n",
        size_text(plan.weights_repacked).c_str());
  }
  std::printf("  KV cache         %12s  %u attention layers%s x %u cells\n", size_text(plan.kv).c_str(),
              plan.kv_layers,
              plan.swa_layers ? (" (" + std::to_string(plan.swa_layers) +
                                 " sliding-window, kept full size as serve allocates)")
                                    .c_str()
                              : "",
              plan.n_ctx);
  if (plan.recurrent_layers > 0) {
    std::printf("  recurrent state  %12s  %u recurrent layers x %u sequences (fixed, whatever the context)\n",
                size_text(plan.recurrent).c_str(), plan.recurrent_layers, plan.parallel);
  }
  std::printf("  output           %12s  logits of %u sequences\n", size_text(plan.output).c_str(),
              plan.parallel);
  std::printf("  compute          %12s  worst-case graph of a %u-token step\n",
              size_text(plan.compute).c_str(), plan.n_ubatch);
  std::printf("  runtime reserve  %12s\n", size_text(plan.reserve).c_str());
  std::printf("  total            %12s\n", size_text(plan.total()).c_str());
  if (options.compare_naive) {
    std::printf(
        "  rule of thumb    %12s  (2 bytes a parameter + ctx x 4 bytes + 8 GB): its KV cache term is "
        "%s, ours %s\n",
        size_text(naive_bytes(plan)).c_str(),
        size_text(static_cast<double>(plan.ctx_per_request) * 4.0).c_str(),
        size_text(plan.kv + plan.recurrent).c_str());
  }
}

// The machine, whether the plan fits it, and what would.
void print_verdict(const MemoryPlan& plan, const PlanVerdict& v, const PlanOptions& options) {
  const auto& machine = v.machine;
  std::printf("machine     RAM %s total, %s available", size_text(machine.ram_total).c_str(),
              size_text(machine.ram_available).c_str());
  if (!machine.gpu_name.empty()) {
    std::printf("; GPU %s: %s total, %s free", machine.gpu_name.c_str(), size_text(machine.gpu_total).c_str(),
                size_text(machine.gpu_free).c_str());
  }
  std::printf("\n");
  std::printf("verdict     %s %s%s\n", v.fits ? "fits in" : "does NOT fit in", size_text(v.budget).c_str(),
              options.memory_gib > 0 ? " (--memory)" : " of available RAM");
  if (!machine.gpu_name.empty()) {
    std::printf("            on the GPU (%s free): %s\n", size_text(machine.gpu_free).c_str(),
                static_cast<double>(plan.total()) <= machine.gpu_free ? "fits" : "does not fit");
  }
  if (v.largest_ctx > 0) {
    const bool at_training_ctx =
        plan.dims.n_ctx_train > 0 && v.largest_ctx >= static_cast<int>(plan.dims.n_ctx_train);
    std::printf("largest     --ctx %d at --parallel %d%s; ", v.largest_ctx, options.parallel,
                at_training_ctx ? " (the model's training context)" : "");
    if (v.largest_parallel > 0)
      std::printf("--parallel %d at --ctx %u\n", v.largest_parallel, plan.ctx_per_request);
    else
      std::printf("not even --parallel 1 fits at --ctx %u\n", plan.ctx_per_request);
  } else {
    std::printf("largest     not even --ctx 256 at --parallel %d fits\n", options.parallel);
  }
  if (!v.fits) {
    if (v.quant_fits.empty()) {
      std::printf("quantize    no common quantization of this model fits with these settings\n");
    } else {
      std::printf("quantize    would fit as:");
      for (const auto& [name, total] : v.quant_fits)
        std::printf(" %s (%s)", name.c_str(), size_text(total).c_str());
      std::printf("\n");
    }
  }
}

void print_text(const GgufFile& file, const MemoryPlan& plan, const PlanVerdict& v,
                const PlanOptions& options) {
  const auto& d = plan.dims;
  std::printf("model       %s: %s, %s parameters, %s%s\n", file.source.c_str(), d.architecture.c_str(),
              detail::format_count(d.n_params).c_str(), d.file_type.c_str(),
              plan.header_only ? " (header-only file: no weights in it)" : "");
  if (is_url(file.source)) {
    std::printf("            read %s of the %s file (the header only)\n",
                size_text(plan.header_bytes_read).c_str(), size_text(plan.file_size).c_str());
  }
  std::printf("serving     %u tokens per request x %u slots = %u KV cells (%s, %s)\n", plan.ctx_per_request,
              plan.parallel, plan.n_ctx, plan.kv_type.c_str(),
              plan.kv_unified ? "one unified stream" : "one stream per slot");
  std::printf("\n");
  print_breakdown(plan, options);
  std::printf("\n");
  print_verdict(plan, v, options);
}

}  // namespace

// A whisper.cpp model (speech to text, serve --whisper-model): its weights and what one transcription
// allocates besides (greedy with best-of 5 decoders, whisper's default), against the budget.
int plan_whisper(const std::string& path, const PlanOptions& options) {
  const audio::WhisperFileInfo info = audio::read_whisper_file(path);
  const double weights = static_cast<double>(info.tensor_bytes);
  const double runtime = static_cast<double>(audio::whisper_runtime_bytes(info.hparams, 5));
  const double budget = options.memory_gib > 0 ? options.memory_gib * 1024.0 * 1024 * 1024
                                               : monitor::system_memory_available_bytes();
  const bool fits = weights + runtime <= budget;
  if (options.json) {
    const nlohmann::json out = {{"model", path},
                                {"task", "transcription"},
                                {"whisper_size", info.size_name},
                                {"weight_type", info.weight_type},
                                {"parameters", info.n_params},
                                {"weights_bytes", weights},
                                {"runtime_bytes", runtime},
                                {"total_bytes", weights + runtime},
                                {"budget_bytes", budget},
                                {"fits", fits}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("model       %s (whisper %s, %s, %s parameters%s)\n", path.c_str(), info.size_name.c_str(),
                info.weight_type.c_str(), detail::format_count(info.n_params).c_str(),
                info.synthetic.empty() ? "" : ", synthetic");
    std::printf("weights     %s\n", size_text(weights).c_str());
    std::printf("runtime     %s (attention caches, 5 decoders, compute buffers; an estimate)\n",
                size_text(runtime).c_str());
    std::printf("total       %s of %s %s: %s\n", size_text(weights + runtime).c_str(),
                size_text(budget).c_str(), options.memory_gib > 0 ? "(--memory)" : "available",
                fits ? "fits" : "does not fit");
  }
  return fits ? 0 : 2;
}

int run_plan(const PlanOptions& options) {
  try {
    const std::string location = is_url(options.model) || options.model.starts_with("hf://")
                                     ? options.model
                                     : local_model_file(options.model);
    if (!is_url(location) && audio::is_whisper_file(location)) return plan_whisper(location, options);
    const GgufFile file = read_gguf(resolve_model_url(location));
    const ModelDims dims = model_dims(file);
    const MemoryPlan plan = plan_memory(file, dims, options.ctx, options.parallel, options.kv_type,
                                        options.kv_unified, options.batch);
    const PlanVerdict verdict = judge(file, dims, plan, options);
    if (options.json) {
      print_json(plan, verdict, options);
    } else {
      print_text(file, plan, verdict, options);
    }
    return verdict.fits ? 0 : 2;
  } catch (const std::exception& e) {
    return cli_error("clawbot plan", e.what(), 1);
  }
}

std::function<std::optional<int>()> add_plan_command(CLI::App& app) {
  auto plan = std::make_shared<PlanOptions>();
  auto* cmd = app.add_subcommand(
      "plan", "Memory planner: will this model, context and parallelism fit? (reads only the GGUF header)");
  cmd->add_option("model", plan->model, "GGUF file: path, name in $CLAWBOT_MODELS, http(s):// or hf:// URL")
      ->required();
  cmd->add_option("-c,--ctx", plan->ctx, "Tokens per request (0: the model's own, at most 8192, as serve)")
      ->capture_default_str();
  cmd->add_option("-p,--parallel", plan->parallel, "Slots (requests decoded together)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_option("--kv-type", plan->kv_type, "KV cache type: f16, q8_0 or q4_0")
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "q8_0", "q4_0"}));
  cmd->add_flag("--kv-unified", plan->kv_unified, "One KV cache shared by all slots (as serve --kv-unified)");
  cmd->add_option("--memory", plan->memory_gib,
                  "Plan for a machine with this many GiB (default: this one's available RAM)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", plan->json, "Print JSON");
  cmd->add_flag("--compare-naive", plan->compare_naive,
                "Also show the rule of thumb (2 bytes a parameter + ...)");
  return [=]() -> std::optional<int> {
    if (!cmd->parsed()) return std::nullopt;
    return run_plan(*plan);
  };
}

}  // namespace clawbot::ops
