// `clawbot plan` against libllama: for stories260K and synthesized models of each cache kind (plain
// attention, sliding window, hybrid recurrent; f32, q8_0 and q4_k_m, whose matrices the CPU backend
// repacks) at three context sizes, the plan's weights (+ CPU repack) + caches + output + compute buffers are
// within 1% (as README says; at most 0.73% measured, stories260K at 256 tokens) of the buffers libllama
// reports when serve's engine creates the same context, and the process's RSS growth never exceeds the plan's
// total (+ the repacked copy, whose mapped originals were read at load). Prints the table.
// Needs the engine (built only with CLAWBOT_ENGINE). Models: CLAWBOT_MODELS (default ../shared/models), and
// `models synth` output in the cache (written here when missing: seconds for the tiny shapes, a minute or
// two for lfm2-350m q4_k_m on 2 cores; reused after).
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <regex>
#include <string>
#include <vector>

#include <ggml.h>
#include <gtest/gtest.h>
#include <llama.h>

#include "common/model_path.h"
#include "engine/engine.h"
#include "monitor/metrics.h"
#include "ops/ops.h"
#include "ops/plan.h"

namespace clawbot::ops {
namespace {

// libllama's buffer-size log lines ("CPU KV buffer size =     2.50 MiB"), summed.
struct BufferLog {
  std::mutex mutex;
  double weights_mib = 0, context_mib = 0;
  bool loading_model = false;
};
BufferLog buffer_log;

void capture_llama_log(ggml_log_level, const char* text, void*) {
  static const std::regex line(R"((model|KV|RS|output|compute) buffer size = +([0-9.]+) MiB)");
  std::cmatch m;
  if (!std::regex_search(text, m, line)) return;
  std::lock_guard lock(buffer_log.mutex);
  const double mib = std::stod(m[2].str());
  if (m[1].str() == "model") {
    buffer_log.weights_mib += mib;
  } else {
    buffer_log.context_mib += mib;
  }
}

class AccuracyEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* models = std::getenv("CLAWBOT_MODELS");
    if (!models || !*models) ::setenv("CLAWBOT_MODELS", CLAWBOT_DEFAULT_MODELS, 1);
    engine::init_backend(/*verbose=*/false);
    llama_log_set(capture_llama_log, nullptr);  // after init_backend, which routes the log to spdlog
  }
};
const auto* const environment = ::testing::AddGlobalTestEnvironment(new AccuracyEnvironment);

struct Row {
  std::string model;
  int ctx, parallel;
  double predicted_mib, measured_mib, rss_growth_mib, predicted_total_mib;
};
std::vector<Row>& rows() {
  static std::vector<Row> r;
  return r;
}

std::string model_path(const std::string& name) {
  if (name.ends_with(".gguf")) {
    auto path = clawbot::find_model_file(name);
    if (!path) throw std::runtime_error(name + " is not in " + model_dirs_description());
    return *path;
  }
  // A synthesized shape, "shape:quant": written once into the cache, reused after.
  const auto colon = name.find(':');
  SynthOptions options;
  options.shape = name.substr(0, colon);
  options.quant = name.substr(colon + 1);
  options.threads = 2;
  return synthesize_model(options).path;
}

void check_model(const std::string& name) {
  const std::string path = model_path(name);
  const GgufFile file = read_gguf(path);
  const ModelDims dims = model_dims(file);

  const double rss_before = monitor::process_rss_bytes();
  buffer_log.weights_mib = 0;
  auto model = engine::Model::load({.path = path, .vocab_only = false, .show_progress = false});
  const double weights_mib = buffer_log.weights_mib;
  bool first = true;
  for (const auto& [ctx, parallel] : std::vector<std::pair<int, int>>{{256, 1}, {1024, 4}, {4096, 2}}) {
    const MemoryPlan plan = plan_memory(file, dims, ctx, parallel, "f16", false);
    // As serve makes it (src/server/serve.cpp): ctx x parallel cells, one stream per slot, n_batch 512.
    engine::ContextOptions options;
    options.n_ctx = static_cast<std::uint32_t>(ctx * parallel);
    options.n_batch = 512;
    options.n_seq_max = static_cast<std::uint32_t>(parallel);
    options.n_threads = 2;
    buffer_log.context_mib = 0;
    const double rss_context_before = monitor::process_rss_bytes();
    double rss_growth = 0;
    {
      engine::Context context(model, options);
      // One full step touches the weights (mapped, read on first use) and the compute buffer.
      std::vector<engine::Token> tokens(64, 1);
      ASSERT_EQ(context.decode(tokens, 0), engine::DecodeStatus::ok);
      rss_growth = monitor::process_rss_bytes() - (first ? rss_before : rss_context_before);
    }
    const double measured_mib = weights_mib + buffer_log.context_mib;
    const double predicted_mib = static_cast<double>(plan.buffers() + plan.weights_repacked) / (1 << 20);
    const double load_peak = static_cast<double>(plan.total() + plan.weights_repacked);
    const double predicted_total_mib =
        (first ? load_peak : load_peak - static_cast<double>(plan.weights + plan.weights_repacked)) /
        (1 << 20);
    rows().push_back(
        {name, ctx, parallel, predicted_mib, measured_mib, rss_growth / (1 << 20), predicted_total_mib});
    EXPECT_NEAR(predicted_mib, measured_mib, measured_mib * 0.01)
        << name << " ctx " << ctx << " x " << parallel << ": predicted " << predicted_mib << " MiB, libllama "
        << measured_mib << " MiB";
    // The plan is what to provision: the process never grows past it.
    EXPECT_LE(rss_growth / (1 << 20), predicted_total_mib)
        << name << " ctx " << ctx << " x " << parallel << ": RSS grew " << rss_growth / (1 << 20) << " MiB";
    first = false;
  }
}

TEST(PlanAccuracy, GgmlTypeTableMatchesLibggml) {
  for (const auto& t : ggml_types()) {
    const auto type = static_cast<ggml_type>(t.id);
    EXPECT_EQ(ggml_blck_size(type), static_cast<std::int64_t>(t.block_size)) << t.name;
    EXPECT_EQ(ggml_type_size(type), static_cast<std::size_t>(t.type_size)) << t.name;
    EXPECT_EQ(std::string(ggml_type_name(type)), std::string(t.name));
  }
}

TEST(PlanAccuracy, Stories260K) {
  check_model("stories260K.gguf");
}
TEST(PlanAccuracy, TinyLlama) {
  check_model("tiny-llama:q8_0");
}
TEST(PlanAccuracy, TinySlidingWindow) {
  check_model("tiny-swa:f32");
}
TEST(PlanAccuracy, TinyHybrid) {
  check_model("tiny-hybrid:f32");
}
TEST(PlanAccuracy, SmolLM2_135M) {
  check_model("smollm2-135m:q8_0");
}
TEST(PlanAccuracy, Lfm2_350M_Q4_K_M) {
  check_model("lfm2-350m:q4_k_m");
}

// The table for people (and the report): one line per model and context.
class TablePrinter : public ::testing::Environment {
 public:
  void TearDown() override {
    if (rows().empty()) return;
    std::printf("\n%-20s %6s %4s %14s %14s %7s %14s %14s\n", "model", "ctx", "par", "predicted MiB",
                "libllama MiB", "diff", "RSS growth MiB", "plan total MiB");
    for (const auto& r : rows()) {
      std::printf("%-20s %6d %4d %14.2f %14.2f %+6.2f%% %14.2f %14.2f\n", r.model.c_str(), r.ctx, r.parallel,
                  r.predicted_mib, r.measured_mib,
                  100.0 * (r.predicted_mib - r.measured_mib) / r.measured_mib, r.rss_growth_mib,
                  r.predicted_total_mib);
    }
  }
};
const auto* const printer = ::testing::AddGlobalTestEnvironment(new TablePrinter);

}  // namespace
}  // namespace clawbot::ops
