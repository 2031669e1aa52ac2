// Per-key requests and tokens per minute: a sliding window of 60 one-second buckets per key; audio seconds
// per hour: 60 one-minute buckets.
#include <algorithm>
#include <array>
#include <functional>
#include <mutex>
#include <unordered_map>

#include "gateway/door/door.h"

namespace clawbot::gateway::door {

namespace {

constexpr std::int64_t window_seconds = 60;
constexpr std::size_t shard_count = 16;

struct Bucket {
  std::int64_t second = -1;  // which second (of the steady clock) the counts belong to
  std::int64_t requests = 0;
  std::int64_t tokens = 0;
};

// The last 60 seconds of one key. Bucket i holds second s where s % 60 == i; a bucket of an older second is
// stale and counts as empty.
struct Window {
  std::array<Bucket, window_seconds> buckets;
  std::int64_t reserved = 0;  // tokens reserved by the key's running requests

  Bucket& at(std::int64_t second) {
    Bucket& b = buckets[static_cast<std::size_t>(second % window_seconds)];
    if (b.second != second) b = Bucket{second, 0, 0};
    return b;
  }
  // Counts of second s when it is inside the window ending at `now` (now-59 .. now), else 0.
  const Bucket* live(std::int64_t second, std::int64_t now) const {
    const Bucket& b = buckets[static_cast<std::size_t>(second % window_seconds)];
    return b.second == second && second > now - window_seconds && second <= now ? &b : nullptr;
  }
  template <class Count>
  std::int64_t used(std::int64_t now, Count count) const {
    std::int64_t total = 0;
    for (std::int64_t s = now - window_seconds + 1; s <= now; ++s)
      if (const Bucket* b = live(s, now)) total += count(*b);
    return total;
  }
  // Seconds until the window holds less than `limit`: the oldest seconds leave it one by one (second s at
  // s + 60).
  template <class Count>
  std::int64_t wait(std::int64_t now, std::int64_t limit, Count count) const {
    std::int64_t total = used(now, count);
    for (std::int64_t s = now - window_seconds + 1; s <= now; ++s) {
      if (const Bucket* b = live(s, now)) total -= count(*b);
      if (total < limit) return s + window_seconds - now;
    }
    return window_seconds;
  }
};

std::int64_t second_of(std::chrono::steady_clock::time_point t) {
  // The clock's epoch is arbitrary but fixed; only differences matter. Negative seconds (a test clock near
  // its epoch) would break `% 60`, so shift them into range.
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
  return s < 0 ? 0 : s;
}

std::string tokens_reason(std::int64_t used, std::int64_t reserved, std::int64_t limit) {
  return "tokens per minute: " + std::to_string(used) + " used" +
         (reserved > 0 ? " and " + std::to_string(reserved) + " reserved by running requests"
                       : std::string()) +
         " of " + std::to_string(limit);
}

// Seconds until the key has token room again: reservations end with their requests (soon, or so it is
// assumed: 1 s), used tokens leave the window second by second.
std::int64_t token_wait(const Window& window, std::int64_t second, std::int64_t limit) {
  if (window.reserved >= limit) return 1;
  return window.wait(second, limit - window.reserved, [](const Bucket& b) { return b.tokens; });
}

// The last hour of one key's audio: bucket i holds minute m where m % 60 == i.
struct AudioWindow {
  struct Minute {
    std::int64_t minute = -1;
    double seconds = 0;
  };
  std::array<Minute, 60> minutes;

  double used(std::int64_t now_minute) const {
    double total = 0;
    for (const Minute& m : minutes)
      if (m.minute > now_minute - 60 && m.minute <= now_minute) total += m.seconds;
    return total;
  }
  // Seconds (from `second`) until less than `limit` is left in the window: minute m leaves it at (m + 60)
  // * 60.
  std::int64_t wait(std::int64_t second, double limit) const {
    const std::int64_t now_minute = second / 60;
    double total = used(now_minute);
    for (std::int64_t m = now_minute - 59; m <= now_minute; ++m) {
      const Minute& b = minutes[static_cast<std::size_t>(m % 60)];
      if (b.minute == m) total -= b.seconds;
      if (total < limit) return (m + 60) * 60 - second;
    }
    return 3600;
  }
};

}  // namespace

struct RateLimiter::Shard {
  std::mutex mutex;
  std::unordered_map<std::string, Window> windows;
  std::unordered_map<std::string, AudioWindow> audio;
};

RateLimiter::RateLimiter() : shards_(std::make_unique<Shard[]>(shard_count)) {}
RateLimiter::~RateLimiter() = default;

RateLimiter::Decision RateLimiter::admit(const KeyInfo& key, std::int64_t default_rpm,
                                         std::int64_t default_tpm,
                                         std::chrono::steady_clock::time_point now) {
  const std::int64_t rpm = key.requests_per_minute > 0 ? key.requests_per_minute : default_rpm;
  const std::int64_t tpm = key.tokens_per_minute > 0 ? key.tokens_per_minute : default_tpm;
  if (rpm <= 0 && tpm <= 0) return {};
  const std::int64_t second = second_of(now);
  Shard& shard = shards_[std::hash<std::string>{}(key.id) % shard_count];
  std::lock_guard lock(shard.mutex);
  Window& window = shard.windows[key.id];
  const auto requests = [](const Bucket& b) { return b.requests; };
  const auto tokens = [](const Bucket& b) { return b.tokens; };

  Decision decision;
  std::int64_t wait = 0;
  if (rpm > 0) {
    const std::int64_t used = window.used(second, requests);
    if (used >= rpm) {
      decision.reason = "requests per minute: " + std::to_string(used) + " used of " + std::to_string(rpm);
      wait = window.wait(second, rpm, requests);
    }
  }
  if (tpm > 0) {
    const std::int64_t used = window.used(second, tokens);
    if (used + window.reserved >= tpm) {
      if (!decision.reason.empty()) decision.reason += "; ";
      decision.reason += tokens_reason(used, window.reserved, tpm);
      wait = std::max(wait, token_wait(window, second, tpm));
    }
  }
  if (!decision.reason.empty()) {
    decision.allowed = false;
    decision.retry_after = std::chrono::seconds(std::max<std::int64_t>(wait, 1));
    return decision;
  }
  ++window.at(second).requests;
  decision.tokens_per_minute = tpm;
  return decision;
}

RateLimiter::Decision RateLimiter::reserve(const std::string& key_id, std::int64_t tokens_per_minute,
                                           std::int64_t wanted, std::chrono::steady_clock::time_point now) {
  Decision decision;
  decision.tokens_per_minute = tokens_per_minute;
  if (tokens_per_minute <= 0) return decision;
  const std::int64_t second = second_of(now);
  Shard& shard = shards_[std::hash<std::string>{}(key_id) % shard_count];
  std::lock_guard lock(shard.mutex);
  Window& window = shard.windows[key_id];
  const std::int64_t used = window.used(second, [](const Bucket& b) { return b.tokens; });
  const std::int64_t room = tokens_per_minute - used - window.reserved;
  if (room <= 0) {
    decision.allowed = false;
    decision.reason = tokens_reason(used, window.reserved, tokens_per_minute);
    decision.retry_after =
        std::chrono::seconds(std::max<std::int64_t>(token_wait(window, second, tokens_per_minute), 1));
    return decision;
  }
  decision.reserved = std::clamp<std::int64_t>(wanted, 1, room);
  window.reserved += decision.reserved;
  return decision;
}

void RateLimiter::extend(const std::string& key_id, std::int64_t tokens) {
  if (tokens <= 0) return;
  Shard& shard = shards_[std::hash<std::string>{}(key_id) % shard_count];
  std::lock_guard lock(shard.mutex);
  shard.windows[key_id].reserved += tokens;
}

void RateLimiter::settle(const std::string& key_id, std::int64_t reserved, std::int64_t used,
                         std::chrono::steady_clock::time_point now) {
  if (reserved <= 0 && used <= 0) return;
  Shard& shard = shards_[std::hash<std::string>{}(key_id) % shard_count];
  std::lock_guard lock(shard.mutex);
  Window& window = shard.windows[key_id];
  window.reserved = std::max<std::int64_t>(window.reserved - std::max<std::int64_t>(reserved, 0), 0);
  if (used > 0) window.at(second_of(now)).tokens += used;
}

void RateLimiter::add_tokens(const std::string& key_id, std::int64_t tokens,
                             std::chrono::steady_clock::time_point now) {
  if (tokens <= 0) return;
  Shard& shard = shards_[std::hash<std::string>{}(key_id) % shard_count];
  std::lock_guard lock(shard.mutex);
  shard.windows[key_id].at(second_of(now)).tokens += tokens;
}

RateLimiter::Decision RateLimiter::admit_audio(const std::string& key_id, std::int64_t seconds_per_hour,
                                               std::chrono::steady_clock::time_point now) {
  Decision decision;
  if (seconds_per_hour <= 0) return decision;
  const std::int64_t second = second_of(now);
  Shard& shard = shards_[std::hash<std::string>{}(key_id) % shard_count];
  std::lock_guard lock(shard.mutex);
  const auto found = shard.audio.find(key_id);
  if (found == shard.audio.end()) return decision;
  const double used = found->second.used(second / 60);
  const auto limit = static_cast<double>(seconds_per_hour);
  if (used < limit) return decision;
  decision.allowed = false;
  decision.reason = "audio seconds per hour: " + std::to_string(static_cast<std::int64_t>(used)) +
                    " used of " + std::to_string(seconds_per_hour);
  decision.retry_after = std::chrono::seconds(std::max<std::int64_t>(found->second.wait(second, limit), 1));
  return decision;
}

void RateLimiter::add_audio(const std::string& key_id, double seconds,
                            std::chrono::steady_clock::time_point now) {
  if (!(seconds > 0)) return;
  const std::int64_t minute = second_of(now) / 60;
  Shard& shard = shards_[std::hash<std::string>{}(key_id) % shard_count];
  std::lock_guard lock(shard.mutex);
  auto& bucket = shard.audio[key_id].minutes[static_cast<std::size_t>(minute % 60)];
  if (bucket.minute != minute) bucket = {minute, 0};
  bucket.seconds += seconds;
}

}  // namespace clawbot::gateway::door
