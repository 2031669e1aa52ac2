#include <algorithm>
#include <thread>

#include <llama.h>

#include "engine/engine.h"

namespace clawbot::engine {

void Context::Deleter::operator()(llama_context* c) const noexcept {
  llama_free(c);
}

Context::Context(const Model& model, const ContextOptions& options) {
  llama_context_params params = llama_context_default_params();
  params.n_ctx = options.n_ctx;
  params.n_batch = options.n_batch;
  params.n_ubatch = std::min(options.n_batch, 512u);
  params.n_seq_max = 1;
  const int threads = options.n_threads > 0
                          ? options.n_threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  params.n_threads = threads;
  params.n_threads_batch = threads;
  params.no_perf = true;
  context_.reset(llama_init_from_model(model.get(), params));
  if (!context_) {
    throw EngineError("cannot create a context of " + std::to_string(options.n_ctx) + " tokens for model '" +
                      model.info().name + "' (not enough memory? try a smaller --ctx)");
  }
  n_ctx_ = llama_n_ctx(context_.get());
  n_batch_ = llama_n_batch(context_.get());
}

Context::Context(Context&&) noexcept = default;
Context& Context::operator=(Context&&) noexcept = default;
Context::~Context() = default;

void Context::clear() {
  llama_memory_clear(llama_get_memory(context_.get()), true);
}

DecodeStatus Context::decode(std::span<const Token> tokens, int start_pos) {
  llama_batch batch = llama_batch_init(static_cast<int32_t>(n_batch_), 0, 1);
  struct BatchGuard {
    llama_batch& b;
    ~BatchGuard() { llama_batch_free(b); }
  } guard{batch};
  for (size_t begin = 0; begin < tokens.size(); begin += n_batch_) {
    const size_t end = std::min(tokens.size(), begin + n_batch_);
    batch.n_tokens = 0;
    for (size_t i = begin; i < end; ++i) {
      const auto k = batch.n_tokens++;
      batch.token[k] = tokens[i];
      batch.pos[k] = start_pos + static_cast<int>(i);
      batch.n_seq_id[k] = 1;
      batch.seq_id[k][0] = 0;
      batch.logits[k] = (i + 1 == tokens.size());
    }
    const int32_t rc = llama_decode(context_.get(), batch);
    if (rc == 1) return DecodeStatus::no_kv_slot;
    if (rc == 2) return DecodeStatus::aborted;
    if (rc != 0) return DecodeStatus::failed;
  }
  return DecodeStatus::ok;
}

}  // namespace clawbot::engine
