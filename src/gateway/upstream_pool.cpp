#include "gateway/upstream_pool.h"

#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <limits>
#include <map>

namespace clawbot::gateway {

std::string_view to_string(UpstreamState state) noexcept {
  switch (state) {
    case UpstreamState::up:
      return "up";
    case UpstreamState::down:
      return "down";
    case UpstreamState::open:
      return "open";
    case UpstreamState::half_open:
      return "half_open";
  }
  return "unknown";
}

std::uint64_t stable_hash(std::string_view text) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

namespace {

// splitmix64's finalizer: spreads (affinity ^ upstream) so that rendezvous scores are independent.
std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

UpstreamPool::UpstreamPool(const std::vector<Upstream>& upstreams, Balance balance, CircuitBreaker breaker,
                           std::size_t affinity_slack)
    : balance_(balance), breaker_(breaker), affinity_slack_(affinity_slack) {
  for (const auto& u : upstreams) {
    Slot slot;
    slot.name = u.name;
    slot.url = u.parsed.str();
    slot.weight = u.weight;
    slot.standby = u.standby;
    slot.max_in_flight = u.max_in_flight;
    slot.name_hash = stable_hash(slot.url);
    slots_.push_back(std::move(slot));
  }
}

UpstreamState UpstreamPool::state_of(const Slot& slot, Clock::time_point now) const {
  if (!slot.healthy) return UpstreamState::down;
  if (slot.circuit_open) return now < slot.open_until ? UpstreamState::open : UpstreamState::half_open;
  return UpstreamState::up;
}

bool UpstreamPool::health_check_failing(std::size_t index) const {
  std::lock_guard lock(mutex_);
  return index < slots_.size() && !slots_[index].healthy;
}

bool UpstreamPool::usable(const Slot& slot, Clock::time_point now) const {
  if (now < slot.busy_until) return false;
  const auto state = state_of(slot, now);
  return state == UpstreamState::up || (state == UpstreamState::half_open && !slot.probe_in_flight);
}

bool UpstreamPool::serves_model(const Slot& slot, std::string_view model) const {
  return std::find(slot.models.begin(), slot.models.end(), model) != slot.models.end();
}

bool UpstreamPool::any_primary_up(Clock::time_point now) const {
  return std::any_of(slots_.begin(), slots_.end(), [&](const Slot& s) {
    const auto state = state_of(s, now);
    return !s.standby && (state == UpstreamState::up || state == UpstreamState::half_open);
  });
}

std::optional<Pick> UpstreamPool::pick(std::uint64_t affinity, std::string_view model,
                                       const std::vector<std::size_t>& tried, Clock::time_point now,
                                       bool overflow) {
  std::unique_lock lock(mutex_);
  // Route by model only when some upstream is known to serve it: lists arrive with the health checks.
  const bool by_model = !model.empty() && std::any_of(slots_.begin(), slots_.end(),
                                                      [&](const Slot& s) { return serves_model(s, model); });
  const bool primaries_up = any_primary_up(now);
  // (On the stack: this runs for every request.)
  boost::container::small_vector<std::size_t, 16> candidates;
  auto collect = [&](bool allow_standby) {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      const Slot& s = slots_[i];
      if (s.standby && !allow_standby) continue;
      if (std::find(tried.begin(), tried.end(), i) != tried.end()) continue;
      if (!usable(s, now)) continue;
      if (s.max_in_flight != 0 && s.in_flight >= s.max_in_flight) continue;
      if (by_model && !serves_model(s, model)) continue;
      candidates.push_back(i);
    }
  };
  collect(!primaries_up);
  // A retry that has failed on every primary still up may go to a standby rather than fail, and so may a
  // request that the busy primaries refused.
  if (candidates.empty() && primaries_up && (!tried.empty() || overflow)) collect(true);
  if (candidates.empty()) return std::nullopt;

  std::size_t least = std::numeric_limits<std::size_t>::max();
  for (const auto i : candidates) least = std::min(least, slots_[i].in_flight);

  Pick chosen;
  bool picked = false;
  if (affinity != 0) {
    std::uint64_t best = 0;
    std::size_t best_index = candidates.front();
    for (const auto i : candidates) {
      const std::uint64_t score = mix(affinity ^ slots_[i].name_hash);
      if (score >= best) best = score, best_index = i;
    }
    // Its prefix cache is worth a short wait, not a pile-up while others idle.
    if (slots_[best_index].in_flight < least + affinity_slack_) {
      chosen.index = best_index;
      chosen.affinity = true;
      picked = true;
    }
  }
  if (!picked && balance_ == Balance::weighted_round_robin) {
    // nginx's smooth weighted round robin: even spread, weight-proportional shares.
    std::int64_t total = 0;
    std::size_t best_index = candidates.front();
    for (const auto i : candidates) {
      slots_[i].current_weight += slots_[i].weight;
      total += slots_[i].weight;
      if (slots_[i].current_weight > slots_[best_index].current_weight) best_index = i;
    }
    slots_[best_index].current_weight -= total;
    chosen.index = best_index;
    picked = true;
  }
  if (!picked) {
    // Least outstanding relative to weight; ties go round so equal loads spread evenly.
    double best_load = std::numeric_limits<double>::max();
    const std::size_t n = candidates.size();
    const std::size_t start = rotation_++ % n;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = candidates[(start + k) % n];
      const double load = static_cast<double>(slots_[i].in_flight + 1) / slots_[i].weight;
      if (load < best_load) best_load = load, chosen.index = i;
    }
  }
  Slot& slot = slots_[chosen.index];
  ++slot.in_flight;
  if (state_of(slot, now) == UpstreamState::half_open) {
    slot.probe_in_flight = true;
    chosen.probe = true;
  }
  return chosen;
}

void UpstreamPool::release(Slot& slot, const Pick& pick) {
  if (slot.in_flight > 0) --slot.in_flight;
  if (pick.probe) slot.probe_in_flight = false;
}

void UpstreamPool::finish(const Pick& pick, bool failed, std::string_view error, Clock::time_point now) {
  {
    std::lock_guard lock(mutex_);
    Slot& slot = slots_[pick.index];
    release(slot, pick);
    if (failed) slot.last_error = std::string(error);
    // One of its requests is done: a node that said "busy" without a Retry-After has room again.
    if (!failed && !slot.busy_for_retry_after) slot.busy_until = {};
    if (pick.probe) {
      slot.consecutive_failures = failed ? slot.consecutive_failures + 1 : 0;
      slot.circuit_open = failed;
      if (failed) slot.open_until = now + breaker_.cooldown;
    } else if (failed) {
      if (++slot.consecutive_failures >= breaker_.failures && !slot.circuit_open) {
        slot.circuit_open = true;
        slot.open_until = now + breaker_.cooldown;
      }
    } else if (!slot.circuit_open) {
      slot.consecutive_failures = 0;
    }
  }
  notify();
}

void UpstreamPool::finish_unproven(const Pick& pick, std::string_view error, Clock::time_point) {
  {
    std::lock_guard lock(mutex_);
    Slot& slot = slots_[pick.index];
    release(slot, pick);
    slot.last_error = std::string(error);
  }
  notify();
}

void UpstreamPool::busy(const Pick& pick, std::optional<Clock::duration> retry_after, Clock::time_point now) {
  {
    std::lock_guard lock(mutex_);
    Slot& slot = slots_[pick.index];
    release(slot, pick);
    // It answered: it is alive (a half-open probe closes the circuit), only full.
    slot.consecutive_failures = 0;
    slot.circuit_open = false;
    const Clock::time_point until =
        now + std::max<Clock::duration>(retry_after.value_or(busy_without_retry_after), busy_at_least);
    if (until >= slot.busy_until) {
      slot.busy_until = until;
      slot.busy_for_retry_after = retry_after.has_value();
    }
  }
  notify();  // (its place in flight is free for a request that waits for another upstream)
}

void UpstreamPool::health(std::size_t index, bool ok, std::string_view error, std::vector<std::string> models,
                          Clock::time_point now) {
  bool came_up = false;
  {
    std::lock_guard lock(mutex_);
    Slot& slot = slots_[index];
    came_up = ok && !slot.healthy;
    slot.healthy = ok;
    if (!ok) slot.last_error = std::string(error);
    if (!models.empty()) slot.models = std::move(models);
    // A node that answers its health check again after a restart need not sit out the whole cooldown: the
    // next request probes it.
    if (came_up && slot.circuit_open) slot.open_until = std::min(slot.open_until, now);
  }
  if (came_up) notify();
}

bool UpstreamPool::has_capacity(Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  const bool primaries_up = any_primary_up(now);
  return std::any_of(slots_.begin(), slots_.end(), [&](const Slot& s) {
    return (!s.standby || !primaries_up) && usable(s, now) &&
           (s.max_in_flight == 0 || s.in_flight < s.max_in_flight);
  });
}

void UpstreamPool::notify() {
  if (on_capacity_) on_capacity_();
}

std::vector<UpstreamSnapshot> UpstreamPool::snapshot(Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  const bool primaries_up = any_primary_up(now);
  std::vector<UpstreamSnapshot> out;
  for (const auto& s : slots_) {
    UpstreamSnapshot snap;
    snap.name = s.name;
    snap.url = s.url;
    snap.standby = s.standby;
    snap.state = state_of(s, now);
    snap.in_flight = s.in_flight;
    snap.busy = now < s.busy_until;
    snap.serving = (snap.state == UpstreamState::up || snap.state == UpstreamState::half_open) &&
                   (!s.standby || !primaries_up);
    snap.models = s.models;
    snap.last_error = s.last_error;
    out.push_back(std::move(snap));
  }
  return out;
}

std::vector<std::pair<std::string, std::vector<std::size_t>>> UpstreamPool::models() const {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<std::string, std::vector<std::size_t>>> out;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    for (const auto& model : slots_[i].models) {
      auto it = std::find_if(out.begin(), out.end(), [&](const auto& entry) { return entry.first == model; });
      if (it == out.end()) {
        out.emplace_back(model, std::vector<std::size_t>{i});
      } else {
        it->second.push_back(i);
      }
    }
  }
  return out;
}

}  // namespace clawbot::gateway
