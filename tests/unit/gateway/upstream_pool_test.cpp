// UpstreamPool with an injected clock: least-outstanding, smooth weighted round robin, conversation affinity
// (rendezvous hashing with an overload slack), the circuit breaker and its half-open probe, health, standbys,
// max_in_flight and the capacity callback, routing by model.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "gateway/upstream_pool.h"

namespace gw = clawbot::gateway;
using std::chrono::milliseconds;

namespace {

const auto t0 = gw::Clock::time_point{} + std::chrono::hours(1000);
const std::vector<std::size_t> none;

struct Spec {
  int weight = 1;
  bool standby = false;
  std::size_t max_in_flight = 0;
};

std::vector<gw::Upstream> upstreams(const std::vector<Spec>& specs) {
  std::vector<gw::Upstream> out;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    gw::Upstream u;
    u.url = "http://10.0.0." + std::to_string(i + 1) + ":5000";
    u.parsed = *clawbot::http::parse_url(u.url);
    u.name = "u" + std::to_string(i);
    u.weight = specs[i].weight;
    u.standby = specs[i].standby;
    u.max_in_flight = specs[i].max_in_flight;
    out.push_back(std::move(u));
  }
  return out;
}

gw::UpstreamPool pool_of(const std::vector<Spec>& specs, gw::Balance balance = gw::Balance::least_outstanding,
                         gw::CircuitBreaker breaker = {}) {
  return gw::UpstreamPool(upstreams(specs), balance, breaker);
}

// One request start to finish (success) on whatever the pool picks; the picked index.
std::size_t round_trip(gw::UpstreamPool& pool, std::uint64_t affinity = 0, std::string_view model = {},
                       gw::Clock::time_point now = t0) {
  const auto pick = pool.pick(affinity, model, none, now);
  EXPECT_TRUE(pick.has_value());
  if (!pick) return static_cast<std::size_t>(-1);
  pool.finish(*pick, false, {}, now);
  return pick->index;
}

gw::UpstreamState state(const gw::UpstreamPool& pool, std::size_t index, gw::Clock::time_point now) {
  return pool.snapshot(now)[index].state;
}

// Key k's upstream with nothing in flight.
std::map<std::uint64_t, std::size_t> placement(gw::UpstreamPool& pool, std::uint64_t keys) {
  std::map<std::uint64_t, std::size_t> out;
  for (std::uint64_t k = 1; k <= keys; ++k) out[k] = round_trip(pool, gw::stable_hash("conv " + std::to_string(k)));
  return out;
}

}  // namespace

// ----------------------------------------------------------------------------------------- least outstanding

TEST(GatewayUpstreamPool, LeastOutstandingSpreadsEqualLoadEvenly) {
  auto pool = pool_of({{}, {}, {}});
  // Requests that finish at once: every pick is a tie, and ties go round.
  std::vector<int> counts(3);
  for (int i = 0; i < 300; ++i) ++counts[round_trip(pool)];
  EXPECT_EQ(counts, (std::vector<int>{100, 100, 100}));
  // Requests that stay in flight: nine of them are three on each.
  std::vector<gw::Pick> held;
  for (int i = 0; i < 9; ++i) held.push_back(*pool.pick(0, {}, none, t0));
  for (const auto& s : pool.snapshot(t0)) EXPECT_EQ(s.in_flight, 3u) << s.name;
}

TEST(GatewayUpstreamPool, LeastOutstandingPrefersTheIdlerUpstream) {
  auto pool = pool_of({{}, {}, {}});
  std::vector<gw::Pick> held;
  for (int i = 0; i < 6; ++i) held.push_back(*pool.pick(0, {}, none, t0));  // two on each
  for (const auto& p : held)
    if (p.index == 1) pool.finish(p, false, {}, t0);  // u1 is idle now
  const auto a = pool.pick(0, {}, none, t0);
  const auto b = pool.pick(0, {}, none, t0);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->index, 1u);
  EXPECT_EQ(b->index, 1u);  // 1 in flight there against 2 elsewhere
  const auto c = pool.pick(0, {}, none, t0);
  ASSERT_TRUE(c);
  EXPECT_EQ(pool.snapshot(t0)[c->index].in_flight, 3u);  // now all tie at 2: any one of them
}

TEST(GatewayUpstreamPool, LeastOutstandingIsRelativeToWeight) {
  auto pool = pool_of({{.weight = 1}, {.weight = 3}});
  std::vector<int> counts(2);
  for (int i = 0; i < 8; ++i) ++counts[pool.pick(0, {}, none, t0)->index];  // held: loads stay level
  EXPECT_EQ(counts, (std::vector<int>{2, 6}));
}

// ----------------------------------------------------------------------------------------- weighted round robin

TEST(GatewayUpstreamPool, WeightedRoundRobinGivesExactShares) {
  auto pool = pool_of({{.weight = 1}, {.weight = 2}, {.weight = 3}}, gw::Balance::weighted_round_robin);
  std::vector<int> total(3);
  for (int cycle = 0; cycle < 100; ++cycle) {
    std::vector<int> counts(3);
    for (int i = 0; i < 6; ++i) ++counts[round_trip(pool)];
    // Smooth: every cycle of the total weight holds each upstream's exact share, not only the sum.
    EXPECT_EQ(counts, (std::vector<int>{1, 2, 3})) << "cycle " << cycle;
    for (int i = 0; i < 3; ++i) total[i] += counts[i];
  }
  EXPECT_EQ(total, (std::vector<int>{100, 200, 300}));
}

TEST(GatewayUpstreamPool, WeightedRoundRobinIgnoresInFlightButNotDownUpstreams) {
  auto pool = pool_of({{.weight = 1}, {.weight = 1}}, gw::Balance::weighted_round_robin);
  std::vector<int> counts(2);
  for (int i = 0; i < 10; ++i) ++counts[pool.pick(0, {}, none, t0)->index];  // none finish
  EXPECT_EQ(counts, (std::vector<int>{5, 5}));
  pool.health(0, false, "refused", {}, t0);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(pool.pick(0, {}, none, t0)->index, 1u);
}

// ----------------------------------------------------------------------------------------- affinity

TEST(GatewayUpstreamPool, AffinitySendsOneKeyToOneUpstream) {
  auto pool = pool_of({{}, {}, {}});
  for (std::uint64_t k = 1; k <= 50; ++k) {
    const std::uint64_t key = gw::stable_hash("conversation " + std::to_string(k));
    const auto first = pool.pick(key, {}, none, t0);
    ASSERT_TRUE(first);
    EXPECT_TRUE(first->affinity);
    pool.finish(*first, false, {}, t0);
    for (int turn = 0; turn < 10; ++turn) {
      // Other traffic in between must not move it.
      round_trip(pool);
      EXPECT_EQ(round_trip(pool, key), first->index) << "key " << k << " turn " << turn;
    }
  }
}

TEST(GatewayUpstreamPool, AffinitySpreadsKeysOverUpstreams) {
  auto pool = pool_of({{}, {}, {}});
  std::vector<int> counts(3);
  for (const auto& [key, index] : placement(pool, 600)) ++counts[index];
  for (int i = 0; i < 3; ++i) {
    EXPECT_GT(counts[i], 140) << "upstream " << i;  // 200 expected each
    EXPECT_LT(counts[i], 260) << "upstream " << i;
  }
}

TEST(GatewayUpstreamPool, AffinityMovesOnlyTheKeysOfAnUpstreamThatGoesDownAndBringsThemBack) {
  auto pool = pool_of({{}, {}, {}});
  const auto before = placement(pool, 300);
  pool.health(1, false, "connection refused", {}, t0);
  const auto during = placement(pool, 300);
  int moved = 0;
  for (const auto& [key, index] : before) {
    if (index == 1) {
      EXPECT_NE(during.at(key), 1u) << "key " << key;
      ++moved;
    } else {
      EXPECT_EQ(during.at(key), index) << "key " << key << " moved though its upstream stayed up";
    }
  }
  EXPECT_GT(moved, 0);
  // The moved keys spread over both survivors, not all onto one.
  std::set<std::size_t> targets;
  for (const auto& [key, index] : before)
    if (index == 1) targets.insert(during.at(key));
  EXPECT_EQ(targets, (std::set<std::size_t>{0, 2}));

  pool.health(1, true, {}, {}, t0 + milliseconds(100));
  EXPECT_EQ(placement(pool, 300), before);
}

TEST(GatewayUpstreamPool, AffinityMovesWhenTheCircuitOpensToo) {
  auto pool = pool_of({{}, {}}, gw::Balance::least_outstanding, {.failures = 1, .cooldown = milliseconds(1000)});
  const std::uint64_t key = gw::stable_hash("conversation x");
  const auto home = pool.pick(key, {}, none, t0);
  ASSERT_TRUE(home);
  pool.finish(*home, true, "reset", t0);  // opens its circuit
  const auto away = pool.pick(key, {}, none, t0);
  ASSERT_TRUE(away);
  EXPECT_NE(away->index, home->index);
  pool.finish(*away, false, {}, t0);
  // After the cooldown the key's own upstream is probed with it, and once closed it keeps it.
  const auto probe = pool.pick(key, {}, none, t0 + milliseconds(1000));
  ASSERT_TRUE(probe);
  EXPECT_EQ(probe->index, home->index);
  EXPECT_TRUE(probe->probe);
  pool.finish(*probe, false, {}, t0 + milliseconds(1000));
  EXPECT_EQ(round_trip(pool, key, {}, t0 + milliseconds(1001)), home->index);
}

TEST(GatewayUpstreamPool, AffinityOverloadSlackSendsTheKeyElsewhere) {
  auto pool = gw::UpstreamPool(upstreams({{}, {}, {}}), gw::Balance::least_outstanding, {}, 4);
  const std::uint64_t key = gw::stable_hash("busy conversation");
  std::vector<gw::Pick> held;
  for (int i = 0; i < 4; ++i) {
    const auto p = pool.pick(key, {}, none, t0);
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->affinity) << i;
    if (!held.empty()) {
      EXPECT_EQ(p->index, held.front().index);
    }
    held.push_back(*p);
  }
  const std::size_t home = held.front().index;
  // Four ahead of it while the others idle: the slack is used up, the least loaded takes it.
  const auto spill = pool.pick(key, {}, none, t0);
  ASSERT_TRUE(spill);
  EXPECT_FALSE(spill->affinity);
  EXPECT_NE(spill->index, home);
  pool.finish(*spill, false, {}, t0);
  // One of the four ends: within the slack again, home it goes.
  pool.finish(held.back(), false, {}, t0);
  const auto back = pool.pick(key, {}, none, t0);
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->affinity);
  EXPECT_EQ(back->index, home);
}

// ----------------------------------------------------------------------------------------- circuit breaker

TEST(GatewayUpstreamPool, ConsecutiveFailuresOpenTheCircuit) {
  auto pool = pool_of({{}}, gw::Balance::least_outstanding, {.failures = 3, .cooldown = milliseconds(5000)});
  // Failures that are not consecutive do not open it.
  for (int i = 0; i < 2; ++i) pool.finish(*pool.pick(0, {}, none, t0), true, "reset", t0);
  pool.finish(*pool.pick(0, {}, none, t0), false, {}, t0);
  for (int i = 0; i < 2; ++i) pool.finish(*pool.pick(0, {}, none, t0), true, "reset", t0);
  EXPECT_EQ(state(pool, 0, t0), gw::UpstreamState::up);
  pool.finish(*pool.pick(0, {}, none, t0), true, "reset", t0);
  EXPECT_EQ(state(pool, 0, t0), gw::UpstreamState::open);
  EXPECT_EQ(pool.snapshot(t0)[0].last_error, "reset");
  EXPECT_FALSE(pool.snapshot(t0)[0].serving);
  // No picks while it cools down.
  EXPECT_FALSE(pool.pick(0, {}, none, t0));
  EXPECT_FALSE(pool.pick(0, {}, none, t0 + milliseconds(4999)));
  EXPECT_FALSE(pool.has_capacity(t0 + milliseconds(4999)));
  EXPECT_EQ(state(pool, 0, t0 + milliseconds(4999)), gw::UpstreamState::open);
}

TEST(GatewayUpstreamPool, AfterTheCooldownExactlyOneProbeAndSuccessCloses) {
  auto pool = pool_of({{}}, gw::Balance::least_outstanding, {.failures = 2, .cooldown = milliseconds(5000)});
  for (int i = 0; i < 2; ++i) pool.finish(*pool.pick(0, {}, none, t0), true, "reset", t0);
  const auto later = t0 + milliseconds(5000);
  EXPECT_EQ(state(pool, 0, later), gw::UpstreamState::half_open);
  EXPECT_TRUE(pool.has_capacity(later));
  const auto probe = pool.pick(0, {}, none, later);
  ASSERT_TRUE(probe);
  EXPECT_TRUE(probe->probe);
  // While the probe is in flight nothing else goes there.
  EXPECT_FALSE(pool.pick(0, {}, none, later));
  EXPECT_FALSE(pool.pick(0, {}, none, later + milliseconds(60000)));
  EXPECT_FALSE(pool.has_capacity(later));
  pool.finish(*probe, false, {}, later + milliseconds(10));
  EXPECT_EQ(state(pool, 0, later + milliseconds(10)), gw::UpstreamState::up);
  // Closed: ordinary picks, several at once, and the failure count starts again.
  const auto a = pool.pick(0, {}, none, later + milliseconds(20));
  const auto b = pool.pick(0, {}, none, later + milliseconds(20));
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(a->probe);
  EXPECT_FALSE(b->probe);
  pool.finish(*a, true, "reset", later + milliseconds(30));
  EXPECT_EQ(state(pool, 0, later + milliseconds(30)), gw::UpstreamState::up);  // 1 of 2
  pool.finish(*b, true, "reset", later + milliseconds(30));
  EXPECT_EQ(state(pool, 0, later + milliseconds(30)), gw::UpstreamState::open);  // 2 of 2
}

TEST(GatewayUpstreamPool, AFailedProbeReopensForAnotherCooldown) {
  auto pool = pool_of({{}}, gw::Balance::least_outstanding, {.failures = 1, .cooldown = milliseconds(1000)});
  pool.finish(*pool.pick(0, {}, none, t0), true, "reset", t0);
  const auto t1 = t0 + milliseconds(1000);
  const auto probe = pool.pick(0, {}, none, t1);
  ASSERT_TRUE(probe);
  ASSERT_TRUE(probe->probe);
  pool.finish(*probe, true, "still broken", t1 + milliseconds(200));
  const auto t2 = t1 + milliseconds(200);
  EXPECT_EQ(state(pool, 0, t2), gw::UpstreamState::open);
  EXPECT_FALSE(pool.pick(0, {}, none, t2 + milliseconds(999)));  // the cooldown counts from the failed probe
  const auto again = pool.pick(0, {}, none, t2 + milliseconds(1000));
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->probe);
  pool.finish(*again, false, {}, t2 + milliseconds(1000));
  EXPECT_EQ(state(pool, 0, t2 + milliseconds(1000)), gw::UpstreamState::up);
}

TEST(GatewayUpstreamPool, AnOpenCircuitSendsTrafficToTheOthersAndTheProbeIsTheOnlyRequestThere) {
  auto pool = pool_of({{}, {}}, gw::Balance::least_outstanding, {.failures = 1, .cooldown = milliseconds(1000)});
  // Open u0's circuit.
  for (;;) {
    const auto p = pool.pick(0, {}, none, t0);
    ASSERT_TRUE(p);
    const bool was_u0 = p->index == 0;
    pool.finish(*p, was_u0, "reset", t0);
    if (was_u0) break;
  }
  for (int i = 0; i < 20; ++i) EXPECT_EQ(round_trip(pool, 0, {}, t0 + milliseconds(500)), 1u);
  // Cooldown over: u0 gets one probe among the picks, and nothing more while it runs.
  const auto t1 = t0 + milliseconds(1000);
  std::optional<gw::Pick> probe;
  std::vector<gw::Pick> held;
  for (int i = 0; i < 10 && !probe; ++i) {
    auto p = pool.pick(0, {}, none, t1);
    ASSERT_TRUE(p);
    if (p->index == 0) probe = p;
    else held.push_back(*p);
  }
  ASSERT_TRUE(probe);
  EXPECT_TRUE(probe->probe);
  for (int i = 0; i < 20; ++i) {
    const auto p = pool.pick(0, {}, none, t1);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->index, 1u);
    EXPECT_FALSE(p->probe);
    held.push_back(*p);
  }
  for (const auto& p : held) pool.finish(p, false, {}, t1);
  pool.finish(*probe, false, {}, t1);
  std::vector<int> counts(2);
  for (int i = 0; i < 10; ++i) ++counts[round_trip(pool, 0, {}, t1)];
  EXPECT_EQ(counts, (std::vector<int>{5, 5}));
}

TEST(GatewayUpstreamPool, AHealthCheckThatPassesAgainEndsTheCooldownEarly) {
  auto pool = pool_of({{}}, gw::Balance::least_outstanding, {.failures = 1, .cooldown = milliseconds(60000)});
  pool.finish(*pool.pick(0, {}, none, t0), true, "reset", t0);
  pool.health(0, false, "refused", {}, t0 + milliseconds(100));
  EXPECT_EQ(state(pool, 0, t0 + milliseconds(100)), gw::UpstreamState::down);
  pool.health(0, true, {}, {}, t0 + milliseconds(200));
  EXPECT_EQ(state(pool, 0, t0 + milliseconds(200)), gw::UpstreamState::half_open);
  const auto probe = pool.pick(0, {}, none, t0 + milliseconds(200));
  ASSERT_TRUE(probe);
  EXPECT_TRUE(probe->probe);
}

// ----------------------------------------------------------------------------------------- health

TEST(GatewayUpstreamPool, DownIsNeverPickedAndUpAgainIs) {
  auto pool = pool_of({{}, {}});
  pool.health(0, false, "connection refused", {}, t0);
  EXPECT_EQ(state(pool, 0, t0), gw::UpstreamState::down);
  EXPECT_EQ(pool.snapshot(t0)[0].last_error, "connection refused");
  for (int i = 0; i < 20; ++i) EXPECT_EQ(round_trip(pool), 1u);
  std::vector<gw::Pick> held;
  for (int i = 0; i < 5; ++i) held.push_back(*pool.pick(0, {}, none, t0));  // still u1, however loaded
  for (const auto& p : held) EXPECT_EQ(p.index, 1u);
  pool.health(1, false, "connection refused", {}, t0);
  EXPECT_FALSE(pool.pick(0, {}, none, t0));
  EXPECT_FALSE(pool.has_capacity(t0));

  pool.health(0, true, {}, {}, t0 + milliseconds(10));
  EXPECT_TRUE(pool.has_capacity(t0 + milliseconds(10)));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(round_trip(pool, 0, {}, t0 + milliseconds(10)), 0u);
}

// ----------------------------------------------------------------------------------------- standby

TEST(GatewayUpstreamPool, StandbyOnlyWhileNoPrimaryIsUpAndTrafficReturns) {
  auto pool = pool_of({{}, {}, {.standby = true}});
  for (int i = 0; i < 30; ++i) EXPECT_NE(round_trip(pool), 2u);
  EXPECT_FALSE(pool.snapshot(t0)[2].serving);
  pool.health(0, false, "refused", {}, t0);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(round_trip(pool), 1u);  // one primary left: still no standby
  pool.health(1, false, "refused", {}, t0);
  EXPECT_TRUE(pool.snapshot(t0)[2].serving);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(round_trip(pool), 2u);
  pool.health(1, true, {}, {}, t0 + milliseconds(10));
  EXPECT_FALSE(pool.snapshot(t0 + milliseconds(10))[2].serving);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(round_trip(pool, 0, {}, t0 + milliseconds(10)), 1u);
}

TEST(GatewayUpstreamPool, StandbyTakesOverWhenThePrimariesCircuitsOpen) {
  auto pool = pool_of({{}, {.standby = true}}, gw::Balance::least_outstanding,
                      {.failures = 1, .cooldown = milliseconds(1000)});
  const auto p = pool.pick(0, {}, none, t0);
  ASSERT_EQ(p->index, 0u);
  pool.finish(*p, true, "reset", t0);
  EXPECT_EQ(round_trip(pool, 0, {}, t0 + milliseconds(1)), 1u);
  // Cooldown over: the primary is probed rather than left aside.
  const auto probe = pool.pick(0, {}, none, t0 + milliseconds(1000));
  ASSERT_TRUE(probe);
  EXPECT_EQ(probe->index, 0u);
  EXPECT_TRUE(probe->probe);
  pool.finish(*probe, false, {}, t0 + milliseconds(1000));
  EXPECT_EQ(round_trip(pool, 0, {}, t0 + milliseconds(1001)), 0u);
}

TEST(GatewayUpstreamPool, ARetryOnAFailedPrimaryMayUseTheStandby) {
  auto pool = pool_of({{}, {.standby = true}});
  const auto first = pool.pick(0, {}, none, t0);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->index, 0u);
  pool.finish(*first, true, "reset before headers", t0);
  // The primary is still up as far as health and the breaker know, but this request failed there.
  const std::vector<std::size_t> tried{0};
  const auto retry = pool.pick(0, {}, tried, t0);
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->index, 1u);
  pool.finish(*retry, false, {}, t0);
  // Fresh requests still go to the primary.
  EXPECT_EQ(round_trip(pool), 0u);
  // With every upstream tried, none is left.
  EXPECT_FALSE(pool.pick(0, {}, std::vector<std::size_t>{0, 1}, t0));
}

TEST(GatewayUpstreamPool, ARetryPrefersAnotherPrimaryToTheStandby) {
  auto pool = pool_of({{}, {}, {.standby = true}});
  for (std::size_t failed = 0; failed < 2; ++failed) {
    const std::vector<std::size_t> tried{failed};
    for (int i = 0; i < 5; ++i) {
      const auto p = pool.pick(0, {}, tried, t0);
      ASSERT_TRUE(p);
      EXPECT_EQ(p->index, 1 - failed);
      pool.finish(*p, false, {}, t0);
    }
  }
}

// ----------------------------------------------------------------------------------------- max_in_flight

TEST(GatewayUpstreamPool, MaxInFlightAndTheCapacityCallback) {
  auto pool = pool_of({{.max_in_flight = 1}, {.max_in_flight = 2}});
  int wakeups = 0;
  pool.on_capacity([&] { ++wakeups; });
  std::vector<gw::Pick> held;
  for (int i = 0; i < 3; ++i) {
    const auto p = pool.pick(0, {}, none, t0);
    ASSERT_TRUE(p) << i;
    held.push_back(*p);
  }
  EXPECT_EQ(pool.snapshot(t0)[0].in_flight, 1u);
  EXPECT_EQ(pool.snapshot(t0)[1].in_flight, 2u);
  EXPECT_FALSE(pool.pick(0, {}, none, t0));
  EXPECT_FALSE(pool.pick(gw::stable_hash("any conversation"), {}, none, t0));
  EXPECT_FALSE(pool.has_capacity(t0));
  EXPECT_EQ(wakeups, 0);

  // One ends on u1: capacity there, and the callback says so.
  const auto on_u1 = std::find_if(held.begin(), held.end(), [](const gw::Pick& p) { return p.index == 1; });
  pool.finish(*on_u1, false, {}, t0);
  EXPECT_EQ(wakeups, 1);
  EXPECT_TRUE(pool.has_capacity(t0));
  const auto next = pool.pick(0, {}, none, t0);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->index, 1u);
  EXPECT_FALSE(pool.has_capacity(t0));

  // A failure frees a slot too, and an upstream coming up again wakes a waiter.
  const auto on_u0 = std::find_if(held.begin(), held.end(), [](const gw::Pick& p) { return p.index == 0; });
  pool.finish(*on_u0, true, "reset", t0);
  EXPECT_EQ(wakeups, 2);
  pool.health(0, false, "refused", {}, t0);
  EXPECT_EQ(wakeups, 2);
  EXPECT_FALSE(pool.has_capacity(t0));
  pool.health(0, true, {}, {}, t0);
  EXPECT_EQ(wakeups, 3);
  EXPECT_TRUE(pool.has_capacity(t0));
  pool.health(0, true, {}, {}, t0);  // still up: nothing new
  EXPECT_EQ(wakeups, 3);
}

TEST(GatewayUpstreamPool, AFullPrimaryDoesNotOpenTheStandbyToFreshRequests) {
  auto pool = pool_of({{.max_in_flight = 1}, {.standby = true}});
  const auto p = pool.pick(0, {}, none, t0);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->index, 0u);
  EXPECT_FALSE(pool.pick(0, {}, none, t0));  // they wait for the primary
  EXPECT_FALSE(pool.has_capacity(t0));
}

// ----------------------------------------------------------------------------------------- busy (503)

TEST(GatewayUpstreamPool, ABusyUpstreamGetsNothingBeforeItsRetryAfterAndIsNotAFailure) {
  auto pool = pool_of({{}, {}}, gw::Balance::least_outstanding, {.failures = 1, .cooldown = milliseconds(5000)});
  const auto p = pool.pick(0, {}, none, t0);
  ASSERT_TRUE(p);
  const std::size_t busy = p->index;
  const std::size_t other = 1 - busy;
  pool.busy(*p, std::chrono::seconds(2), t0);
  EXPECT_EQ(state(pool, busy, t0), gw::UpstreamState::up);  // no breaker: it answered
  EXPECT_TRUE(pool.snapshot(t0)[busy].busy);
  EXPECT_EQ(pool.snapshot(t0)[busy].in_flight, 0u);
  // A request of ours finishing there does not end an explicit Retry-After.
  const auto on_other = pool.pick(0, {}, none, t0);
  ASSERT_TRUE(on_other);
  EXPECT_EQ(on_other->index, other);
  pool.finish(*on_other, false, {}, t0);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(round_trip(pool, 0, {}, t0 + milliseconds(1999)), other);
  pool.health(other, false, "refused", {}, t0);
  EXPECT_FALSE(pool.pick(0, {}, none, t0 + milliseconds(1999)));
  EXPECT_FALSE(pool.has_capacity(t0 + milliseconds(1999)));
  const auto again = pool.pick(0, {}, none, t0 + milliseconds(2000));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->index, busy);
}

TEST(GatewayUpstreamPool, BusyWithoutRetryAfterEndsWhenOneOfOurRequestsThereFinishes) {
  auto pool = pool_of({{}});
  int wakeups = 0;
  pool.on_capacity([&] { ++wakeups; });
  const auto running = pool.pick(0, {}, none, t0);
  const auto refused = pool.pick(0, {}, none, t0);
  ASSERT_TRUE(running && refused);
  pool.busy(*refused, std::nullopt, t0);
  EXPECT_FALSE(pool.pick(0, {}, none, t0 + milliseconds(10)));
  const int before = wakeups;
  pool.finish(*running, false, {}, t0 + milliseconds(20));  // room there now
  EXPECT_GT(wakeups, before);
  EXPECT_TRUE(pool.pick(0, {}, none, t0 + milliseconds(20)));
  // With nothing of ours there, the hold ends by time; and "Retry-After: 0" still holds a moment.
  auto lone = pool_of({{}});
  lone.busy(*lone.pick(0, {}, none, t0), std::nullopt, t0);
  EXPECT_FALSE(lone.pick(0, {}, none, t0 + gw::UpstreamPool::busy_without_retry_after - milliseconds(1)));
  const auto after = lone.pick(0, {}, none, t0 + gw::UpstreamPool::busy_without_retry_after);
  ASSERT_TRUE(after);
  lone.busy(*after, std::chrono::seconds(0), t0 + std::chrono::seconds(5));
  EXPECT_FALSE(lone.pick(0, {}, none, t0 + std::chrono::seconds(5)));
  EXPECT_TRUE(lone.pick(0, {}, none, t0 + std::chrono::seconds(5) + gw::UpstreamPool::busy_at_least));
}

TEST(GatewayUpstreamPool, ARequestABusyPrimaryRefusedMayOverflowToTheStandby) {
  auto pool = pool_of({{}, {.standby = true}});
  const auto p = pool.pick(0, {}, none, t0);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->index, 0u);
  pool.busy(*p, std::chrono::seconds(1), t0);
  EXPECT_FALSE(pool.pick(0, {}, none, t0));  // a fresh request waits for the primary
  const auto overflow = pool.pick(0, {}, none, t0, true);
  ASSERT_TRUE(overflow);
  EXPECT_EQ(overflow->index, 1u);
}

TEST(GatewayUpstreamPool, AHalfOpenProbeAnsweredBusyClosesTheCircuit) {
  auto pool = pool_of({{}}, gw::Balance::least_outstanding, {.failures = 1, .cooldown = milliseconds(1000)});
  pool.finish(*pool.pick(0, {}, none, t0), true, "refused", t0);
  const auto t1 = t0 + milliseconds(1000);
  const auto probe = pool.pick(0, {}, none, t1);
  ASSERT_TRUE(probe && probe->probe);
  pool.busy(*probe, std::nullopt, t1);
  EXPECT_EQ(state(pool, 0, t1), gw::UpstreamState::up);
}

// ----------------------------------------------------------------------------------------- unproven failures

TEST(GatewayUpstreamPool, FailuresAfterTheRequestWasSentNeverOpenTheCircuit) {
  // A request that crashes its node, or a HEAD that times out waiting for a body: the request may be the
  // cause, so however many there are, the breaker stays closed (health checks judge the node).
  auto pool = pool_of({{}}, gw::Balance::least_outstanding, {.failures = 2, .cooldown = milliseconds(5000)});
  for (int i = 0; i < 10; ++i) pool.finish_unproven(*pool.pick(0, {}, none, t0), "reset after the request", t0);
  EXPECT_EQ(state(pool, 0, t0), gw::UpstreamState::up);
  EXPECT_EQ(pool.snapshot(t0)[0].in_flight, 0u);
  EXPECT_EQ(pool.snapshot(t0)[0].last_error, "reset after the request");
  // Nor do they reset a count of real failures, or close an open circuit through its probe.
  pool.finish(*pool.pick(0, {}, none, t0), true, "refused", t0);
  pool.finish_unproven(*pool.pick(0, {}, none, t0), "reset", t0);
  pool.finish(*pool.pick(0, {}, none, t0), true, "refused", t0);
  EXPECT_EQ(state(pool, 0, t0), gw::UpstreamState::open);
  const auto t1 = t0 + milliseconds(5000);
  const auto probe = pool.pick(0, {}, none, t1);
  ASSERT_TRUE(probe && probe->probe);
  pool.finish_unproven(*probe, "reset", t1);
  EXPECT_EQ(state(pool, 0, t1), gw::UpstreamState::half_open);
  const auto next = pool.pick(0, {}, none, t1);
  ASSERT_TRUE(next);
  EXPECT_TRUE(next->probe);
}

// ----------------------------------------------------------------------------------------- models

TEST(GatewayUpstreamPool, RoutesByModelOnceTheListsAreKnown) {
  auto pool = pool_of({{}, {}, {}});
  // Before any list: anything goes anywhere.
  std::set<std::size_t> seen;
  for (int i = 0; i < 9; ++i) seen.insert(round_trip(pool, 0, "m2"));
  EXPECT_EQ(seen.size(), 3u);

  pool.health(0, true, {}, {"m1", "shared"}, t0);
  pool.health(1, true, {}, {"m2", "shared"}, t0);
  pool.health(2, true, {}, {"m3", "shared"}, t0);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(round_trip(pool, 0, "m1"), 0u);
    EXPECT_EQ(round_trip(pool, 0, "m2"), 1u);
    EXPECT_EQ(round_trip(pool, gw::stable_hash("conv " + std::to_string(i)), "m3"), 2u);
  }
  seen.clear();
  for (int i = 0; i < 9; ++i) seen.insert(round_trip(pool, 0, "shared"));
  EXPECT_EQ(seen.size(), 3u);
  // A model nobody lists: not refused here (the upstream answers for it).
  seen.clear();
  for (int i = 0; i < 9; ++i) seen.insert(round_trip(pool, 0, "unknown"));
  EXPECT_EQ(seen.size(), 3u);
  // The only upstream with the model is down: wait rather than send it where it is not served.
  pool.health(1, false, "refused", {}, t0);
  EXPECT_FALSE(pool.pick(0, "m2", none, t0));
  // An empty list from a health check keeps the last known one.
  pool.health(1, true, {}, {}, t0);
  EXPECT_EQ(round_trip(pool, 0, "m2"), 1u);

  const auto models = pool.models();
  ASSERT_EQ(models.size(), 4u);
  EXPECT_EQ(models[0].first, "m1");
  EXPECT_EQ(models[0].second, (std::vector<std::size_t>{0}));
  EXPECT_EQ(models[1].first, "shared");
  EXPECT_EQ(models[1].second, (std::vector<std::size_t>{0, 1, 2}));
  EXPECT_EQ(models[2].first, "m2");
  EXPECT_EQ(models[2].second, (std::vector<std::size_t>{1}));
  EXPECT_EQ(models[3].first, "m3");
  EXPECT_EQ(models[3].second, (std::vector<std::size_t>{2}));
}

TEST(GatewayUpstreamPool, SnapshotAndNames) {
  auto pool = pool_of({{.weight = 2}, {.standby = true}});
  EXPECT_EQ(pool.size(), 2u);
  EXPECT_EQ(pool.name(0), "u0");
  const auto snap = pool.snapshot(t0);
  EXPECT_EQ(snap[0].url, "http://10.0.0.1:5000");
  EXPECT_TRUE(snap[0].serving);
  EXPECT_TRUE(snap[1].standby);
  EXPECT_FALSE(snap[1].serving);
  EXPECT_EQ(gw::to_string(gw::UpstreamState::half_open), "half_open");
  EXPECT_EQ(gw::stable_hash(""), 0xcbf29ce484222325ULL);  // FNV-1a's offset basis
  EXPECT_EQ(gw::stable_hash("a"), 0xaf63dc4c8601ec8cULL);
}
