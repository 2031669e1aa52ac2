// A worker's own resources: the watches that cancel an upstream request when its client leaves, armed by the
// worker's ticker, and the read buffers its requests borrow.
#include "gateway/gateway_internal.h"

namespace clawbot::gateway::detail {

void Worker::add(UpstreamWatch& watch) {
  watch.prev_ = last_watch;
  watch.next_ = nullptr;
  (last_watch ? last_watch->next_ : first_watch) = &watch;
  last_watch = &watch;
  watch.listed_ = true;
  if (!ticking) tick_later();
}
void Worker::remove(UpstreamWatch& watch) {
  if (!watch.listed_) return;
  (watch.prev_ ? watch.prev_->next_ : first_watch) = watch.next_;
  (watch.next_ ? watch.next_->prev_ : last_watch) = watch.prev_;
  watch.listed_ = false;
}
void Worker::tick_later() {
  ticking = true;
  watch_ticker.expires_after(late_watch_delay);
  watch_ticker.async_wait([this](const beast::error_code& ec) {
    ticking = false;
    if (ec) return;
    // Oldest first: stop at the first watch that is not due yet.
    const auto due = Clock::now() - late_watch_delay;
    while (first_watch && first_watch->since() <= due) {
      UpstreamWatch& watch = *first_watch;
      remove(watch);
      watch.arm();
    }
    if (first_watch) tick_later();
  });
}

UpstreamWatch::UpstreamWatch(Worker& worker, http::Exchange& exchange, http::Client& upstream)
    : worker_(worker), exchange_(exchange), upstream_(upstream), since_(Clock::now()) {
  worker_.add(*this);
}

void UpstreamWatch::arm() {
  state_ = std::make_shared<ClientWatch>();
  exchange_.watch_for_close([state = state_, upstream = &upstream_] {
    if (!state->active) return;
    state->client_left = true;
    upstream->cancel();
  });
}

void UpstreamWatch::stop() {
  worker_.remove(*this);
  if (state_ && state_->active) {
    state_->active = false;
    exchange_.stop_watching();
  }
}

BorrowedChunk::BorrowedChunk(Worker& worker) : worker_(worker) {
  if (worker.spare_chunks.empty()) {
    chunk_ = std::make_unique_for_overwrite<char[]>(Worker::chunk_size);
  } else {
    chunk_ = std::move(worker.spare_chunks.back());
    worker.spare_chunks.pop_back();
  }
}
BorrowedChunk::~BorrowedChunk() {
  if (worker_.spare_chunks.size() < 64) worker_.spare_chunks.push_back(std::move(chunk_));
}

}  // namespace clawbot::gateway::detail
