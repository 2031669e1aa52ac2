// The scheduler's engine on libllama: engine::Context, Model, Sampler and Tokenizer behind BatchEngine.
#include "server/batch_engine.h"
#include "server/scheduler.h"

namespace clawbot::server {
namespace {

class LlamaSampler final : public TokenSampler {
 public:
  LlamaSampler(const engine::SamplingParams& params, const engine::Model& model, engine::Context& context)
      : sampler_(params, model), context_(context), end_of_generation_(model.info().end_of_generation) {}

  engine::Token sample(int row, bool end_banned) override {
    return sampler_.sample(context_, row, end_banned ? end_of_generation_ : std::span<const engine::Token>());
  }

 private:
  engine::Sampler sampler_;
  engine::Context& context_;
  std::span<const engine::Token> end_of_generation_;
};

class LlamaBatchEngine final : public BatchEngine {
 public:
  LlamaBatchEngine(const engine::Model& model, engine::Context& context)
      : model_(model), context_(context), tokenizer_(model), batch_(context.n_batch()) {}

  int batch_capacity() const override { return static_cast<int>(batch_.capacity()); }
  int kv_cells() const override { return static_cast<int>(context_.n_ctx()); }
  int max_sequences() const override { return static_cast<int>(context_.n_seq_max()); }
  bool can_truncate_cache() const override { return model_.info().can_truncate_cache(); }

  engine::DecodeStatus decode(std::span<const BatchToken> tokens) override {
    batch_.clear();
    for (const auto& t : tokens) batch_.add(t.token, t.pos, t.seq, t.output);
    return context_.decode(batch_);
  }
  void clear() override { context_.clear(); }
  void seq_remove(int seq, int from, int to) override { context_.seq_remove(seq, from, to); }
  void seq_copy_prefix(int src, int dst, int length) override { context_.seq_copy_prefix(src, dst, length); }
  std::size_t seq_state_size(int seq) const override { return context_.seq_state_size(seq); }
  std::size_t seq_state_save(int seq, std::span<std::uint8_t> out) const override {
    return context_.seq_state_save(seq, out);
  }
  bool seq_state_restore(int seq, std::span<const std::uint8_t> state) override {
    return context_.seq_state_restore(seq, state);
  }
  std::span<const float> seq_embedding(int seq) const override {
    const float* v = context_.seq_embedding(seq);
    if (!v) return {};
    // a reranker's pooled output is its n_cls_out scores
    const auto& info = model_.info();
    return {v, static_cast<std::size_t>(info.is_reranker ? info.n_cls_out : info.n_embd)};
  }

  std::unique_ptr<TokenSampler> sampler(const engine::SamplingParams& params) override {
    return std::make_unique<LlamaSampler>(params, model_, context_);
  }
  std::string piece(engine::Token token) const override { return tokenizer_.piece(token); }
  std::string special_piece(engine::Token token) const override { return tokenizer_.piece(token, true); }
  bool is_end_of_generation(engine::Token token) const override {
    return tokenizer_.is_end_of_generation(token);
  }

 private:
  const engine::Model& model_;
  engine::Context& context_;
  engine::Tokenizer tokenizer_;
  engine::Batch batch_;
};

}  // namespace

std::unique_ptr<BatchEngine> make_llama_batch_engine(const engine::Model& model, engine::Context& context) {
  return std::make_unique<LlamaBatchEngine>(model, context);
}

Scheduler::Scheduler(const engine::Model& model, engine::Context& context, SchedulerOptions options)
    : Scheduler(make_llama_batch_engine(model, context), std::move(options)) {}

}  // namespace clawbot::server
