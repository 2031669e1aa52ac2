#include <array>
#include <cmath>
#include <string>

#include <llama.h>

#include "engine/engine.h"

namespace clawbot::engine {
namespace {

// The index of the first largest value. Sixteen independent running maxima compile to vector max
// instructions (a tenth of std::max_element's time over a 49K-token vocabulary at -O2); a second pass finds
// the first index holding the maximum, as llama.cpp's greedy sampler picks among equals.
Token first_argmax(const float* values, std::int32_t n) {
  constexpr std::int32_t lanes = 16;
  std::array<float, lanes> lane;
  lane.fill(-INFINITY);
  std::int32_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    for (std::int32_t l = 0; l < lanes; ++l) lane[l] = values[i + l] > lane[l] ? values[i + l] : lane[l];
  }
  float best = -INFINITY;
  for (const float v : lane) best = v > best ? v : best;
  for (; i < n; ++i) best = values[i] > best ? values[i] : best;
  for (std::int32_t j = 0; j < n; ++j) {
    if (values[j] == best) return j;
  }
  return 0;  // all -inf or NaN: llama.cpp's greedy keeps the first candidate too
}

}  // namespace

void Sampler::Deleter::operator()(llama_sampler* s) const noexcept {
  llama_sampler_free(s);
}

Sampler::Sampler(const SamplingParams& p, const Model& model) {
  llama_sampler_chain_params chain_params = llama_sampler_chain_default_params();
  chain_params.no_perf = true;
  chain_.reset(llama_sampler_chain_init(chain_params));
  if (!chain_) throw EngineError("cannot create the sampler chain");
  llama_sampler* chain = chain_.get();
  // Order as llama.cpp's common sampling: penalties, then truncation, then temperature, then the draw.
  const bool penalties =
      p.repeat_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
  if (penalties) {
    llama_sampler_chain_add(
        chain, llama_sampler_init_penalties(model.info().n_vocab, p.repeat_last_n, p.repeat_penalty,
                                            p.frequency_penalty, p.presence_penalty));
  }
  n_vocab_ = model.info().n_vocab;
  if (p.ignore_eos) never_ = model.info().end_of_generation;
  if (p.temperature <= 0.0f) {
    llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    plain_greedy_ = !penalties;
    return;
  }
  if (p.top_k > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(p.top_k));
  if (p.top_p < 1.0f) llama_sampler_chain_add(chain, llama_sampler_init_top_p(p.top_p, 1));
  if (p.min_p > 0.0f) llama_sampler_chain_add(chain, llama_sampler_init_min_p(p.min_p, 1));
  llama_sampler_chain_add(chain, llama_sampler_init_temp(p.temperature));
  llama_sampler_chain_add(chain, llama_sampler_init_dist(p.seed));
}

Sampler::Sampler(Sampler&&) noexcept = default;
Sampler& Sampler::operator=(Sampler&&) noexcept = default;
Sampler::~Sampler() = default;

Token Sampler::sample(Context& context, int row, std::span<const Token> banned) {
  if (plain_greedy_ || !banned.empty() || !never_.empty()) {
    // The chain reads this row of logits: a banned token's logit of -inf gives it no probability, whatever
    // the samplers are.
    float* logits = llama_get_logits_ith(context.get(), row);
    if (!logits) throw EngineError("no logits for batch row " + std::to_string(row));
    for (const Token t : banned) logits[t] = -INFINITY;
    for (const Token t : never_) logits[t] = -INFINITY;
    if (plain_greedy_) return first_argmax(logits, n_vocab_);
  }
  // llama_sampler_sample also accepts the token into the chain (penalties see it).
  return llama_sampler_sample(chain_.get(), context.get(), row);
}

}  // namespace clawbot::engine
