// The cold tier: saved sequence states in host RAM, keyed by the tokens they hold, in one preallocated arena.
// Entries are written in a ring; the oldest are evicted first, and a restored entry leaves the store (its
// slot holds it now, and saves it again when the slot is reused), so the ring order is least-recently-used.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace clawbot::server {

// Length of the common prefix of two token sequences.
std::size_t common_prefix(std::span<const engine::Token> a, std::span<const engine::Token> b);

// How far a cached token sequence and a prompt spell the same text, though tokenized differently: a model's
// answer comes back in the next turn as text, and re-tokenizing it often gives other tokens than the ones the
// model generated, which would end a token-by-token match at the start of the answer. cached[0, cached) and
// prompt[0, prompt) are the longest prefixes that spell the same text with their token boundaries meeting;
// tokens that show no text (control tokens) match only themselves.
struct TextAlignment {
  std::size_t cached = 0;
  std::size_t prompt = 0;
};
using PieceOf = std::function<std::string(engine::Token)>;
TextAlignment align_by_text(std::span<const engine::Token> cached, std::span<const engine::Token> prompt,
                            const PieceOf& piece);

class ColdCache {
 public:
  explicit ColdCache(std::size_t capacity_bytes);

  struct Match {
    std::uint64_t id = 0;
    std::size_t length = 0;  // tokens of the prompt the entry covers
  };
  // The entry sharing the longest prefix with `tokens`. exact_only: the entry's whole token list must be a
  // prefix of `tokens` (states that cannot be cut back, such as recurrent ones).
  std::optional<Match> find(std::span<const engine::Token> tokens, bool exact_only) const;

  // Reserves room for a state of `size` bytes for `tokens`, evicting the oldest entries; the caller writes
  // the state into the returned span. Empty span: it does not fit at all.
  std::span<std::uint8_t> insert(std::vector<engine::Token> tokens, std::size_t size);
  void shrink_last(std::size_t used);  // the state turned out smaller than reserved
  void erase_last();                   // the write failed

  const std::vector<engine::Token>& tokens(std::uint64_t id) const;
  std::span<const std::uint8_t> state(std::uint64_t id) const;
  void erase(std::uint64_t id);
  // Whether entry `id` is still held: an insert evicts whatever its bytes overlap, a Match found before too.
  bool contains(std::uint64_t id) const { return entry(id) != nullptr; }
  bool contains_exact(std::span<const engine::Token> tokens) const;

  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t bytes_used() const noexcept { return used_; }
  std::size_t entries() const noexcept { return entries_.size(); }
  std::uint64_t evictions() const noexcept { return evictions_; }

 private:
  struct Entry {
    std::uint64_t id;
    std::vector<engine::Token> tokens;
    std::size_t offset;
    std::size_t size;
  };
  const Entry* entry(std::uint64_t id) const;

  std::size_t capacity_;
  std::unique_ptr<std::uint8_t[]> arena_;  // untouched pages cost no RAM until written
  std::size_t head_ = 0;                   // where the next state is written
  std::list<Entry> entries_;               // oldest first
  std::size_t used_ = 0;
  std::uint64_t next_id_ = 1;
  std::uint64_t evictions_ = 0;
};

}  // namespace clawbot::server
