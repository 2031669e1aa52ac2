// The tokens of one request through the gateway: reserved from its key's budget before it goes upstream,
// counted as its answer streams (a token per chunk that carries text, until the upstream's usage says
// exactly), and settled at the end to what was really used, whether the answer completed, failed midway or
// its client hung up before the last chunk (which carries the usage).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/door/door.h"
#include "gateway/request_facts.h"

namespace clawbot::gateway {

class TokenAccount {
 public:
  using Clock = std::chrono::steady_clock;
  // What a request without max_tokens reserves for its answer (it may use more: streams extend as they go).
  static constexpr std::int64_t default_reservation = 1024;
  // A stream past its reservation extends it by this many tokens at a time (one lock per 16 chunks).
  static constexpr std::int64_t extension_step = 16;
  // The prompt's tokens, estimated before the upstream counts them: one per this many bytes of body.
  static constexpr std::size_t bytes_per_prompt_token = 4;

  // The key and its token limit (0: none), at admission; without it the account only counts.
  void open(door::RateLimiter& limiter, std::string key_id, std::int64_t tokens_per_minute);
  // Reserves what the request may use: max_tokens (or default_reservation) per choice when it `generates`,
  // plus the prompt estimate; refused when the key has no room left.
  door::RateLimiter::Decision reserve(const RequestFacts& facts, std::size_t body_bytes, bool generates,
                                      Clock::time_point now);
  // One streamed event's data: counted; true when it is a usage-only chunk (no choices).
  bool on_event(std::string_view data);
  // A whole answer: its usage.
  void on_answer(std::string_view body);
  // The end (once): the reservation settles to the usage when the upstream reported it, else to the tokens
  // counted and, when some were, the prompt estimate.
  void settle(Clock::time_point now);

  // For the audit log and the metrics: the upstream's counts, or the generated tokens counted (the prompt's
  // then unknown: 0). A stream that reports usage before its text (Anthropic's message_start) and is cut off
  // before its last count is charged what came after the usage too.
  std::int64_t prompt_tokens() const noexcept { return usage_seen_ ? usage_prompt_ : 0; }
  std::int64_t completion_tokens() const noexcept {
    return usage_seen_ ? usage_completion_ + counted_since_usage_ : counted_;
  }

 private:
  door::RateLimiter* limiter_ = nullptr;
  std::string key_id_;
  std::int64_t limit_ = 0;
  std::int64_t reserved_ = 0;
  std::int64_t prompt_estimate_ = 0;
  std::int64_t counted_ = 0;
  std::int64_t counted_since_usage_ = 0;  // text events after the last usage the upstream reported
  bool usage_seen_ = false;
  std::int64_t usage_prompt_ = 0;
  std::int64_t usage_completion_ = 0;
  bool settled_ = false;
};

}  // namespace clawbot::gateway
