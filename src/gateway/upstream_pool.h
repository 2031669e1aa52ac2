// Which upstream takes a request: health (active checks), a circuit breaker per upstream (passive ejection
// after consecutive failures, half-open probes after a cooldown), an upstream's own "busy" (a 503, kept for
// its Retry-After), primaries before standbys, conversation affinity, and least-outstanding-requests or
// smooth weighted round robin. No I/O here: the proxy reports what happened and asks for the next pick; every
// member is thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/config.h"

namespace clawbot::gateway {

using Clock = std::chrono::steady_clock;

enum class UpstreamState {
  up,         // healthy, circuit closed
  down,       // the active health check fails
  open,       // circuit open after consecutive request failures: cooling down
  half_open,  // cooldown over: one probe request decides
};
std::string_view to_string(UpstreamState state) noexcept;

struct UpstreamSnapshot {
  std::string name;
  std::string url;
  bool standby = false;
  UpstreamState state = UpstreamState::up;
  std::size_t in_flight = 0;
  bool serving = false;  // would receive traffic now (standbys only while no primary is up)
  bool busy = false;     // answered 503 lately: no request goes there before its Retry-After
  std::vector<std::string> models;
  std::string last_error;
};

struct Pick {
  std::size_t index = 0;
  bool probe = false;     // the half-open probe of its upstream
  bool affinity = false;  // chosen by the conversation's hash
};

class UpstreamPool {
 public:
  UpstreamPool(const std::vector<Upstream>& upstreams, Balance balance, CircuitBreaker breaker,
               std::size_t affinity_slack = 4);

  std::size_t size() const noexcept { return slots_.size(); }
  const std::string& name(std::size_t index) const { return slots_[index].name; }

  // An upstream for a request, counted in flight until finish(), busy() or finish_unproven(); nullopt when
  // none can take it now (all down, cooling down, busy or at max_in_flight). `affinity` 0 means none;
  // `model` empty means any; `tried` are upstreams this request already failed on. `overflow`: a busy
  // primary refused this request, so a standby with room may take it (as after a failure).
  std::optional<Pick> pick(std::uint64_t affinity, std::string_view model,
                           const std::vector<std::size_t>& tried, Clock::time_point now,
                           bool overflow = false);
  // The request on `pick` ended: `failed` is a failure of the upstream itself (it could not be reached, or
  // answered 502/504), not of the request (a 400 is a success here). Only these count toward the breaker.
  void finish(const Pick& pick, bool failed, std::string_view error, Clock::time_point now);
  // The request on `pick` ended without a verdict on the upstream: the connection broke or timed out after
  // the whole request was sent, which the request itself may have caused (a body that crashes a node, a
  // HEAD answered with a body). Not counted toward the breaker; a half-open probe leaves the circuit to the
  // next request or health check.
  void finish_unproven(const Pick& pick, std::string_view error, Clock::time_point now);
  // The upstream answered 503 to the request on `pick`: it is up but full. No request goes there before
  // `retry_after` (its Retry-After header) or, without one, before a request of ours on it finishes or
  // `busy_without_retry_after` passes.
  void busy(const Pick& pick, std::optional<Clock::duration> retry_after, Clock::time_point now);
  static constexpr auto busy_without_retry_after = std::chrono::milliseconds(1000);
  static constexpr auto busy_at_least = std::chrono::milliseconds(100);  // "Retry-After: 0" is no busy loop
  // The active health check says the upstream is down (it stopped answering its checks).
  bool health_check_failing(std::size_t index) const;
  // An active health check's result; `models` is empty when not fetched this time.
  void health(std::size_t index, bool ok, std::string_view error, std::vector<std::string> models,
              Clock::time_point now);

  // True when some upstream is up and below its limit (or could be probed): worth waking a waiter.
  bool has_capacity(Clock::time_point now) const;
  // Called (outside the lock) whenever capacity may have appeared: a request finished, an upstream came up.
  void on_capacity(std::function<void()> callback) { on_capacity_ = std::move(callback); }

  std::vector<UpstreamSnapshot> snapshot(Clock::time_point now) const;
  // Models of all upstreams, each once, in upstream order.
  std::vector<std::pair<std::string, std::vector<std::size_t>>> models() const;

 private:
  struct Slot {
    std::string name;
    std::string url;
    int weight = 1;
    bool standby = false;
    std::size_t max_in_flight = 0;
    std::uint64_t name_hash = 0;
    bool healthy = true;  // until a health check says otherwise
    int consecutive_failures = 0;
    Clock::time_point open_until{};
    bool circuit_open = false;
    bool probe_in_flight = false;
    Clock::time_point busy_until{};     // after a 503
    bool busy_for_retry_after = false;  // busy_until is the upstream's own Retry-After: kept to the end
    std::size_t in_flight = 0;
    std::int64_t current_weight = 0;  // smooth weighted round robin
    std::vector<std::string> models;
    std::string last_error;
  };
  UpstreamState state_of(const Slot& slot, Clock::time_point now) const;
  // Up (or half-open without a probe yet) and not busy.
  bool usable(const Slot& slot, Clock::time_point now) const;
  void release(Slot& slot, const Pick& pick);  // no longer in flight
  bool serves_model(const Slot& slot, std::string_view model) const;
  bool any_primary_up(Clock::time_point now) const;
  void notify();

  mutable std::mutex mutex_;
  std::vector<Slot> slots_;
  Balance balance_;
  CircuitBreaker breaker_;
  std::size_t affinity_slack_;
  std::size_t rotation_ = 0;  // ties in least-outstanding go round
  std::function<void()> on_capacity_;
};

// A stable 64-bit hash (FNV-1a) for affinity keys.
std::uint64_t stable_hash(std::string_view text) noexcept;

}  // namespace clawbot::gateway
