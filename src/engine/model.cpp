#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include <ggml-backend.h>
#include <llama.h>
#include <spdlog/spdlog.h>

#include "engine/engine.h"
#include "engine/llama_log.h"

namespace clawbot::engine {

namespace detail {
namespace {
thread_local LlamaErrorCapture* active_capture = nullptr;  // the innermost capture of this thread
}  // namespace

LlamaErrorCapture::LlamaErrorCapture() noexcept : outer_(active_capture) {
  active_capture = this;
}
LlamaErrorCapture::~LlamaErrorCapture() {
  active_capture = outer_;
}

void LlamaErrorCapture::keep(const std::string& line) {
  if (active_capture != nullptr) active_capture->last_error_ = line;
}
}  // namespace detail

namespace {

// libllama logs a line in fragments, all on the thread that logs it: each thread assembles its own lines.
thread_local std::string log_line;
thread_local ggml_log_level log_line_level = GGML_LOG_LEVEL_INFO;
std::atomic<bool> log_verbose = false;

void route_llama_log(ggml_log_level level, const char* text, void* /*user*/) {
  if (level != GGML_LOG_LEVEL_CONT) log_line_level = level;
  log_line += text;
  if (log_line.empty() || log_line.back() != '\n') return;
  log_line.pop_back();
  switch (log_line_level) {
    case GGML_LOG_LEVEL_ERROR:
      detail::LlamaErrorCapture::keep(log_line);
      if (log_verbose) spdlog::error("llama: {}", log_line);
      break;
    case GGML_LOG_LEVEL_WARN:
      if (log_verbose) spdlog::warn("llama: {}", log_line);
      break;
    default:
      if (log_verbose) spdlog::debug("llama: {}", log_line);
  }
  log_line.clear();
}

bool progress_bar(float progress, void* /*user*/) {
  constexpr int width = 40;
  const int filled = std::clamp(static_cast<int>(progress * width), 0, width);
  std::fprintf(stderr, "\rloading model [%s%s] %3d%%", std::string(static_cast<size_t>(filled), '#').c_str(),
               std::string(static_cast<size_t>(width - filled), ' ').c_str(),
               static_cast<int>(progress * 100));
  if (progress >= 1.0f) std::fputc('\n', stderr);
  std::fflush(stderr);
  return true;
}

void ensure_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    llama_log_set(route_llama_log, nullptr);
    llama_backend_init();
  });
}

}  // namespace

void init_backend(bool verbose) {
  log_verbose = verbose;
  ensure_backend();
}

std::vector<Accelerator> accelerators() {
  ensure_backend();
  std::vector<Accelerator> found;
  for (std::size_t i = 0; i < ggml_backend_dev_count(); ++i) {
    ggml_backend_dev_t device = ggml_backend_dev_get(i);
    const auto type = ggml_backend_dev_type(device);
    if (type != GGML_BACKEND_DEVICE_TYPE_GPU && type != GGML_BACKEND_DEVICE_TYPE_IGPU) continue;
    std::size_t free = 0, total = 0;
    ggml_backend_dev_memory(device, &free, &total);
    found.push_back({.name = ggml_backend_dev_name(device),
                     .description = ggml_backend_dev_description(device),
                     .free_bytes = free,
                     .total_bytes = total});
  }
  return found;
}

std::string llama_release() {
  return CLAWBOT_LLAMA_RELEASE;
}

void Model::Deleter::operator()(llama_model* m) const noexcept {
  llama_model_free(m);
}

Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const ModelOptions& options) {
  ensure_backend();  // keeps whatever verbosity init_backend chose
  check_gguf_file(options.path);

  llama_model_params params = llama_model_default_params();
  params.vocab_only = options.vocab_only;
  params.n_gpu_layers = options.n_gpu_layers;
  if (options.show_progress && isatty(STDERR_FILENO)) {
    params.progress_callback = progress_bar;
  } else {
    params.progress_callback = [](float, void*) { return true; };  // silences libllama's dots
  }
  Model model;
  detail::LlamaErrorCapture errors;
  model.model_.reset(llama_model_load_from_file(options.path.c_str(), params));
  if (!model.model_) {
    std::string why = errors.take();
    throw ModelFileError("cannot load model '" + options.path + "'" + (why.empty() ? "" : ": " + why));
  }

  ModelInfo& info = model.info_;
  info.path = options.path;
  info.name = std::filesystem::path(options.path).stem().string();
  info.architecture = model.meta("general.architecture").value_or("unknown");
  char desc[256] = {};
  llama_model_desc(model.get(), desc, sizeof desc);
  info.description = desc;
  if (const char* tmpl = llama_model_chat_template(model.get(), nullptr)) info.chat_template = tmpl;
  info.n_ctx_train = llama_model_n_ctx_train(model.get());
  info.n_params = llama_model_n_params(model.get());
  info.size_bytes = llama_model_size(model.get());
  info.n_vocab = llama_vocab_n_tokens(model.vocab());
  info.n_layer = llama_model_n_layer(model.get());
  info.n_embd = llama_model_n_embd(model.get());
  const auto causal = model.meta(info.architecture + ".attention.causal");
  info.is_embedding = llama_model_has_encoder(model.get()) || (causal && *causal == "false") ||
                      model.meta(info.architecture + ".pooling_type").has_value();
  info.is_recurrent = llama_model_is_recurrent(model.get());
  info.is_hybrid = llama_model_is_hybrid(model.get());
  info.n_swa = llama_model_n_swa(model.get());
  for (llama_token t = 0; t < info.n_vocab; ++t) {
    if (llama_vocab_is_eog(model.vocab(), t)) info.end_of_generation.push_back(t);
  }
  if (const auto pooling = model.meta(info.architecture + ".pooling_type"))
    info.pooling = std::stoi(*pooling);
  info.is_reranker = info.pooling == LLAMA_POOLING_TYPE_RANK;
  info.n_cls_out = info.is_reranker ? static_cast<std::int32_t>(llama_model_n_cls_out(model.get())) : 0;
  return model;
}

std::optional<std::string> Model::meta(const std::string& key) const {
  const int32_t n = llama_model_meta_val_str(model_.get(), key.c_str(), nullptr, 0);
  if (n < 0) return std::nullopt;
  std::string value(static_cast<size_t>(n) + 1, '\0');
  llama_model_meta_val_str(model_.get(), key.c_str(), value.data(), value.size());
  value.resize(static_cast<size_t>(n));
  return value;
}

double Model::kv_bytes_per_cell(const std::string& kv_type) const {
  if (info_.is_recurrent && !info_.is_hybrid) return 0;
  const double element = kv_type == "q8_0" ? 34.0 / 32 : kv_type == "q4_0" ? 18.0 / 32 : 2.0;
  const int n_head = std::max(1, llama_model_n_head(model_.get()));
  const int n_head_kv = std::max(1, llama_model_n_head_kv(model_.get()));
  auto meta_int = [&](const char* suffix, int fallback) {
    const auto v = meta(info_.architecture + suffix);
    try {
      return v ? std::stoi(*v) : fallback;
    } catch (const std::exception&) {
      return fallback;
    }
  };
  const int key_length = meta_int(".attention.key_length", info_.n_embd / n_head);
  const int value_length = meta_int(".attention.value_length", key_length);
  return static_cast<double>(info_.n_layer) * n_head_kv * (key_length + value_length) * element;
}

const llama_vocab* Model::vocab() const noexcept {
  return llama_model_get_vocab(model_.get());
}

}  // namespace clawbot::engine
