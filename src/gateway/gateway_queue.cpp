// Requests that wait for an upstream with room: the queue, and the wait.
#include <boost/asio/post.hpp>

#include "gateway/gateway_internal.h"

namespace clawbot::gateway::detail {

std::shared_ptr<WaitQueue::Waiter> WaitQueue::enter(asio::any_io_executor executor) {
  std::lock_guard lock(mutex_);
  if (waiters_.size() >= max_) return nullptr;
  auto waiter = std::make_shared<Waiter>(std::move(executor));
  waiters_.push_back(waiter);
  return waiter;
}

void WaitQueue::leave(const std::shared_ptr<Waiter>& waiter) {
  std::lock_guard lock(mutex_);
  std::erase(waiters_, waiter);
}

void WaitQueue::wake_one() {
  std::shared_ptr<Waiter> first;
  {
    std::lock_guard lock(mutex_);
    if (waiters_.empty()) return;
    first = waiters_.front();
    waiters_.pop_front();
    waiters_.push_back(first);  // it stays queued until it leaves; others go before it next time
  }
  asio::post(first->timer.get_executor(), [first] { first->timer.cancel(); });
}

std::size_t WaitQueue::size() const {
  std::lock_guard lock(mutex_);
  return waiters_.size();
}

asio::awaitable<std::optional<Pick>> Gateway::wait_for_upstream(http::Exchange& ex, const RequestFacts& facts,
                                                                const std::vector<std::size_t>& tried,
                                                                Clock::time_point deadline, bool overflow,
                                                                Error& refusal, bool& client_left) {
  std::shared_ptr<WaitQueue::Waiter> waiter;
  std::optional<Pick> pick;
  // A client that leaves while its request waits gives its place up at once (and nothing goes upstream).
  std::shared_ptr<ClientWatch> watch;
  // "affinity": false in gateway.json turns conversation affinity off.
  const std::uint64_t affinity = config_.affinity ? facts.affinity : 0;
  for (;;) {
    pick = pool_.pick(affinity, facts.model, tried, Clock::now(), overflow);
    if (pick) break;
    // This request has failed on every upstream: none will be picked for it however long it waits (the
    // caller answers 502 with the last failure; `refusal` stays empty).
    if (tried.size() >= pool_.size()) break;
    const auto now = Clock::now();
    if (!waiter) {
      waiter = queue_.enter(ex.executor());
      if (waiter) {
        watch = std::make_shared<ClientWatch>();
        ex.watch_for_close([watch, waiter] {
          if (!watch->active) return;
          watch->client_left = true;
          waiter->timer.cancel();
        });
      }
    }
    if (!waiter) {
      refusal = Error{ErrorKind::unavailable,
                      "every upstream is busy or down and " + std::to_string(config_.queue.max_waiting) +
                          " requests already wait; retry shortly",
                      {},
                      "queue_full"};
      break;
    }
    if (now >= deadline) {
      refusal = Error{ErrorKind::unavailable,
                      "no upstream could take the request within " +
                          std::to_string(config_.queue.timeout.count()) + " ms (all busy or down)",
                      {},
                      "upstream_unavailable"};
      break;
    }
    // Woken when capacity appears; also every 250 ms, since a circuit's cooldown and an upstream's
    // Retry-After end by time alone.
    waiter->timer.expires_at(std::min(deadline, now + std::chrono::milliseconds(250)));
    co_await waiter->timer.async_wait(use_tuple);
    if (watch && watch->client_left) {
      client_left = true;
      break;
    }
  }
  if (watch && watch->active) {
    watch->active = false;
    ex.stop_watching();  // (nothing is being written now)
  }
  if (waiter) queue_.leave(waiter);
  co_return pick;
}

}  // namespace clawbot::gateway::detail
