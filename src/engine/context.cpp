#include <algorithm>
#include <thread>

#include <ggml-cpu.h>
#include <llama.h>

#include "engine/engine.h"
#include "engine/llama_log.h"

namespace clawbot::engine {
namespace {

ggml_type kv_ggml_type(const std::string& name) {
  if (name == "f16") return GGML_TYPE_F16;
  if (name == "q8_0") return GGML_TYPE_Q8_0;
  if (name == "q4_0") return GGML_TYPE_Q4_0;
  throw EngineError("unknown KV cache type '" + name + "'; use f16, q8_0 or q4_0");
}

}  // namespace

// ---------------------------------------------------------------- Batch

Batch::Batch(std::uint32_t capacity)
    : batch_(std::make_unique<llama_batch>(llama_batch_init(static_cast<int32_t>(capacity), 0, 1))),
      capacity_(capacity) {}

Batch::~Batch() {
  if (batch_) llama_batch_free(*batch_);
}

int Batch::add(Token token, int pos, int seq, bool output) {
  if (batch_->n_tokens >= static_cast<int32_t>(capacity_)) throw EngineError("batch is full");
  const int row = batch_->n_tokens++;
  batch_->token[row] = token;
  batch_->pos[row] = pos;
  batch_->n_seq_id[row] = 1;
  batch_->seq_id[row][0] = seq;
  batch_->logits[row] = output;
  return row;
}

void Batch::clear() noexcept { batch_->n_tokens = 0; }
int Batch::size() const noexcept { return batch_->n_tokens; }

// ---------------------------------------------------------------- Context

void Context::Deleter::operator()(llama_context* c) const noexcept { llama_free(c); }
void Context::ThreadpoolDeleter::operator()(ggml_threadpool* t) const noexcept { ggml_threadpool_free(t); }

Context::Context(const Model& model, const ContextOptions& options) {
  llama_context_params params = llama_context_default_params();
  params.n_ctx = options.n_ctx;
  params.n_batch = options.n_batch;
  params.n_ubatch = std::min(options.n_batch, 512u);
  params.n_seq_max = std::max(1u, options.n_seq_max);
  params.kv_unified = options.kv_unified;
  const int threads = options.n_threads > 0 ? options.n_threads
                                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  params.n_threads = threads;
  params.n_threads_batch = threads;
  params.no_perf = true;
  params.embeddings = options.embeddings;
  switch (options.flash_attn) {
    case FlashAttention::automatic: params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO; break;
    case FlashAttention::on: params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED; break;
    case FlashAttention::off: params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED; break;
  }
  params.type_k = kv_ggml_type(options.kv_type);
  params.type_v = params.type_k;
  if (params.type_v != GGML_TYPE_F16 && options.flash_attn == FlashAttention::off) {
    throw EngineError("--kv-type " + options.kv_type +
                      " needs FlashAttention for the value cache; use --flash-attn on or auto, or --kv-type f16");
  }
  detail::LlamaErrorCapture errors;
  context_.reset(llama_init_from_model(model.get(), params));
  if (!context_) {
    const std::string why = errors.take();
    throw EngineError("cannot create a context of " + std::to_string(options.n_ctx) + " tokens for model '" +
                      model.info().name + "'" +
                      (why.empty() ? " (not enough memory? try a smaller --ctx or --parallel, or --kv-type q8_0)"
                                   : ": " + why));
  }
  // One persistent pool whose threads poll between steps, instead of ggml's pool made anew for each graph:
  // a decode step is a few milliseconds, and waking threads costs a visible part of that.
  ggml_threadpool_params pool_params = ggml_threadpool_params_default(threads);
  threadpool_.reset(ggml_threadpool_new(&pool_params));
  if (threadpool_) llama_attach_threadpool(context_.get(), threadpool_.get(), nullptr);
  n_ctx_ = llama_n_ctx(context_.get());
  n_batch_ = llama_n_batch(context_.get());
  n_seq_max_ = llama_n_seq_max(context_.get());
  kv_unified_ = options.kv_unified;
}

Context::Context(Context&&) noexcept = default;
Context& Context::operator=(Context&&) noexcept = default;
Context::~Context() = default;

void Context::clear() { llama_memory_clear(llama_get_memory(context_.get()), true); }

DecodeStatus Context::decode(std::span<const Token> tokens, int start_pos) {
  Batch batch(n_batch_);
  for (size_t begin = 0; begin < tokens.size(); begin += n_batch_) {
    const size_t end = std::min(tokens.size(), begin + n_batch_);
    batch.clear();
    for (size_t i = begin; i < end; ++i) {
      batch.add(tokens[i], start_pos + static_cast<int>(i), 0, i + 1 == tokens.size());
    }
    const auto status = decode(batch);
    if (status != DecodeStatus::ok) return status;
  }
  return DecodeStatus::ok;
}

DecodeStatus Context::decode(Batch& batch) {
  const int32_t rc = llama_decode(context_.get(), batch.get());
  if (rc == 0) return DecodeStatus::ok;
  if (rc == 1) return DecodeStatus::no_kv_slot;
  if (rc == 2) return DecodeStatus::aborted;
  return DecodeStatus::failed;
}

bool Context::seq_remove(int seq, int p0, int p1) {
  return llama_memory_seq_rm(llama_get_memory(context_.get()), seq, p0, p1);
}

void Context::seq_copy_prefix(int src, int dst, int length) {
  llama_memory_t memory = llama_get_memory(context_.get());
  llama_memory_seq_rm(memory, dst, -1, -1);
  if (kv_unified_) {
    llama_memory_seq_cp(memory, src, dst, 0, length);  // the cells are shared, nothing is copied
  } else {
    // Across streams libllama copies whole streams only: copy, then cut back.
    llama_memory_seq_cp(memory, src, dst, -1, -1);
    llama_memory_seq_rm(memory, dst, length, -1);
  }
}

int Context::seq_pos_max(int seq) const { return llama_memory_seq_pos_max(llama_get_memory(context_.get()), seq); }

std::size_t Context::seq_state_size(int seq) const { return llama_state_seq_get_size(context_.get(), seq); }

std::size_t Context::seq_state_save(int seq, std::span<std::uint8_t> out) const {
  return llama_state_seq_get_data(context_.get(), out.data(), out.size(), seq);
}

bool Context::seq_state_restore(int seq, std::span<const std::uint8_t> data) {
  return llama_state_seq_set_data(context_.get(), data.data(), data.size(), seq) == data.size();
}

const float* Context::seq_embedding(int seq) const { return llama_get_embeddings_seq(context_.get(), seq); }

}  // namespace clawbot::engine
