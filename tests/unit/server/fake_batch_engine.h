// A BatchEngine without a model, for the scheduler's unit tests: it records every step's tokens, keeps each
// sequence's cache as the list of tokens it holds (checking that positions follow on), and "predicts" tokens
// by a rule the test sets. Tokens 1..26 spell 'a'..'z'; token 0 ends a generation.
#pragma once

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/batch_engine.h"

namespace clawbot::server::fake {

inline constexpr engine::Token end_token = 0;

// Token of letter 'a'..'z', and the text of tokens.
inline engine::Token tok(char letter) {
  return static_cast<engine::Token>(letter - 'a' + 1);
}
inline std::vector<engine::Token> toks(std::string_view letters) {
  std::vector<engine::Token> out;
  for (const char c : letters) out.push_back(tok(c));
  return out;
}

// What the test reads and steers; shared with the engine the scheduler owns.
struct FakeEngineState {
  int batch_capacity = 64;
  int kv_cells = 4096;
  int max_sequences = 4;
  bool can_truncate = true;
  // The token that follows `last` (the token at the sampled row); default: the next letter, 'z' then 'a'.
  std::function<engine::Token(engine::Token last)> next = [](engine::Token last) {
    return static_cast<engine::Token>(last % 26 + 1);
  };
  engine::DecodeStatus fail_next_decode = engine::DecodeStatus::ok;  // returned once by the next decode

  std::vector<std::vector<BatchToken>> steps;       // every decode's batch, in order
  std::map<int, std::vector<engine::Token>> cells;  // what each sequence's cache holds, position by position
  int position_errors = 0;  // tokens decoded at a position other than the end of their sequence
  int unsampled_rows = 0;   // sample() from a row whose logits were not asked for
  struct Copy {
    int src, dst, length;
  };
  std::vector<Copy> copies;
  int saves = 0;
  int restores = 0;
  int clears = 0;
  mutable std::map<int, std::vector<float>> embeddings;

  // The tokens of sequence `seq` in step `step`.
  std::vector<engine::Token> tokens_of(std::size_t step, int seq) const {
    std::vector<engine::Token> out;
    for (const auto& t : steps.at(step)) {
      if (t.seq == seq) out.push_back(t.token);
    }
    return out;
  }
};

// Grammars as the fake sees them: "refused" fails to parse (the sampler is never made), "dead after N" lets
// N tokens through and then allows none; the real engine throws engine::GrammarError for both.
class FakeSampler final : public TokenSampler {
 public:
  FakeSampler(std::shared_ptr<FakeEngineState> state, const engine::SamplingParams& params)
      : state_(std::move(state)) {
    if (params.grammar == "refused") throw engine::GrammarError("'grammar' is not a valid GBNF grammar");
    if (params.grammar.starts_with("dead after ")) dead_after_ = std::stoi(params.grammar.substr(11));
  }
  engine::Token sample(int row, bool end_banned) override {
    if (dead_after_ >= 0 && drawn_++ == dead_after_)
      throw engine::GrammarError("the grammar allows no next token");
    const auto& batch = state_->steps.back();
    const auto& at = batch.at(static_cast<std::size_t>(row));
    if (!at.output) ++state_->unsampled_rows;
    const engine::Token next = state_->next(at.token);
    if (next == end_token && end_banned) return static_cast<engine::Token>(at.token % 26 + 1);
    return next;
  }

 private:
  std::shared_ptr<FakeEngineState> state_;
  int dead_after_ = -1;
  int drawn_ = 0;
};

class FakeBatchEngine final : public BatchEngine {
 public:
  explicit FakeBatchEngine(std::shared_ptr<FakeEngineState> state) : state_(std::move(state)) {}

  int batch_capacity() const override { return state_->batch_capacity; }
  int kv_cells() const override { return state_->kv_cells; }
  int max_sequences() const override { return state_->max_sequences; }
  bool can_truncate_cache() const override { return state_->can_truncate; }

  engine::DecodeStatus decode(std::span<const BatchToken> batch) override {
    state_->steps.emplace_back(batch.begin(), batch.end());
    if (const auto fail = std::exchange(state_->fail_next_decode, engine::DecodeStatus::ok);
        fail != engine::DecodeStatus::ok) {
      return fail;
    }
    std::size_t used = batch.size();
    for (const auto& [seq, tokens] : state_->cells) used += tokens.size();
    if (used > static_cast<std::size_t>(state_->kv_cells)) return engine::DecodeStatus::no_kv_slot;
    for (const auto& t : batch) {
      auto& cells = state_->cells[t.seq];
      if (static_cast<std::size_t>(t.pos) != cells.size()) ++state_->position_errors;
      cells.resize(static_cast<std::size_t>(t.pos));
      cells.push_back(t.token);
    }
    return engine::DecodeStatus::ok;
  }
  void clear() override {
    state_->cells.clear();
    ++state_->clears;
  }
  void seq_remove(int seq, int from, int to) override {
    auto& cells = state_->cells[seq];
    const auto end = to < 0 ? cells.size() : std::min(cells.size(), static_cast<std::size_t>(to));
    const auto begin = std::min(static_cast<std::size_t>(from), end);
    cells.erase(cells.begin() + static_cast<std::ptrdiff_t>(begin),
                cells.begin() + static_cast<std::ptrdiff_t>(end));
  }
  void seq_copy_prefix(int src, int dst, int length) override {
    const auto& from = state_->cells[src];
    state_->cells[dst].assign(from.begin(), from.begin() + length);
    state_->copies.push_back({src, dst, length});
  }
  // A saved state: the token count, then the tokens.
  std::size_t seq_state_size(int seq) const override {
    return (state_->cells[seq].size() + 1) * sizeof(engine::Token);
  }
  std::size_t seq_state_save(int seq, std::span<std::uint8_t> out) const override {
    const auto& cells = state_->cells[seq];
    const auto count = static_cast<engine::Token>(cells.size());
    if (out.size() < seq_state_size(seq)) return 0;
    std::memcpy(out.data(), &count, sizeof count);
    std::memcpy(out.data() + sizeof count, cells.data(), cells.size() * sizeof(engine::Token));
    ++state_->saves;
    return seq_state_size(seq);
  }
  bool seq_state_restore(int seq, std::span<const std::uint8_t> state) override {
    engine::Token count = 0;
    if (state.size() < sizeof count) return false;
    std::memcpy(&count, state.data(), sizeof count);
    if (state.size() != (static_cast<std::size_t>(count) + 1) * sizeof(engine::Token)) return false;
    auto& cells = state_->cells[seq];
    cells.resize(static_cast<std::size_t>(count));
    std::memcpy(cells.data(), state.data() + sizeof count, cells.size() * sizeof(engine::Token));
    ++state_->restores;
    return true;
  }
  // {number of tokens, sum of tokens}: tells inputs apart, and its norm is not 1.
  std::span<const float> seq_embedding(int seq) const override {
    const auto& cells = state_->cells[seq];
    if (cells.empty()) return {};
    float sum = 0;
    for (const auto t : cells) sum += static_cast<float>(t);
    auto& v = state_->embeddings[seq];
    v = {static_cast<float>(cells.size()), sum};
    return v;
  }

  std::unique_ptr<TokenSampler> sampler(const engine::SamplingParams& params) override {
    return std::make_unique<FakeSampler>(state_, params);
  }
  std::string piece(engine::Token token) const override {
    if (token < 1 || token > 26) return {};
    return std::string(1, static_cast<char>('a' + token - 1));
  }
  bool is_end_of_generation(engine::Token token) const override { return token == end_token; }

 private:
  std::shared_ptr<FakeEngineState> state_;
};

}  // namespace clawbot::server::fake
