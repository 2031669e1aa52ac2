#include "gateway/token_account.h"

#include <algorithm>
#include <cctype>

namespace clawbot::gateway {

namespace {

// A chunk with no choices, or "choices": [] (the usage chunk of a stream that asked for it).
bool without_choices(std::string_view chunk) {
  constexpr std::string_view key = "\"choices\"";
  for (std::size_t at = chunk.find(key); at != std::string_view::npos; at = chunk.find(key, at + 1)) {
    std::size_t i = at + key.size();
    auto skip = [&] {
      while (i < chunk.size() && std::isspace(static_cast<unsigned char>(chunk[i]))) ++i;
    };
    skip();
    if (i >= chunk.size() || chunk[i] != ':') continue;
    ++i;
    skip();
    if (i >= chunk.size() || chunk[i] != '[') return false;
    ++i;
    skip();
    return i < chunk.size() && chunk[i] == ']';
  }
  return true;
}

}  // namespace

void TokenAccount::open(door::RateLimiter& limiter, std::string key_id, std::int64_t tokens_per_minute) {
  limiter_ = &limiter;
  key_id_ = std::move(key_id);
  limit_ = tokens_per_minute;
}

door::RateLimiter::Decision TokenAccount::reserve(const RequestFacts& facts, std::size_t body_bytes,
                                                  bool generates, Clock::time_point now) {
  prompt_estimate_ = static_cast<std::int64_t>(body_bytes / bytes_per_prompt_token) + 1;
  if (!limiter_ || limit_ <= 0) return {};
  std::int64_t wanted = prompt_estimate_;
  if (generates) {
    const std::int64_t per_choice = facts.max_tokens > 0 ? facts.max_tokens : default_reservation;
    // (Bounded: max_tokens may be any 63-bit number, choices at most 128.)
    wanted += std::min<std::int64_t>(per_choice, std::int64_t{1} << 40) * facts.choices;
  }
  auto decision = limiter_->reserve(key_id_, limit_, wanted, now);
  reserved_ = decision.reserved;
  return decision;
}

bool TokenAccount::on_event(std::string_view data) {
  if (data == "[DONE]") return false;
  if (find_usage(data, usage_prompt_, usage_completion_)) {
    usage_seen_ = true;
    counted_since_usage_ = 0;
    return without_choices(data);
  }
  if (!carries_generated_text(data)) return false;
  ++counted_;
  ++counted_since_usage_;
  // Past the reservation: the key's running total grows now, so that its other requests see it.
  if (limiter_ && limit_ > 0 && counted_ + prompt_estimate_ > reserved_) {
    limiter_->extend(key_id_, extension_step);
    reserved_ += extension_step;
  }
  return false;
}

void TokenAccount::on_answer(std::string_view body) {
  if (find_usage(body, usage_prompt_, usage_completion_)) usage_seen_ = true;
}

void TokenAccount::settle(Clock::time_point now) {
  if (settled_ || !limiter_) return;
  settled_ = true;
  const std::int64_t used =
      usage_seen_ ? usage_prompt_ + completion_tokens() : (counted_ > 0 ? counted_ + prompt_estimate_ : 0);
  limiter_->settle(key_id_, reserved_, used, now);
}

}  // namespace clawbot::gateway
