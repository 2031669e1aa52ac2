#include "gateway/gateway.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cstring>
#include <deque>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "common/json_read.h"
#include "common/text.h"
#include "discovery/discovery.h"
#include "gateway/config.h"
#include "gateway/door/door.h"
#include "gateway/forward.h"
#include "gateway/model_list.h"
#include "gateway/request_facts.h"
#include "gateway/token_account.h"
#include "gateway/upstream_pool.h"
#include "monitor/metrics.h"

namespace clawbot::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Response headers worth passing back to the client (the rest the gateway sets itself).
bool pass_back(std::string_view name) {
  return beast::iequals(name, "retry-after") || beast::iequals(name, "x-request-id") ||
         beast::iequals(name, "openai-processing-ms") || beast::iequals(name, "cache-control");
}

// A body the gateway passes on without reading it as JSON: a file upload or raw bytes.
bool is_upload(std::string_view content_type) {
  const auto starts = [&](std::string_view prefix) {
    return content_type.size() >= prefix.size() &&
           beast::iequals(content_type.substr(0, prefix.size()), prefix);
  };
  return starts("multipart/") || starts("application/octet-stream") || starts("audio/") || starts("image/");
}

// "req-" and 24 hex digits, in `out`; returns it as text.
std::string_view random_request_id(std::array<char, 28>& out) {
  thread_local std::mt19937_64 random(std::random_device{}());
  std::memcpy(out.data(), "req-", 4);
  std::size_t at = 4;
  for (std::uint64_t bits : {random(), random()})
    for (int i = 0; i < 12; ++i, bits >>= 4) out[at++] = text::hex_digits[bits & 15];
  return std::string_view(out.data(), out.size());
}

// From a fast non-streamed answer (milliseconds) to a long generation (minutes).
const std::vector<double>& latency_buckets() {
  static const std::vector<double> buckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                              1,     2.5,    5,     10,   30,    60,   120, 300};
  return buckets;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string address_text(const asio::ip::address& address) {
  // The same few clients ask again and again: their text is kept per thread (inet_ntop formats with
  // sprintf).
  struct Known {
    asio::ip::address address;
    std::string text;
  };
  thread_local std::array<Known, 16> known;
  thread_local std::size_t next = 0;
  for (const auto& entry : known)
    if (!entry.text.empty() && entry.address == address) return entry.text;
  Known& entry = known[next++ % known.size()];
  entry.address = address;
  entry.text = address.is_v6() && address.to_v6().is_v4_mapped()
                   ? asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_string()
                   : address.to_string();
  return entry.text;
}

std::string event_text(const http::SseEvent& event) {
  std::string text;
  text.reserve(event.data.size() + 16);
  if (!event.event.empty()) text.append("event: ").append(event.event).append("\n");
  if (!event.id.empty()) text.append("id: ").append(event.id).append("\n");
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = event.data.find('\n', start);
    text.append("data: ").append(event.data, start,
                                 end == std::string::npos ? std::string::npos : end - start);
    text.append("\n");
    if (end == std::string::npos) break;
    start = end + 1;
  }
  text.append("\n");
  return text;
}

// Requests waiting for an upstream with capacity. Waiters live on their sessions' executors; a wake-up
// from another thread is posted to the waiter's own executor.
class WaitQueue {
 public:
  struct Waiter {
    explicit Waiter(asio::any_io_executor executor) : timer(std::move(executor)) {}
    asio::steady_timer timer;
  };

  explicit WaitQueue(std::size_t max_waiting) : max_(max_waiting) {}

  std::shared_ptr<Waiter> enter(asio::any_io_executor executor) {
    std::lock_guard lock(mutex_);
    if (waiters_.size() >= max_) return nullptr;
    auto waiter = std::make_shared<Waiter>(std::move(executor));
    waiters_.push_back(waiter);
    return waiter;
  }
  void leave(const std::shared_ptr<Waiter>& waiter) {
    std::lock_guard lock(mutex_);
    std::erase(waiters_, waiter);
  }
  void wake_one() {
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
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return waiters_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::deque<std::shared_ptr<Waiter>> waiters_;
  std::size_t max_;
};

// "allow" as the door reads it; a bad entry is a gateway.json error that names it.
door::AllowList parse_allow_list(const GatewayConfig& config) {
  try {
    return door::AllowList::parse(config.allow);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(config.file.string() + ": \"allow\": " + e.what());
  }
}

tls::ServerConfig server_tls(const ListenTls& tls) {
  return tls::server_config(tls.cert, tls.key, tls.client_ca);
}

// A request whose client may leave while the gateway waits (for an upstream, or on one): set when it does.
struct ClientWatch {
  bool active = true;  // cleared before stop_watching(), so a late callback does nothing
  bool client_left = false;
};

class Gateway;
struct Worker;

// Watches the client of a request that waits on its upstream, so that a client that leaves cancels the
// upstream request. The watch is armed only once the upstream has been slow to answer (a worker's ticker
// arms it after `late_watch_delay`): a wait on the client's socket costs an epoll_ctl and a cancel per
// request, a twelfth of the gateway's time per request with a fast upstream, and nobody leaves a request
// that is answered within milliseconds.
class UpstreamWatch {
 public:
  UpstreamWatch(Worker& worker, http::Exchange& exchange, http::Client& upstream);
  ~UpstreamWatch() { stop(); }
  UpstreamWatch(const UpstreamWatch&) = delete;
  UpstreamWatch& operator=(const UpstreamWatch&) = delete;

  bool client_left() const noexcept { return state_ && state_->client_left; }
  // Ends the watch; only while no write to the client is in progress (it cancels the socket's waits).
  void stop();
  // The ticker's part: watch now.
  void arm();
  Clock::time_point since() const noexcept { return since_; }

 private:
  friend struct Worker;
  Worker& worker_;
  http::Exchange& exchange_;
  http::Client& upstream_;
  Clock::time_point since_;
  std::shared_ptr<ClientWatch> state_;  // made when armed; the socket wait's callback shares it
  UpstreamWatch* prev_ = nullptr;       // the worker's list of unarmed watches
  UpstreamWatch* next_ = nullptr;
  bool listed_ = false;
};

constexpr auto late_watch_delay = std::chrono::milliseconds(20);

// One I/O thread: its own io_context, its own listening sockets (SO_REUSEPORT) and its own idle upstream
// connections, so that nothing on the request path crosses threads but the shared counters.
struct Worker {
  asio::io_context io{1};
  std::vector<std::unique_ptr<http::Server>> servers;
  std::vector<std::vector<std::unique_ptr<http::Client>>> idle;  // per upstream
  // Metric series this thread has used, resolved once: (route or upstream index) << 16 | HTTP status.
  std::unordered_map<int, monitor::CounterHandle> route_counters;
  std::unordered_map<int, monitor::CounterHandle> upstream_counters;
  // Read buffers of finished requests, for the next ones: a fresh 16 KiB buffer per request made glibc grow
  // and trim its heap (brk) over and over.
  static constexpr std::size_t chunk_size = 16384;
  std::vector<std::unique_ptr<char[]>> spare_chunks;
  // Unarmed upstream watches, oldest first, and the ticker that arms them (running while there are any).
  UpstreamWatch* first_watch = nullptr;
  UpstreamWatch* last_watch = nullptr;
  asio::steady_timer watch_ticker{io};
  bool ticking = false;

  void add(UpstreamWatch& watch) {
    watch.prev_ = last_watch;
    watch.next_ = nullptr;
    (last_watch ? last_watch->next_ : first_watch) = &watch;
    last_watch = &watch;
    watch.listed_ = true;
    if (!ticking) tick_later();
  }
  void remove(UpstreamWatch& watch) {
    if (!watch.listed_) return;
    (watch.prev_ ? watch.prev_->next_ : first_watch) = watch.next_;
    (watch.next_ ? watch.next_->prev_ : last_watch) = watch.prev_;
    watch.listed_ = false;
  }
  void tick_later() {
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
};

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

// A read buffer borrowed from its worker for one request.
class BorrowedChunk {
 public:
  explicit BorrowedChunk(Worker& worker) : worker_(worker) {
    if (worker.spare_chunks.empty()) {
      chunk_ = std::make_unique_for_overwrite<char[]>(Worker::chunk_size);
    } else {
      chunk_ = std::move(worker.spare_chunks.back());
      worker.spare_chunks.pop_back();
    }
  }
  ~BorrowedChunk() {
    if (worker_.spare_chunks.size() < 64) worker_.spare_chunks.push_back(std::move(chunk_));
  }
  BorrowedChunk(const BorrowedChunk&) = delete;
  BorrowedChunk& operator=(const BorrowedChunk&) = delete;
  char* data() const noexcept { return chunk_.get(); }
  static constexpr std::size_t size() noexcept { return Worker::chunk_size; }

 private:
  Worker& worker_;
  std::unique_ptr<char[]> chunk_;
};

class Gateway {
 public:
  Gateway(GatewayConfig config, bool verbose);
  int run();

 private:
  struct Context {  // one request as the door and the audit log see it
    Clock::time_point start = Clock::now();
    std::string key_id;
    std::string client;
    std::string model;
    std::string upstream;
    TokenAccount tokens;  // reserved, counted and settled against the key's token limit
    int status = 0;
    std::string prompt;
  };

  http::Handler guarded(Worker& worker,
                        asio::awaitable<void> (Gateway::*handler)(Worker&, http::Exchange&, Context&));
  struct Refusal {
    Error error;
    Headers headers;
  };
  // The door's checks (allow-list, key, rate limit); a refusal to answer, or none. Not a coroutine: it runs
  // for every request and almost always lets it in.
  std::optional<Refusal> admit(http::Exchange& ex, Context& ctx) {
    return admit(ex.request(), ex.path(), ex.remote_address(), ctx, true);
  }
  // The same on a request's head; `count` false: the allow-list and the key only (the server's header check,
  // before a body is read: the request comes back through admit() once it is read).
  std::optional<Refusal> admit(const http::RequestHead& request, std::string_view path,
                               const asio::ip::address& address, Context& ctx, bool count);
  // A request the header check refused (its body unread): admit() refuses it again, with its headers.
  asio::awaitable<void> refused(Worker&, http::Exchange& ex, Context& ctx) {
    co_await reply_error(ex, ctx, *ex.refusal());
  }
  static Refusal rate_limited(const std::string& key_id, const door::RateLimiter::Decision& decision);
  asio::awaitable<void> reply_error(http::Exchange& ex, Context& ctx, const Error& error, Headers headers);
  asio::awaitable<void> reply_error(http::Exchange& ex, Context& ctx, const Error& error) {
    Headers none;  // (named: no temporaries inside co_await expressions, for GCC 12)
    co_await reply_error(ex, ctx, error, std::move(none));
  }
  void finish(Worker& worker, http::Exchange& ex, Context& ctx);

  asio::awaitable<void> health(Worker&, http::Exchange& ex, Context& ctx);
  asio::awaitable<void> metrics(Worker&, http::Exchange& ex, Context& ctx);
  asio::awaitable<void> models(Worker&, http::Exchange& ex, Context& ctx);
  asio::awaitable<void> forward(Worker& worker, http::Exchange& ex, Context& ctx);
  // A 404 model_not_found when every upstream's model list is known and none has `model`; else nothing.
  std::optional<Error> unserved_model(std::string_view model);
  asio::awaitable<std::optional<Pick>> wait_for_upstream(http::Exchange& ex, const RequestFacts& facts,
                                                         const std::vector<std::size_t>& tried,
                                                         Clock::time_point deadline, bool overflow,
                                                         Error& refusal, bool& client_left);
  enum class Relay {
    complete,
    client_left,
    failed_before_content,       // the connection failed before any content reached the client
    unavailable_before_content,  // the upstream's "unavailable" error event before any content
    failed_mid_stream,
  };
  asio::awaitable<Relay> relay_stream(http::Exchange& ex, Context& ctx, http::ResponseReader& reader,
                                      bool drop_usage_chunk, const UpstreamWatch& watch, Headers headers,
                                      std::string& failure);

  std::unique_ptr<http::Client> take_client(Worker& worker, std::size_t index);
  void give_back(Worker& worker, std::size_t index, std::unique_ptr<http::Client> client);

  asio::awaitable<void> health_loop(Worker& worker);
  asio::awaitable<void> check_upstream(Worker& worker, std::size_t index);

  GatewayConfig config_;
  bool verbose_;
  UpstreamPool pool_;
  WaitQueue queue_;
  door::AllowList allow_;
  std::unique_ptr<door::KeyVerifier> keys_;
  door::RateLimiter limiter_;
  std::unique_ptr<door::AuditLog> audit_;
  monitor::Registry registry_;
  monitor::CounterHandle prompt_tokens_;
  monitor::CounterHandle generation_tokens_;
  std::vector<monitor::HistogramHandle> upstream_latency_;  // per upstream
  std::atomic<std::int64_t> in_flight_{0};
  std::mutex models_mutex_;
  std::vector<ModelList> upstream_models_;  // per upstream: what its /v1/models said, as read
  std::vector<char> models_read_;           // per upstream: its list was read at least once
  std::vector<json> upstream_memory_;       // per upstream: the memory its /health reports (null: none)
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<discovery::Advertiser> advertiser_;  // mDNS/DNS-SD while running
};

Gateway::Gateway(GatewayConfig config, bool verbose)
    : config_(std::move(config)),
      verbose_(verbose),
      pool_(config_.upstreams, config_.balance, config_.circuit_breaker),
      queue_(config_.queue.max_waiting),
      upstream_models_(config_.upstreams.size()),
      models_read_(config_.upstreams.size(), 0),
      upstream_memory_(config_.upstreams.size()) {
  allow_ = parse_allow_list(config_);
  if (config_.auth == "keys")
    keys_ = std::make_unique<door::KeyVerifier>(config_.keys_db, config_.secret_file);
  if (!config_.audit_log.empty()) {
    audit_ = std::make_unique<door::AuditLog>(
        config_.audit_log, config_.keys_db,
        door::AuditLog::Options{config_.secret_file, config_.audit_witness,
                                std::chrono::seconds(config_.audit_witness_interval_s)});
    for (const auto& note : audit_->notes()) spdlog::info("audit log: {}", note);
    if (!audit_->opening_warning().empty()) spdlog::warn("audit log: {}", audit_->opening_warning());
  }
  pool_.on_capacity([this] { queue_.wake_one(); });

  prompt_tokens_ =
      registry_.counter("clawbot_gateway_prompt_tokens_total", "Prompt tokens of answered requests");
  generation_tokens_ =
      registry_.counter("clawbot_gateway_generation_tokens_total", "Generated tokens of answered requests");
  for (std::size_t i = 0; i < pool_.size(); ++i)
    upstream_latency_.push_back(
        registry_.histogram("clawbot_gateway_upstream_request_duration_seconds",
                            "Time from sending a request upstream to the end of its answer",
                            latency_buckets(), {{"upstream", pool_.name(i)}}));
  registry_.gauge_callback("clawbot_gateway_requests_in_flight", "Requests the gateway is handling",
                           [this] { return static_cast<double>(in_flight_.load()); });
  registry_.gauge_callback("clawbot_gateway_queue_length", "Requests waiting for an upstream",
                           [this] { return static_cast<double>(queue_.size()); });
  if (keys_)
    registry_.gauge_callback("clawbot_gateway_key_rows_rejected",
                             "Rows of the keys database refused: MAC wrong, or revoked and active again",
                             [this] { return static_cast<double>(keys_->rejected_rows()); });
  registry_.gauge_callback("process_resident_memory_bytes", "Resident memory of the gateway process",
                           [] { return monitor::process_rss_bytes(); });
  for (std::size_t i = 0; i < pool_.size(); ++i) {
    const monitor::Labels labels{{"upstream", pool_.name(i)}};
    registry_.gauge_callback(
        "clawbot_gateway_upstream_in_flight", "Requests in flight on the upstream",
        [this, i] { return static_cast<double>(pool_.snapshot(Clock::now())[i].in_flight); }, labels);
    registry_.gauge_callback(
        "clawbot_gateway_upstream_up", "1 when the upstream would receive traffic now, else 0",
        [this, i] { return pool_.snapshot(Clock::now())[i].serving ? 1.0 : 0.0; }, labels);
    for (const auto state :
         {UpstreamState::up, UpstreamState::down, UpstreamState::open, UpstreamState::half_open}) {
      monitor::Labels state_labels = labels;
      state_labels.emplace_back("state", std::string(to_string(state)));
      registry_.gauge_callback(
          "clawbot_gateway_upstream_state", "1 for the upstream's current state (up, down, open, half_open)",
          [this, i, state] { return pool_.snapshot(Clock::now())[i].state == state ? 1.0 : 0.0; },
          state_labels);
    }
  }
}

// ------------------------------------------------------------------------------------------- the door

http::Handler Gateway::guarded(Worker& worker,
                               asio::awaitable<void> (Gateway::*handler)(Worker&, http::Exchange&,
                                                                         Context&)) {
  return [this, &worker, handler](http::Exchange& ex) -> asio::awaitable<void> {
    // (A named coroutine per request: the lambda only starts it, so its captures need not outlive it.)
    return
        [](Gateway* self, Worker* w, http::Exchange* exchange,
           asio::awaitable<void> (Gateway::*h)(Worker&, http::Exchange&, Context&)) -> asio::awaitable<void> {
          Context ctx;
          ++self->in_flight_;
          // Whatever happens to the request, it is answered, counted, settled and recorded: a request that
          // threw once left the audit log and requests_total without a trace, and requests_in_flight one up.
          std::optional<Error> failure;  // (co_await may not appear inside a catch handler)
          try {
            std::optional<Refusal> refusal = self->admit(*exchange, ctx);
            if (refusal)
              co_await self->reply_error(*exchange, ctx, refusal->error, std::move(refusal->headers));
            else
              co_await (self->*h)(*w, *exchange, ctx);
          } catch (const std::exception& e) {
            failure = answer_for(e);
            if (failure->kind == ErrorKind::internal)
              spdlog::error("request {} failed: {}", exchange->path(), e.what());
          }
          if (failure && !exchange->responded()) {
            try {
              co_await self->reply_error(*exchange, ctx, *failure);
            } catch (const std::exception&) {
              ctx.status = http_status(failure->kind);  // the client is gone
            }
          } else if (failure && ctx.status == 0) {
            ctx.status = http_status(failure->kind);
          }
          --self->in_flight_;
          self->finish(*w, *exchange, ctx);
        }(this, &worker, &ex, handler);
  };
}

asio::awaitable<void> Gateway::reply_error(http::Exchange& ex, Context& ctx, const Error& error,
                                           Headers headers) {
  ctx.status = http_status(error.kind);
  co_await ex.respond_error(error, std::move(headers));
}

std::optional<Gateway::Refusal> Gateway::admit(const http::RequestHead& request, std::string_view path,
                                               const asio::ip::address& address, Context& ctx, bool count) {
  ctx.client = address_text(address);
  if (!allow_.allows(address)) {
    const Error error{ErrorKind::forbidden,
                      "this gateway does not accept requests from " + ctx.client +
                          " (not in its allow-list); ask its operator to add your network to \"allow\"",
                      {},
                      "address_not_allowed"};
    return Refusal{error, {}};
  }
  const bool open_route = path == "/health" && config_.health_open;
  if (keys_) {
    std::string_view presented;
    if (auto it = request.find(bhttp::field::authorization); it != request.end()) {
      presented =
          door::KeyVerifier::key_from_authorization(std::string_view(it->value().data(), it->value().size()));
    } else if (auto key = request.find("x-api-key"); key != request.end()) {
      presented = std::string_view(key->value().data(), key->value().size());
    }
    door::KeyRejection why{};
    const auto info = presented.empty() ? std::nullopt : keys_->verify(presented, &why);
    // /health answers anyone (up or down); a valid key also gets the details, without using its limits.
    if (open_route) {
      if (info) ctx.key_id = info->id;
      return std::nullopt;
    }
    if (!info) {
      const Error error{ErrorKind::unauthorized,
                        presented.empty() ? std::string("this gateway needs an API key: send it as "
                                                        "\"Authorization: Bearer <key>\"")
                                          : std::string("the API key is not valid here (unknown, revoked or "
                                                        "mistyped); ask the gateway's operator for a key"),
                        {},
                        "invalid_api_key"};
      if (!presented.empty() && count)  // (once: the header check asks first)
        spdlog::info("refused a key from {}: {}", ctx.client, door::to_string(why));
      return Refusal{error, {{"WWW-Authenticate", "Bearer"}}};
    }
    ctx.key_id = info->id;
    if (!count) return std::nullopt;
    const auto decision = limiter_.admit(*info, config_.limits.requests_per_minute,
                                         config_.limits.tokens_per_minute, Clock::now());
    if (!decision.allowed) return rate_limited(info->id, decision);
    ctx.tokens.open(limiter_, info->id, decision.tokens_per_minute);
  }
  return std::nullopt;
}

Gateway::Refusal Gateway::rate_limited(const std::string& key_id,
                                       const door::RateLimiter::Decision& decision) {
  const Error error{ErrorKind::rate_limited,
                    "rate limit of key " + key_id + " reached (" + decision.reason + "); retry in " +
                        std::to_string(decision.retry_after.count()) + " s",
                    {},
                    {}};
  return Refusal{error, {{"Retry-After", std::to_string(decision.retry_after.count())}}};
}

void Gateway::finish(Worker& worker, http::Exchange& ex, Context& ctx) {
  const double seconds = seconds_since(ctx.start);
  const std::string_view route = ex.path();
  // Known routes only as labels: arbitrary paths would grow the metrics without bound.
  static constexpr std::array<std::string_view, 9> known = {"/v1/chat/completions",
                                                            "/v1/completions",
                                                            "/v1/embeddings",
                                                            "/v1/models",
                                                            "/health",
                                                            "/metrics",
                                                            "/infill",
                                                            "/tokenize",
                                                            "other"};
  const auto route_index =
      static_cast<int>(std::find(known.begin(), known.end() - 1, route) - known.begin());  // 8: other
  const int key = route_index << 16 | (ctx.status & 0xffff);
  auto counter = worker.route_counters.find(key);
  if (counter == worker.route_counters.end()) {
    const monitor::Labels labels{{"route", std::string(known[route_index])},
                                 {"status", std::to_string(ctx.status)}};
    counter = worker.route_counters
                  .emplace(key, registry_.counter("clawbot_gateway_requests_total",
                                                  "Requests by route and status", labels))
                  .first;
  }
  counter->second.add();
  ctx.tokens.settle(Clock::now());
  const std::int64_t tokens_in = ctx.tokens.prompt_tokens();
  const std::int64_t tokens_out = ctx.tokens.completion_tokens();
  if (tokens_in + tokens_out > 0) {
    prompt_tokens_.add(static_cast<double>(tokens_in));
    generation_tokens_.add(static_cast<double>(tokens_out));
  }
  if (audit_ && route != "/metrics" && route != "/health") {
    door::AuditRecord record;
    record.time = std::chrono::system_clock::now();
    record.key_id = ctx.key_id;
    record.client = ctx.client;
    record.route = std::string(ex.request().method_string()) + " " + std::string(route);
    record.model = ctx.model;
    record.upstream = ctx.upstream;
    record.status = ctx.status;
    record.tokens_in = tokens_in;
    record.tokens_out = tokens_out;  // what reached the client, counted as it streamed when no usage came
    record.latency_ms = seconds * 1000.0;
    record.prompt = std::move(ctx.prompt);
    audit_->append(std::move(record));
  }
  if (verbose_)
    spdlog::info("{} {} {} {} {:.1f} ms", ctx.client, ex.request().method_string(), route, ctx.status,
                 seconds * 1000);
}

// ------------------------------------------------------------------------------------------- own routes

// Up or down for anyone; the upstreams (names, URLs, last errors) only for a valid key, or when the gateway
// needs no keys at all.
asio::awaitable<void> Gateway::health(Worker&, http::Exchange& ex, Context& ctx) {
  const auto upstreams = pool_.snapshot(Clock::now());
  const bool details = !keys_ || !ctx.key_id.empty();
  json list = json::array();
  std::size_t serving = 0;
  for (std::size_t i = 0; i < upstreams.size(); ++i) {
    const auto& u = upstreams[i];
    serving += u.serving ? 1 : 0;
    if (!details) continue;
    json item = {{"name", u.name},       {"url", u.url},         {"state", to_string(u.state)},
                 {"standby", u.standby}, {"serving", u.serving}, {"in_flight", u.in_flight},
                 {"models", u.models}};
    if (!u.last_error.empty() && u.state != UpstreamState::up) item["last_error"] = u.last_error;
    {
      std::lock_guard lock(models_mutex_);
      if (!upstream_models_[i].error.empty()) item["models_error"] = upstream_models_[i].error;
      if (!upstream_memory_[i].is_null()) item["memory"] = upstream_memory_[i];
    }
    list.push_back(std::move(item));
  }
  const auto primaries = static_cast<std::size_t>(
      std::count_if(upstreams.begin(), upstreams.end(), [](const auto& u) { return !u.standby; }));
  const bool all = serving >= primaries;
  json body = {{"status", serving == 0 ? "unavailable" : (all ? "ok" : "degraded")}, {"role", "gateway"}};
  if (details) {
    body["queue"] = queue_.size();
    body["upstreams"] = std::move(list);
  }
  ctx.status = serving == 0 ? 503 : 200;
  co_await ex.respond_json(ctx.status, body);
}

asio::awaitable<void> Gateway::metrics(Worker&, http::Exchange& ex, Context& ctx) {
  ctx.status = 200;
  std::string text = registry_.render();
  co_await ex.respond_text(200, std::move(text), "text/plain; version=0.0.4; charset=utf-8");
}

// The models of every upstream that is up, each once, with the upstreams that serve it.
asio::awaitable<void> Gateway::models(Worker&, http::Exchange& ex, Context& ctx) {
  const auto upstreams = pool_.snapshot(Clock::now());
  json data = json::array();
  std::map<std::string, std::size_t> position;
  {
    std::lock_guard lock(models_mutex_);
    for (std::size_t i = 0; i < upstreams.size(); ++i) {
      if (upstreams[i].state == UpstreamState::down) continue;
      // (Entries as read_model_list rebuilt them: each an object with a string id.)
      for (const auto& model : upstream_models_[i].entries) {
        const std::string& id = model.at("id").get_ref<const std::string&>();
        auto [it, inserted] = position.emplace(id, data.size());
        if (inserted) {
          json entry = model;
          entry["upstreams"] = json::array();
          data.push_back(std::move(entry));
        }
        data[it->second]["upstreams"].push_back(upstreams[i].name);
      }
    }
  }
  const json body = {{"object", "list"}, {"data", std::move(data)}};
  ctx.status = 200;
  co_await ex.respond_json(200, body);
}

std::optional<Error> Gateway::unserved_model(std::string_view model) {
  if (model.empty()) return std::nullopt;
  std::vector<std::string_view> served;
  std::lock_guard lock(models_mutex_);
  for (std::size_t i = 0; i < upstream_models_.size(); ++i) {
    if (!models_read_[i]) return std::nullopt;  // an upstream whose models are unknown may serve it
    for (const auto& id : upstream_models_[i].ids) {
      if (id == model) return std::nullopt;
      if (std::find(served.begin(), served.end(), id) == served.end()) served.push_back(id);
    }
  }
  std::string list;
  for (std::size_t i = 0; i < served.size() && i < 20; ++i) list.append(i ? ", " : "").append(served[i]);
  if (served.size() > 20) list += ", ... (" + std::to_string(served.size()) + " in all: GET /v1/models)";
  return Error{ErrorKind::not_found,
               "the model " + json_read::describe(json(std::string(model)), 100) +
                   " is not served by this gateway; it serves: " + (list.empty() ? "none yet" : list),
               "model", "model_not_found"};
}

// ------------------------------------------------------------------------------------------- proxying

std::unique_ptr<http::Client> Gateway::take_client(Worker& worker, std::size_t index) {
  auto& idle = worker.idle[index];
  if (!idle.empty()) {
    auto client = std::move(idle.back());
    idle.pop_back();
    return client;
  }
  const Upstream& u = config_.upstreams[index];
  http::ClientOptions options;
  options.connect_timeout = config_.connect_timeout;
  options.read_timeout = config_.read_timeout;
  options.tls_ca_file = u.tls_ca_file;
  options.tls_insecure = u.tls_insecure;
  options.max_event_bytes = 64u << 20;
  options.pooled = true;
  if (!u.api_key.empty()) options.headers.emplace_back("Authorization", "Bearer " + u.api_key);
  return std::make_unique<http::Client>(worker.io.get_executor(), u.parsed, std::move(options));
}

void Gateway::give_back(Worker& worker, std::size_t index, std::unique_ptr<http::Client> client) {
  constexpr std::size_t max_idle = 256;
  auto& idle = worker.idle[index];
  if (client->connected() && idle.size() < max_idle) idle.push_back(std::move(client));
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

asio::awaitable<void> Gateway::forward(Worker& worker, http::Exchange& ex, Context& ctx) {
  const auto& request = ex.request();
  std::string_view body = request.body();
  std::string changed_body;  // when the gateway asks for usage the client did not ask for
  const auto type = request.find(bhttp::field::content_type);
  // Nodes read a body as JSON whatever its Content-Type says (curl -d sends form-urlencoded): so does the
  // gateway, but for uploads.
  const bool json_body =
      !body.empty() &&
      (type == request.end() || !is_upload(std::string_view(type->value().data(), type->value().size())));
  std::string_view session;
  if (auto h = request.find("x-session-id"); h != request.end())
    session = std::string_view(h->value().data(), h->value().size());
  RequestFacts facts = json_body ? scan_request(body, session) : RequestFacts{};
  // What no node may accept (too deep, not JSON, numbers out of range) or what the gateway would read
  // differently from the node (a duplicated or mistyped stream_options) never goes upstream.
  if (facts.refusal) {
    co_await reply_error(ex, ctx, *facts.refusal);
    co_return;
  }
  bool to_default_model = false;
  if (auto missing = unserved_model(facts.model)) {
    if (config_.default_model.empty()) {
      co_await reply_error(ex, ctx, *missing);
      co_return;
    }
    to_default_model = true;
    facts.model = config_.default_model;
  }
  // The key's tokens: what this request may use is reserved now, and settled when it ends (finish()).
  const bool generates = request.method() == bhttp::verb::post && ex.path() != "/v1/embeddings" &&
                         ex.path() != "/tokenize" && ex.path() != "/detokenize";
  if (auto reserved = ctx.tokens.reserve(facts, body.size(), generates, Clock::now()); !reserved.allowed) {
    Refusal refusal = rate_limited(ctx.key_id, reserved);
    co_await reply_error(ex, ctx, refusal.error, std::move(refusal.headers));
    co_return;
  }
  // Tokens per key need the usage of streamed answers too: ask for it, and drop its chunk on the way back
  // to a client that did not ask.
  const bool usage_added = facts.stream && !facts.include_usage && generates;
  if (usage_added || to_default_model) {
    changed_body = rewritten(body, facts, usage_added, to_default_model ? facts.model : std::string());
    body = changed_body;
  }
  if (config_.audit_prompts && facts.valid) {
    // (The body passed the scan, so the bounded reader takes it; its parts are dumped within those bounds.)
    const auto parsed = json_read::parse(body);
    for (const char* field : {"messages", "prompt", "input"}) {
      if (!parsed || !parsed.value->is_object()) break;
      if (auto it = parsed.value->find(field); it != parsed.value->end()) {
        ctx.prompt = it->dump(-1, ' ', false, json::error_handler_t::replace);
        break;
      }
    }
  }
  ctx.model = facts.model;

  // Never forwarded: a target that is not a path. The server refuses an absolute-form target already; this
  // keeps the upstream's api_key from ever going with a request to a host the client chose.
  const std::string_view target(request.target().data(), request.target().size());
  if (!forwardable_target(target)) {
    const Error error{ErrorKind::invalid_request,
                      "the request target must be a path such as /v1/chat/completions; this gateway forwards "
                      "requests only to its own upstreams",
                      {},
                      "invalid_request_target"};
    co_await reply_error(ex, ctx, error);
    co_return;
  }

  // The request's headers as the upstream gets them, written once as header lines for every attempt.
  std::string upstream_lines;
  upstream_lines.reserve(256);
  std::string_view request_id = append_upstream_headers(upstream_lines, request, ctx.client, ex.is_tls());
  std::array<char, 28> made_request_id;  // the client's X-Request-Id, or one made here
  if (request_id.empty()) {
    request_id = random_request_id(made_request_id);
    upstream_lines.append("X-Request-Id: ").append(request_id).append("\r\n");
  }

  const bool head = request.method() == bhttp::verb::head;
  const auto deadline = Clock::now() + config_.queue.timeout;
  // Upstreams that failed this request: it never goes back to them. A busy upstream (503) is not one of
  // them: the request waits for room there or elsewhere, up to the queue's deadline.
  std::vector<std::size_t> tried;
  int failures = 0;
  bool refused_busy = false;
  std::string last_failure;
  // An error for the client: as the answer, or as the last event of a stream whose header it already has
  // (a stream retried on another upstream after keep-alives reached the client).
  // (Headers by name at every call: no braced temporaries inside co_await expressions, for GCC 12.)
  auto answer_error = [&](const Error& error, Headers headers) -> asio::awaitable<void> {
    if (!ex.sse_started()) {
      co_await reply_error(ex, ctx, error, std::move(headers));
      co_return;
    }
    ctx.status = 200;
    if (co_await ex.sse_data(to_json(error).dump())) co_await ex.sse_end();
  };
  for (;;) {
    Error refusal;
    bool client_left = false;
    // Most requests find an upstream at once: the waiting coroutine only for those that do not.
    std::optional<Pick> pick =
        pool_.pick(config_.affinity ? facts.affinity : 0, facts.model, tried, Clock::now(), refused_busy);
    if (!pick)
      pick = co_await wait_for_upstream(ex, facts, tried, deadline, refused_busy, refusal, client_left);
    if (!pick && client_left) {
      ctx.status = 499;  // nginx's "client closed request"
      co_return;
    }
    if (!pick) {
      if (refusal.message.empty()) {  // every upstream failed it
        const Error error{ErrorKind::bad_gateway, "no upstream answered: " + last_failure, {}, {}};
        Headers none;
        co_await answer_error(error, std::move(none));
      } else {
        if (!last_failure.empty()) refusal.message += "; last: " + last_failure;
        Headers retry{{"Retry-After", "1"}};
        co_await answer_error(refusal, std::move(retry));
      }
      co_return;
    }
    const std::size_t index = pick->index;
    ctx.upstream = pool_.name(index);
    const auto upstream_start = Clock::now();
    auto client = take_client(worker, index);

    // A client that leaves while the upstream thinks cancels the upstream request.
    UpstreamWatch watch(worker, ex, *client);
    auto stop_watch = [&] { watch.stop(); };
    auto count_error = [&](std::string_view kind) {
      registry_.counter_add("clawbot_gateway_upstream_errors_total", "Upstream failures by kind",
                            {{"upstream", ctx.upstream}, {"kind", std::string(kind)}});
    };
    // The upstream cannot have acted on the request (or threw it away before any byte reached the client):
    // another upstream may take it, within the retries.
    auto try_elsewhere = [&](std::string_view kind, const std::string& why, bool upstream_at_fault) {
      last_failure = ctx.upstream + ": " + why;
      if (upstream_at_fault)
        pool_.finish(*pick, true, why, Clock::now());
      else
        pool_.finish_unproven(*pick, why, Clock::now());
      count_error(kind);
      tried.push_back(index);
      return ++failures <= config_.retries;
    };
    // The upstream may have acted on the request (it read all of it, then failed): it goes nowhere else,
    // since a request that crashed one node would crash the next; nor does it count against this one's
    // breaker (the request may be the cause). Health checks judge the node.
    auto fail_after_sending = [&](std::string_view kind, const std::string& why) -> asio::awaitable<void> {
      pool_.finish_unproven(*pick, why, Clock::now());
      count_error(kind);
      spdlog::warn("upstream {} failed after it was sent the request (not retried elsewhere): {}",
                   ctx.upstream, why);
      const Error error{ErrorKind::bad_gateway,
                        "the upstream " + ctx.upstream + " failed after it was sent the request: " + why +
                            "; it was not sent to another upstream, since it may have been processed",
                        {},
                        {}};
      Headers none;
      co_await answer_error(error, std::move(none));
    };

    auto result = co_await client->send(request.method(), target, body, std::string_view(upstream_lines));
    if (watch.client_left()) {
      stop_watch();
      pool_.finish(*pick, false, {}, Clock::now());
      ctx.status = 499;  // nginx's "client closed request"
      co_return;
    }
    if (!result) {
      stop_watch();
      const http::ClientError& error = result.error();
      if (error.request_sent) {
        co_await fail_after_sending("after_request", error.message);
        co_return;
      }
      spdlog::warn("upstream {} could not be sent the request: {}", ctx.upstream, error.message);
      if (try_elsewhere("connect_or_send", error.message, true)) continue;
      break;
    }
    auto& reader = *result;
    const int status = reader.status();
    // Busy (its queue is full, or it is draining): the request waits for room, here or on another upstream,
    // and the upstream gets nothing more before its Retry-After. Not a failure of the upstream.
    if (status == 503) {
      stop_watch();
      const auto& headers = reader.headers();
      const auto named = headers.find(bhttp::field::retry_after);
      const auto delay = named == headers.end()
                             ? std::nullopt
                             : retry_after(std::string_view(named->value().data(), named->value().size()));
      pool_.busy(*pick, delay, Clock::now());
      count_error("status_503");
      refused_busy = true;
      last_failure = ctx.upstream + ": answered 503 (busy)";
      continue;
    }
    const auto content_type = reader.headers()[bhttp::field::content_type];
    const bool event_stream =
        status == 200 && beast::iequals(content_type.substr(0, 17), "text/event-stream");
    bool upstream_failed = false;  // after its answer began: not retried, not counted against its breaker
    std::string failure;
    // The upstream's headers worth passing back, and the gateway's own.
    auto pass_headers_back = [&](auto&& add) {
      for (const auto& field : reader.headers()) {
        const std::string_view name(field.name_string().data(), field.name_string().size());
        if (pass_back(name) && !(event_stream && beast::iequals(name, "cache-control")))
          add(name, std::string_view(field.value().data(), field.value().size()));
      }
      if (reader.headers().find("x-request-id") == reader.headers().end()) add("X-Request-Id", request_id);
      add("X-Clawbot-Upstream", ctx.upstream);  // which node answered: for people and tests
    };

    if (event_stream) {
      ctx.status = 200;
      Headers back;
      pass_headers_back(
          [&](std::string_view name, std::string_view value) { back.emplace_back(name, value); });
      const Relay relay =
          co_await relay_stream(ex, ctx, reader, usage_added, watch, std::move(back), failure);
      stop_watch();  // no write is in progress now
      if (relay == Relay::client_left) ctx.status = 499;
      if (relay == Relay::unavailable_before_content) {
        // It accepted the request, then gave up on it before any content (shutting down): like a 503.
        pool_.busy(*pick, std::nullopt, Clock::now());
        count_error("unavailable_before_content");
        last_failure = ctx.upstream + ": " + failure;
        tried.push_back(index);
        if (++failures <= config_.retries) continue;
        break;
      }
      if (relay == Relay::failed_before_content) {
        if (try_elsewhere("before_content", failure, false)) continue;
        break;
      }
      upstream_failed = relay == Relay::failed_mid_stream;
    } else {
      // A buffer from the worker, not zeroed: in this coroutine's frame it would make every request allocate
      // (and zero) a frame too large for asio's recycling allocator, and growing the answer string by
      // resize() zeroed 4 KiB per read (5% of the gateway's instructions per request).
      const BorrowedChunk chunk(worker);
      std::string answer;
      auto got = co_await reader.read_rest(answer, chunk.data(), chunk.size());
      if (!got) {
        upstream_failed = true;
        failure = got.error().message;
      }
      stop_watch();
      if (watch.client_left()) {
        pool_.finish(*pick, false, {}, Clock::now());
        ctx.status = 499;
        co_return;
      }
      if (upstream_failed) {
        co_await fail_after_sending("body", failure);
        co_return;
      }
      if (status == 200) ctx.tokens.on_answer(answer);
      if (ex.sse_started()) {
        // A stream retried here after its header reached the client, answered without one: its answer
        // (an error, as a rule) becomes the stream's last event.
        ctx.status = 200;
        http::SseEvent last;
        last.data = std::move(answer);
        if (co_await ex.sse_raw(event_text(last))) co_await ex.sse_end();
      } else {
        ctx.status = status;
        // The answer's header lines, in the request's no longer needed ones.
        std::string& lines = upstream_lines;
        lines.clear();
        lines.append("Content-Type: ");
        if (content_type.empty())
          lines.append("application/octet-stream");
        else
          lines.append(content_type.data(), content_type.size());
        lines.append("\r\n");
        pass_headers_back([&](std::string_view name, std::string_view value) {
          lines.append(name).append(": ").append(value).append("\r\n");
        });
        co_await ex.respond_raw(status, lines, answer);
      }
    }
    // A connection that answered HEAD is not reused: a server that sent a body with it anyway would leave
    // that body to be read as the next request's answer.
    const bool clean = reader.done() && !head;
    if (upstream_failed)
      pool_.finish_unproven(*pick, failure, Clock::now());
    else
      pool_.finish(*pick, status == 502 || status == 504, "answered " + std::to_string(status), Clock::now());
    upstream_latency_[index].observe(seconds_since(upstream_start));
    const int key = static_cast<int>(index) << 16 | (status & 0xffff);
    auto counter = worker.upstream_counters.find(key);
    if (counter == worker.upstream_counters.end()) {
      const monitor::Labels labels{{"upstream", ctx.upstream}, {"status", std::to_string(status)}};
      counter = worker.upstream_counters
                    .emplace(key, registry_.counter("clawbot_gateway_upstream_requests_total",
                                                    "Requests answered by each upstream", labels))
                    .first;
    }
    counter->second.add();
    if (upstream_failed) count_error("mid_stream");
    if (clean) give_back(worker, index, std::move(client));
    co_return;
  }
  const Error error{
      ErrorKind::bad_gateway,
      "no upstream answered after " + std::to_string(failures) + " tries; last: " + last_failure,
      {},
      {}};
  Headers none;
  co_await answer_error(error, std::move(none));
}

// The client's stream starts with the upstream's first event (or keep-alive). Until an event that carries
// something (content, a finish, an error other than "unavailable") the client has nothing of this answer:
// the role-only first chunk is held back, and a stream that ends there (the node's "shutting down" error
// event, or a dropped connection) may be retried on another upstream, the client seeing one answer only.
asio::awaitable<Gateway::Relay> Gateway::relay_stream(http::Exchange& ex, Context& ctx,
                                                      http::ResponseReader& reader, bool drop_usage_chunk,
                                                      const UpstreamWatch& watch, Headers headers,
                                                      std::string& failure) {
  http::SseParser parser(64u << 20);
  std::vector<http::SseEvent> events;
  std::array<char, 16384> chunk;  // (not zeroed: read_some fills what it returns)
  std::size_t comments = 0;
  // Chunks held back until the first that carries something; a few at most, then they go as they are.
  constexpr std::size_t max_held = 8;
  std::vector<http::SseEvent> held;
  bool content_sent = false;
  auto start = [&]() -> asio::awaitable<bool> {
    if (ex.sse_started()) co_return true;
    co_return co_await ex.sse_start(std::move(headers));
  };
  auto send_held = [&]() -> asio::awaitable<bool> {
    content_sent = true;
    if (!co_await start()) co_return false;
    for (const auto& event : held)
      if (!co_await ex.sse_raw(event_text(event))) co_return false;
    held.clear();
    co_return true;
  };
  for (;;) {
    auto got = co_await reader.read_some(chunk.data(), chunk.size());
    if (!got && watch.client_left()) co_return Relay::client_left;  // the watch cancelled the upstream read
    if (!got) {
      failure = got.error().message;
      break;
    }
    const bool ended = *got == 0;
    if (ended) {
      parser.finish(events);
    } else if (!parser.feed(std::string_view(chunk.data(), *got), events)) {
      failure = "the upstream sent an event line longer than 64 MiB";
      break;
    }
    // Keep-alives while the upstream prefills: the client's own timeouts must see them too.
    if (parser.comments() != comments) {
      comments = parser.comments();
      // (Two statements: GCC 12 mishandles co_await on both sides of ||.)
      if (!co_await start()) co_return Relay::client_left;
      if (!co_await ex.sse_comment("keep-alive")) co_return Relay::client_left;
    }
    for (auto& event : events) {
      if (!content_sent) {
        const StreamEvent kind = classify_stream_event(event.data);
        if (kind == StreamEvent::unavailable) {
          failure = "its stream ended before any content with: " + event.data.substr(0, 300);
          co_return Relay::unavailable_before_content;
        }
        if (kind == StreamEvent::preamble && held.size() < max_held) {
          held.push_back(std::move(event));
          continue;
        }
        if (!co_await send_held()) co_return Relay::client_left;
      }
      // Tokens are counted as they pass: a client that leaves before the usage chunk is charged what it got.
      if (ctx.tokens.on_event(event.data) && drop_usage_chunk) continue;  // usage it did not ask for
      if (!co_await start()) co_return Relay::client_left;
      if (!co_await ex.sse_raw(event_text(event))) co_return Relay::client_left;
    }
    events.clear();
    if (ended) {
      if (!co_await send_held()) co_return Relay::client_left;
      co_await ex.sse_end();
      co_return Relay::complete;
    }
  }
  if (!content_sent) co_return Relay::failed_before_content;
  // Mid-stream: the client has part of an answer. Say so in the stream, never end it silently.
  const Error error{ErrorKind::bad_gateway,
                    "the upstream " + ctx.upstream + " failed in the middle of this answer: " + failure +
                        "; the answer is incomplete",
                    {},
                    "upstream_failed_mid_stream"};
  spdlog::warn("upstream {} failed mid-stream: {}", ctx.upstream, failure);
  if (co_await ex.sse_data(to_json(error).dump())) co_await ex.sse_end();
  co_return Relay::failed_mid_stream;
}

// ------------------------------------------------------------------------------------------- health checks

asio::awaitable<void> Gateway::check_upstream(Worker& worker, std::size_t index) {
  const Upstream& u = config_.upstreams[index];
  http::ClientOptions options;
  options.connect_timeout = config_.health_checks.timeout;
  options.read_timeout = config_.health_checks.timeout;
  options.max_body_bytes = 2 * max_model_list_bytes;  // what an upstream's answer may make the gateway hold
  options.tls_ca_file = u.tls_ca_file;
  options.tls_insecure = u.tls_insecure;
  if (!u.api_key.empty()) options.headers.emplace_back("Authorization", "Bearer " + u.api_key);
  http::Client client(worker.io.get_executor(), u.parsed, options);
  asio::steady_timer timer(worker.io);
  std::size_t round = 0;
  while (!stopping_) {
    auto answer = co_await client.get(config_.health_checks.path);
    bool ok = answer && answer->ok();
    std::string error;
    if (!answer) {
      error = answer.error().message;
    } else if (!answer->ok()) {
      error = config_.health_checks.path + " answered " + std::to_string(answer->status);
    }
    std::vector<std::string> names;
    if (ok) {
      json memory = read_reported_memory(answer->body);
      std::lock_guard lock(models_mutex_);
      upstream_memory_[index] = std::move(memory);
    }
    // The model list: at the first success, then every tenth check (models rarely change).
    bool models_known = false;
    {
      std::lock_guard lock(models_mutex_);  // the request threads read the lists too
      models_known = !upstream_models_[index].entries.empty();
    }
    if (ok && (round % 10 == 0 || !models_known)) {
      auto listed = co_await client.get("/v1/models");
      if (!listed || listed->ok()) {
        // An upstream's answer is untrusted input: read within bounds, only the models' facts kept.
        ModelList read;
        if (listed)
          read = read_model_list(listed->body);
        else
          read.error = listed.error().message;
        std::lock_guard lock(models_mutex_);
        if (read.error.empty()) {
          names = read.ids;
          upstream_models_[index] = std::move(read);
          models_read_[index] = 1;
        } else {
          std::string unreadable = "/v1/models: " + read.error;
          if (unreadable != upstream_models_[index].error)
            spdlog::warn("the model list of {} is unreadable: {}", u.name, unreadable);
          upstream_models_[index].error = std::move(unreadable);
        }
      }
    }
    if (!ok) spdlog::debug("health check of {} failed: {}", u.name, error);
    pool_.health(index, ok, error, std::move(names), Clock::now());
    ++round;
    timer.expires_after(config_.health_checks.interval);
    co_await timer.async_wait(use_tuple);
  }
}

asio::awaitable<void> Gateway::health_loop(Worker& worker) {
  for (std::size_t i = 0; i < config_.upstreams.size(); ++i)
    asio::co_spawn(worker.io, check_upstream(worker, i), asio::detached);
  co_return;
}

// ------------------------------------------------------------------------------------------- running

int Gateway::run() {
  unsigned threads = config_.threads > 0 ? static_cast<unsigned>(config_.threads)
                                         : std::max(1u, std::thread::hardware_concurrency());
  threads = std::min(threads, 64u);
  http::ServerLimits limits;
  limits.max_body_bytes = config_.limits.max_body_bytes;
  limits.max_header_bytes = config_.limits.max_header_bytes;
  limits.write_timeout = std::chrono::seconds(300);  // a slow reader of a long stream is not an error
  limits.header_timeout = config_.limits.header_timeout;
  limits.min_body_rate = config_.limits.min_body_rate;
  limits.max_connections_per_client = config_.limits.max_connections_per_client;
  const auto client_connections = std::make_shared<http::ClientConnections>();  // one cap for all workers

  for (unsigned t = 0; t < threads; ++t) {
    auto worker = std::make_unique<Worker>();
    worker->idle.resize(config_.upstreams.size());
    workers_.push_back(std::move(worker));
  }
  unsigned short first_listener_port = 0;
  for (auto& listener : config_.listen) {
    unsigned short port = listener.port;
    for (auto& worker : workers_) {
      auto router = std::make_shared<http::Router>();
      router->add(http::Verb::get, "/health", guarded(*worker, &Gateway::health));
      router->add(http::Verb::get, "/metrics", guarded(*worker, &Gateway::metrics));
      router->add(http::Verb::get, "/v1/models", guarded(*worker, &Gateway::models));
      router->set_fallback(guarded(*worker, &Gateway::forward));
      auto server = std::make_unique<http::Server>(worker->io, router, limits);
      server->set_reuse_port(threads > 1);
      server->set_single_threaded(true);  // each worker's io_context runs on its own thread
      server->share_client_connections(client_connections);
      // The allow-list and the key before a body is read (a refused request costs no body).
      server->set_header_check(
          [this](const http::RequestHead& head, const asio::ip::address& remote) -> std::optional<Error> {
            const std::string_view target(head.target().data(), head.target().size());
            Context ctx;
            auto refusal = admit(head, target.substr(0, target.find('?')), remote, ctx, false);
            if (!refusal) return std::nullopt;
            return std::move(refusal->error);
          },
          guarded(*worker, &Gateway::refused));
      if (listener.tls) {
        port = server->listen(listener.host, port, server_tls(*listener.tls));
      } else {
        port = server->listen(listener.host, port);
      }
      worker->servers.push_back(std::move(server));
    }
    if (&listener == &config_.listen.front()) first_listener_port = port;
    const bool tls = listener.tls.has_value();
    std::cout << "clawbot gateway listening on " << (tls ? "https://" : "http://")
              << (listener.host.find(':') != std::string::npos ? "[" + listener.host + "]" : listener.host)
              << ":" << port << " (" << config_.upstreams.size()
              << (config_.upstreams.size() == 1 ? " upstream, " : " upstreams, ") << threads
              << (threads == 1 ? " thread" : " threads") << ", auth " << config_.auth << ")" << std::endl;
  }

  asio::co_spawn(workers_[0]->io, health_loop(*workers_[0]), asio::detached);
  // Announce the first listener on the LAN, with the models its upstreams serve (known after the first
  // health checks, so after a short wait).
  if (config_.advertise) {
    auto timer = std::make_shared<asio::steady_timer>(workers_[0]->io, std::chrono::milliseconds(1500));
    const Listener first = config_.listen.front();
    const unsigned short first_port = first_listener_port;
    timer->async_wait([this, timer, first, first_port](const boost::system::error_code& ec) {
      if (ec || stopping_) return;
      std::string models;
      for (const auto& [model, where] : pool_.models()) models += (models.empty() ? "" : ",") + model;
      auto service =
          discovery::service_info("gateway", first_port, models, first.tls.has_value(), keys_ != nullptr);
      if (!config_.name.empty()) service.instance = config_.name;
      advertiser_ = discovery::advertise(service, {.enabled = true, .listen_host = first.host});
    });
  }
  asio::signal_set signals(workers_[0]->io, SIGINT, SIGTERM);
  signals.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) return;
    stopping_ = true;
    advertiser_.reset();  // goodbye packets: browsers drop the gateway now
    for (auto& worker : workers_) {
      for (auto& server : worker->servers) server->stop();
      worker->io.stop();
    }
  });
  std::signal(SIGPIPE, SIG_IGN);

  std::vector<std::jthread> threads_running;
  for (std::size_t t = 1; t < workers_.size(); ++t)
    threads_running.emplace_back([worker = workers_[t].get()] {
      auto guard = asio::make_work_guard(worker->io);
      worker->io.run();
    });
  workers_[0]->io.run();
  for (auto& worker : workers_) worker->io.stop();
  threads_running.clear();
  if (audit_ && !audit_->flush()) std::cerr << "audit log: " << audit_->last_error() << std::endl;
  std::cout << "clawbot gateway stopped" << std::endl;
  return 0;
}

// `gateway --check`, like `nginx -t`: everything that would stop the gateway at start, without starting it.
int check_config(const GatewayConfig& config) {
  parse_allow_list(config);
  for (const auto& listener : config.listen)
    if (listener.tls)
      tls::make_server_context(server_tls(*listener.tls));  // throws naming a file it cannot use
  std::size_t keys = 0;
  if (config.auth == "keys") keys = door::KeyVerifier(config.keys_db, config.secret_file).active_keys();
  std::cout << config.file.string() << ": ok\n";
  for (const auto& listener : config.listen)
    std::cout << "  listen    " << (listener.tls ? "https://" : "http://") << listener.host << ":"
              << listener.port
              << (listener.tls && !listener.tls->client_ca.empty() ? " (client certificates required)" : "")
              << "\n";
  for (const auto& u : config.upstreams)
    std::cout << "  upstream  " << u.name << "  " << u.parsed.str() << (u.standby ? "  standby" : "")
              << (u.weight != 1 ? "  weight " + std::to_string(u.weight) : std::string()) << "\n";
  std::cout << "  balance   "
            << (config.balance == Balance::least_outstanding ? "least_outstanding" : "weighted_round_robin")
            << (config.affinity ? ", conversation affinity" : "") << "\n";
  if (config.auth == "keys")
    std::cout << "  auth      keys: " << keys << " active in " << config.keys_db.string()
              << (keys == 0 ? " (none yet: `clawbot gateway keys create --name NAME`)" : "") << "\n";
  else
    std::cout << "  auth      none: anyone who can reach the gateway can use it\n";
  std::cout << "  allow     "
            << (config.allow.empty() ? std::string("any address")
                                     : std::to_string(config.allow.size()) +
                                           (config.allow.size() == 1 ? " network" : " networks"))
            << "\n";
  std::cout << "  audit     " << (config.audit_log.empty() ? std::string("off") : config.audit_log.string())
            << "\n";
  return 0;
}

}  // namespace

int run_gateway(const GatewayOptions& options) {
  try {
    GatewayConfig config = load_config(options.config_path);
    if (!options.host.empty()) config.listen.front().host = options.host;
    if (options.port >= 0) config.listen.front().port = static_cast<unsigned short>(options.port);
    if (options.threads >= 0) config.threads = options.threads;
    if (options.no_advertise) config.advertise = false;
    for (const auto& warning : config.warnings) std::cerr << "warning: " << warning << std::endl;
    if (options.check) return check_config(config);
    // Logs go to stderr, as serve's do (stdout has the "listening on" lines). A named program logger is also
    // what the discovery module logs through: without one it keeps only its warnings, and the gateway never
    // said what it announced on the LAN, that it withdrew (goodbye sent), or why it was not advertised.
    spdlog::set_default_logger(spdlog::stderr_color_mt("gateway"));
    spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
    Gateway gateway(std::move(config), options.verbose);
    return gateway.run();
  } catch (const ConfigError& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
}

}  // namespace clawbot::gateway
