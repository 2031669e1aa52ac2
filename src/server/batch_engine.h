// The engine as the scheduler sees it: decode a batch of tokens of several sequences, cut, copy, save and
// restore a sequence's cache, sample the next token of a batch row, and the token facts the scheduler needs.
// Exactly what Scheduler calls, so that its rules can be tested against a fake (tests/unit/server) as well as
// run on libllama (llama_batch_engine.cpp). Nothing of ggml or libllama shows here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "engine/engine.h"

namespace clawbot::server {

// One token of a step: its position in sequence `seq`; `output`: its logits (or embedding) are wanted.
struct BatchToken {
  engine::Token token = 0;
  int pos = 0;
  int seq = 0;
  bool output = false;
};

// One request's sampling state (penalties see the tokens it drew).
class TokenSampler {
 public:
  virtual ~TokenSampler() = default;
  // Draws from the logits of row `row` of the last decoded batch and accepts the token; with
  // `end_banned` no end-of-generation token is drawn (min_tokens).
  virtual engine::Token sample(int row, bool end_banned) = 0;
};

class BatchEngine {
 public:
  virtual ~BatchEngine() = default;

  virtual int batch_capacity() const = 0;  // tokens one decode takes at most
  virtual int kv_cells() const = 0;        // KV cells in all
  virtual int max_sequences() const = 0;   // sequences one decode may hold (embeddings)
  // Whether a sequence's cache can be cut back to any earlier position (plain attention; not recurrent,
  // hybrid or sliding-window models).
  virtual bool can_truncate_cache() const = 0;

  virtual engine::DecodeStatus decode(std::span<const BatchToken> batch) = 0;
  virtual void clear() = 0;  // forget every sequence
  // Positions [from, to) of a sequence (to < 0: to the end).
  virtual void seq_remove(int seq, int from, int to) = 0;
  // Makes dst hold src's first `length` positions.
  virtual void seq_copy_prefix(int src, int dst, int length) = 0;
  virtual std::size_t seq_state_size(int seq) const = 0;
  // Bytes written (0: failed).
  virtual std::size_t seq_state_save(int seq, std::span<std::uint8_t> out) const = 0;
  virtual bool seq_state_restore(int seq, std::span<const std::uint8_t> state) = 0;
  // The pooled embedding of a sequence after decode; empty when there is none.
  virtual std::span<const float> seq_embedding(int seq) const = 0;

  virtual std::unique_ptr<TokenSampler> sampler(const engine::SamplingParams& params) = 0;
  virtual std::string piece(engine::Token token) const = 0;  // its text, as generated output shows it
  // Its text even when it is a control token (a chat format's <tool_call> or <think> in a vocabulary that
  // marks them so), which piece() leaves out.
  virtual std::string special_piece(engine::Token token) const { return piece(token); }
  virtual bool is_end_of_generation(engine::Token token) const = 0;
};

// The libllama side (llama_batch_engine.cpp): both must outlive the engine.
std::unique_ptr<BatchEngine> make_llama_batch_engine(const engine::Model& model, engine::Context& context);

}  // namespace clawbot::server
