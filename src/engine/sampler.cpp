#include <algorithm>
#include <array>
#include <cmath>
#include <regex>
#include <string>

#include <llama.h>

#include "engine/engine.h"
#include "engine/llama_log.h"

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

// How many of the best tokens a greedy pick whose first choice the grammar refuses checks before it applies
// the grammar to the whole vocabulary (most of a grammar step's time: every token's text is matched).
constexpr std::size_t greedy_shortlist = 64;

void check_triggers(const SamplingParams& p, std::int32_t n_vocab) {
  if (!p.grammar_lazy) return;
  if (p.grammar_trigger_patterns.empty() && p.grammar_trigger_tokens.empty()) {
    throw GrammarError("a lazy grammar needs a trigger (a pattern or a token); none was given");
  }
  for (std::size_t i = 0; i < p.grammar_trigger_patterns.size(); ++i) {
    try {
      const std::regex compiled(p.grammar_trigger_patterns[i]);
    } catch (const std::regex_error& e) {
      throw GrammarError(
          "grammar trigger pattern " + std::to_string(i) + " is not a valid regex: " + e.what(),
          "grammar_trigger_patterns");
    }
  }
  for (const Token t : p.grammar_trigger_tokens) {
    if (t < 0 || t >= n_vocab) {
      throw GrammarError("grammar trigger token " + std::to_string(t) + " is not in the vocabulary (0.." +
                             std::to_string(n_vocab - 1) + ")",
                         "grammar_trigger_tokens");
    }
  }
}

// libllama's grammar sampler for p.grammar (lazy: with its triggers); throws GrammarError.
llama_sampler* make_grammar(const Model& model, const SamplingParams& p) {
  check_triggers(p, model.info().n_vocab);
  std::vector<const char*> patterns;
  for (const auto& pattern : p.grammar_trigger_patterns) patterns.push_back(pattern.c_str());
  detail::LlamaErrorCapture errors;
  llama_sampler* grammar = nullptr;
  try {
    grammar = p.grammar_lazy ? llama_sampler_init_grammar_lazy_patterns(
                                   model.vocab(), p.grammar.c_str(), "root", patterns.data(), patterns.size(),
                                   p.grammar_trigger_tokens.data(), p.grammar_trigger_tokens.size())
                             : llama_sampler_init_grammar(model.vocab(), p.grammar.c_str(), "root");
  } catch (const std::exception& e) {  // libllama's C++ inside lets some errors through
    throw GrammarError(std::string("'grammar' cannot be used: ") + e.what());
  }
  if (!grammar) {
    std::string why = errors.take();
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    throw GrammarError("'grammar' is not a valid GBNF grammar" + (why.empty() ? "" : ": " + why) +
                       " (its start rule must be named 'root')");
  }
  return grammar;
}

}  // namespace

void check_grammar(const Model& model, const SamplingParams& params) {
  if (params.grammar.empty()) return;
  llama_sampler_free(make_grammar(model, params));
}

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
  end_of_generation_ = model.info().end_of_generation;
  if (p.ignore_eos) never_ = model.info().end_of_generation;
  if (!p.grammar.empty()) grammar_.reset(make_grammar(model, p));
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
  if (grammar_ || plain_greedy_ || !banned.empty() || !never_.empty()) {
    // The chain reads this row of logits: a banned token's logit of -inf gives it no probability, whatever
    // the samplers are.
    float* logits = llama_get_logits_ith(context.get(), row);
    if (!logits) throw EngineError("no logits for batch row " + std::to_string(row));
    for (const Token t : banned) logits[t] = -INFINITY;
    for (const Token t : never_) logits[t] = -INFINITY;
    if (grammar_) return sample_with_grammar(logits);
    if (plain_greedy_) return first_argmax(logits, n_vocab_);
  }
  // llama_sampler_sample also accepts the token into the chain (penalties see it).
  return llama_sampler_sample(chain_.get(), context.get(), row);
}

// As llama.cpp's common_sampler: the chain draws from the unconstrained logits, and only when the grammar
// refuses that token is the grammar applied to every candidate (the costly part) and the draw repeated.
Token Sampler::sample_with_grammar(const float* logits) {
  Token token = plain_greedy_ ? first_argmax(logits, n_vocab_) : draw(logits, false);
  if (!grammar_allows(token)) token = plain_greedy_ ? greedy_allowed(logits) : draw(logits, true);
  try {
    llama_sampler_accept(grammar_.get(), token);
  } catch (const std::exception& e) {
    throw GrammarError("the grammar cannot continue after " + std::to_string(generated_) +
                       " tokens: " + e.what());
  }
  if (!plain_greedy_) llama_sampler_accept(chain_.get(), token);
  ++generated_;
  return token;
}

bool Sampler::grammar_allows(Token token) {
  llama_token_data one{token, 1.0f, 0.0f};
  llama_token_data_array single{&one, 1, -1, false};
  llama_sampler_apply(grammar_.get(), &single);
  return one.logit != -INFINITY;
}

void Sampler::fill_candidates(const float* logits) {
  candidates_.resize(static_cast<std::size_t>(n_vocab_));
  for (Token t = 0; t < n_vocab_; ++t) candidates_[static_cast<std::size_t>(t)] = {t, logits[t], 0.0f};
}

Token Sampler::draw(const float* logits, bool constrained) {
  fill_candidates(logits);
  llama_token_data_array all{candidates_.data(), candidates_.size(), -1, false};
  if (constrained) {
    llama_sampler_apply(grammar_.get(), &all);
    const bool any = std::any_of(candidates_.begin(), candidates_.end(),
                                 [](const llama_token_data& c) { return c.logit != -INFINITY; });
    if (!any) return end_if_complete();
  }
  llama_sampler_apply(chain_.get(), &all);
  if (all.selected < 0 || static_cast<std::size_t>(all.selected) >= all.size) {
    throw EngineError("the sampler chain selected no token");
  }
  return all.data[all.selected].id;
}

// Greedy under a grammar picks the best token the grammar allows: the best few are checked first (one
// grammar pass over a handful of tokens), and only when the grammar refuses them all the whole vocabulary.
// Equal logits go to the lower id, as the greedy chain picks.
Token Sampler::greedy_allowed(const float* logits) {
  fill_candidates(logits);
  const auto better = [](const llama_token_data& a, const llama_token_data& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  const std::size_t few = std::min(greedy_shortlist, candidates_.size());
  std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(few),
                    candidates_.end(), better);
  llama_token_data_array best{candidates_.data(), few, -1, true};
  llama_sampler_apply(grammar_.get(), &best);
  for (std::size_t i = 0; i < few; ++i) {
    if (candidates_[i].logit != -INFINITY) return candidates_[i].id;
  }
  fill_candidates(logits);
  llama_token_data_array all{candidates_.data(), candidates_.size(), -1, false};
  llama_sampler_apply(grammar_.get(), &all);
  const llama_token_data* pick = nullptr;
  for (const auto& c : candidates_) {
    if (c.logit != -INFINITY && (!pick || c.logit > pick->logit)) pick = &c;
  }
  return pick ? pick->id : end_if_complete();
}

// Every token refused: a complete grammar still allows the end of generation even where it is banned
// (min_tokens, ignore_eos), and the answer ends there; otherwise the grammar cannot go on.
Token Sampler::end_if_complete() {
  for (const Token t : end_of_generation_) {
    if (grammar_allows(t)) return t;
  }
  throw GrammarError("the grammar allows no next token after " + std::to_string(generated_) +
                     " tokens (no token of this model's vocabulary continues it)");
}

}  // namespace clawbot::engine
