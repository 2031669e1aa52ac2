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
#include "discovery/discovery.h"
#include "gateway/config.h"
#include "gateway/door/door.h"
#include "gateway/request_facts.h"
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

// Headers that describe one hop, or the client's credentials for the gateway: never passed upstream.
bool hop_by_hop(bhttp::field field, std::string_view name) {
  switch (field) {
    case bhttp::field::connection:
    case bhttp::field::keep_alive:
    case bhttp::field::proxy_authenticate:
    case bhttp::field::proxy_authorization:
    case bhttp::field::te:
    case bhttp::field::trailer:
    case bhttp::field::transfer_encoding:
    case bhttp::field::upgrade:
    case bhttp::field::host:
    case bhttp::field::content_length:
    case bhttp::field::authorization:
      return true;
    default:
      return beast::iequals(name, "x-api-key");
  }
}

// Response headers worth passing back to the client (the rest the gateway sets itself).
bool pass_back(std::string_view name) {
  return beast::iequals(name, "retry-after") || beast::iequals(name, "x-request-id") ||
         beast::iequals(name, "openai-processing-ms") || beast::iequals(name, "cache-control");
}

// "req-" and 24 hex digits, in `out`; returns it as text.
std::string_view random_request_id(std::array<char, 28>& out) {
  thread_local std::mt19937_64 random(std::random_device{}());
  static constexpr char hex[] = "0123456789abcdef";
  std::memcpy(out.data(), "req-", 4);
  std::size_t at = 4;
  for (std::uint64_t bits : {random(), random()})
    for (int i = 0; i < 12; ++i, bits >>= 4) out[at++] = hex[bits & 15];
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
    std::int64_t tokens_in = 0;
    std::int64_t tokens_out = 0;
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
  std::optional<Refusal> admit(http::Exchange& ex, Context& ctx);
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
  asio::awaitable<std::optional<Pick>> wait_for_upstream(http::Exchange& ex, const RequestFacts& facts,
                                                         const std::vector<std::size_t>& tried,
                                                         Clock::time_point deadline, Error& refusal,
                                                         bool& client_left);
  enum class Relay { complete, client_left, failed_before_start, failed_mid_stream };
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
  std::vector<json> upstream_models_;  // per upstream: the `data` array of its /v1/models
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<discovery::Advertiser> advertiser_;  // mDNS/DNS-SD while running
};

Gateway::Gateway(GatewayConfig config, bool verbose)
    : config_(std::move(config)),
      verbose_(verbose),
      pool_(config_.upstreams, config_.balance, config_.circuit_breaker),
      queue_(config_.queue.max_waiting),
      upstream_models_(config_.upstreams.size(), json::array()) {
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
          std::optional<Refusal> refusal = self->admit(*exchange, ctx);
          if (refusal)
            co_await self->reply_error(*exchange, ctx, refusal->error, std::move(refusal->headers));
          else
            co_await (self->*h)(*w, *exchange, ctx);
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

std::optional<Gateway::Refusal> Gateway::admit(http::Exchange& ex, Context& ctx) {
  const auto address = ex.remote_address();
  ctx.client = address_text(address);
  if (!allow_.allows(address)) {
    const Error error{ErrorKind::forbidden,
                      "this gateway does not accept requests from " + ctx.client +
                          " (not in its allow-list); ask its operator to add your network to \"allow\"",
                      {},
                      "address_not_allowed"};
    return Refusal{error, {}};
  }
  const bool open_route = ex.path() == "/health" && config_.health_open;
  if (keys_ && !open_route) {
    const auto& request = ex.request();
    std::string_view presented;
    if (auto it = request.find(bhttp::field::authorization); it != request.end()) {
      presented =
          door::KeyVerifier::key_from_authorization(std::string_view(it->value().data(), it->value().size()));
    } else if (auto key = request.find("x-api-key"); key != request.end()) {
      presented = std::string_view(key->value().data(), key->value().size());
    }
    door::KeyRejection why{};
    const auto info = presented.empty() ? std::nullopt : keys_->verify(presented, &why);
    if (!info) {
      const Error error{ErrorKind::unauthorized,
                        presented.empty() ? std::string("this gateway needs an API key: send it as "
                                                        "\"Authorization: Bearer <key>\"")
                                          : std::string("the API key is not valid here (unknown, revoked or "
                                                        "mistyped); ask the gateway's operator for a key"),
                        {},
                        "invalid_api_key"};
      if (!presented.empty()) spdlog::info("refused a key from {}: {}", ctx.client, door::to_string(why));
      return Refusal{error, {{"WWW-Authenticate", "Bearer"}}};
    }
    ctx.key_id = info->id;
    const auto decision = limiter_.admit(*info, config_.limits.requests_per_minute,
                                         config_.limits.tokens_per_minute, Clock::now());
    if (!decision.allowed) {
      const Error error{ErrorKind::rate_limited,
                        "rate limit of key " + info->id + " reached (" + decision.reason + "); retry in " +
                            std::to_string(decision.retry_after.count()) + " s",
                        {},
                        {}};
      return Refusal{error, {{"Retry-After", std::to_string(decision.retry_after.count())}}};
    }
  }
  return std::nullopt;
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
  if (ctx.tokens_in + ctx.tokens_out > 0) {
    if (!ctx.key_id.empty()) limiter_.add_tokens(ctx.key_id, ctx.tokens_in + ctx.tokens_out, Clock::now());
    prompt_tokens_.add(static_cast<double>(ctx.tokens_in));
    generation_tokens_.add(static_cast<double>(ctx.tokens_out));
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
    record.tokens_in = ctx.tokens_in;
    record.tokens_out = ctx.tokens_out;
    record.latency_ms = seconds * 1000.0;
    record.prompt = std::move(ctx.prompt);
    audit_->append(std::move(record));
  }
  if (verbose_)
    spdlog::info("{} {} {} {} {:.1f} ms", ctx.client, ex.request().method_string(), route, ctx.status,
                 seconds * 1000);
}

// ------------------------------------------------------------------------------------------- own routes

asio::awaitable<void> Gateway::health(Worker&, http::Exchange& ex, Context& ctx) {
  const auto upstreams = pool_.snapshot(Clock::now());
  json list = json::array();
  std::size_t serving = 0;
  for (const auto& u : upstreams) {
    serving += u.serving ? 1 : 0;
    json item = {{"name", u.name},       {"url", u.url},         {"state", to_string(u.state)},
                 {"standby", u.standby}, {"serving", u.serving}, {"in_flight", u.in_flight},
                 {"models", u.models}};
    if (!u.last_error.empty() && u.state != UpstreamState::up) item["last_error"] = u.last_error;
    list.push_back(std::move(item));
  }
  const auto primaries = static_cast<std::size_t>(
      std::count_if(upstreams.begin(), upstreams.end(), [](const auto& u) { return !u.standby; }));
  const bool all = serving >= primaries;
  const json body = {{"status", serving == 0 ? "unavailable" : (all ? "ok" : "degraded")},
                     {"role", "gateway"},
                     {"queue", queue_.size()},
                     {"upstreams", std::move(list)}};
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
      for (const auto& model : upstream_models_[i]) {
        if (!model.is_object() || !model.contains("id") || !model["id"].is_string()) continue;
        const std::string id = model["id"].get<std::string>();
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
                                                                Clock::time_point deadline, Error& refusal,
                                                                bool& client_left) {
  std::shared_ptr<WaitQueue::Waiter> waiter;
  std::optional<Pick> pick;
  // A client that leaves while its request waits gives its place up at once (and nothing goes upstream).
  std::shared_ptr<ClientWatch> watch;
  // "affinity": false in gateway.json turns conversation affinity off.
  const std::uint64_t affinity = config_.affinity ? facts.affinity : 0;
  for (;;) {
    pick = pool_.pick(affinity, facts.model, tried, Clock::now());
    if (pick) break;
    // This request has failed on every upstream: none will be picked for it however long it waits (the
    // caller answers 502 with the last failure).
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
    // Woken when capacity appears; also every 250 ms, since a circuit's cooldown ends by time alone.
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
  const bool json_body =
      !body.empty() && type != request.end() &&
      std::string_view(type->value().data(), type->value().size()).starts_with("application/json");
  std::string_view session;
  if (auto h = request.find("x-session-id"); h != request.end())
    session = std::string_view(h->value().data(), h->value().size());
  const RequestFacts facts = json_body ? scan_request(body, session) : RequestFacts{};
  // Tokens per key need the usage of streamed answers too: ask for it, and drop its chunk on the way back
  // to a client that did not ask.
  const bool usage_added = facts.stream && !facts.include_usage && ex.path() != "/v1/embeddings";
  if (usage_added && !facts.has_stream_options) {
    changed_body = with_usage_requested(body);
    body = changed_body;
  } else if (usage_added) {
    json parsed = json::parse(body, nullptr, false);
    parsed["stream_options"]["include_usage"] = true;
    changed_body = parsed.dump();
    body = changed_body;
  }
  if (config_.audit_prompts && facts.valid) {
    const json parsed = json::parse(body, nullptr, false);
    if (auto m = parsed.find("messages"); m != parsed.end())
      ctx.prompt = m->dump();
    else if (auto p = parsed.find("prompt"); p != parsed.end())
      ctx.prompt = p->dump();
    else if (auto in = parsed.find("input"); in != parsed.end())
      ctx.prompt = in->dump();
  }
  ctx.model = facts.model;

  // The request's headers as the upstream gets them, written once as header lines for every attempt.
  std::string_view request_id;  // the client's, or one made here
  std::array<char, 28> made_request_id;
  std::string upstream_lines;
  upstream_lines.reserve(256);
  std::string_view forwarded_before;
  for (const auto& field : request) {
    const std::string_view name(field.name_string().data(), field.name_string().size());
    const std::string_view value(field.value().data(), field.value().size());
    if (hop_by_hop(field.name(), name)) continue;
    if (beast::iequals(name, "x-forwarded-for")) {
      forwarded_before = value;  // the gateway's hop is added below
      continue;
    }
    if (beast::iequals(name, "x-forwarded-proto")) continue;
    if (beast::iequals(name, "x-request-id")) request_id = value;
    upstream_lines.append(name).append(": ").append(value).append("\r\n");
  }
  upstream_lines.append("X-Forwarded-For: ");
  if (!forwarded_before.empty()) upstream_lines.append(forwarded_before).append(", ");
  upstream_lines.append(ctx.client).append("\r\n");
  upstream_lines.append(ex.is_tls() ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
  if (request_id.empty()) {
    request_id = random_request_id(made_request_id);
    upstream_lines.append("X-Request-Id: ").append(request_id).append("\r\n");
  }

  const std::string_view target(request.target().data(), request.target().size());
  const auto deadline = Clock::now() + config_.queue.timeout;
  std::vector<std::size_t> tried;
  std::string last_failure;
  for (int attempt = 0; attempt <= config_.retries; ++attempt) {
    Error refusal;
    bool client_left = false;
    // Most requests find an upstream at once: the waiting coroutine only for those that do not.
    std::optional<Pick> pick =
        pool_.pick(config_.affinity ? facts.affinity : 0, facts.model, tried, Clock::now());
    if (!pick) pick = co_await wait_for_upstream(ex, facts, tried, deadline, refusal, client_left);
    if (!pick && client_left) {
      ctx.status = 499;  // nginx's "client closed request"
      co_return;
    }
    if (!pick) {
      if (!last_failure.empty()) {
        const Error error{ErrorKind::bad_gateway, "no upstream answered: " + last_failure, {}, {}};
        co_await reply_error(ex, ctx, error);
      } else {
        Headers retry{{"Retry-After", "1"}};
        co_await reply_error(ex, ctx, refusal, std::move(retry));
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
    // Nothing has reached the client: note why, and let the loop try another upstream.
    auto try_elsewhere = [&](const std::string& kind, const std::string& why, bool upstream_at_fault) {
      last_failure = ctx.upstream + ": " + why;
      pool_.finish(*pick, upstream_at_fault, why, Clock::now());
      registry_.counter_add("clawbot_gateway_upstream_errors_total", "Upstream failures by kind",
                            {{"upstream", ctx.upstream}, {"kind", kind}});
      tried.push_back(index);
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
      spdlog::warn("upstream {} failed before answering: {}", ctx.upstream, result.error().message);
      try_elsewhere("connect_or_header", result.error().message, true);
      continue;
    }
    auto& reader = *result;
    const int status = reader.status();
    // Nothing has reached the client yet: a node that is overloaded or failing is worth another try.
    if ((status == 502 || status == 503 || status == 504) && attempt < config_.retries) {
      stop_watch();
      // 503 is a busy node (its queue is full), not a failing one: it does not count toward its breaker.
      try_elsewhere("status_" + std::to_string(status), "answered " + std::to_string(status), status != 503);
      continue;
    }
    const auto content_type = reader.headers()[bhttp::field::content_type];
    const bool event_stream =
        status == 200 && beast::iequals(content_type.substr(0, 17), "text/event-stream");
    bool upstream_failed = false;
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
      if (relay == Relay::failed_before_start) {
        try_elsewhere("before_first_event", failure, true);
        continue;
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
        try_elsewhere("body", failure, true);
        continue;
      }
      if (status == 200) find_usage(answer, ctx.tokens_in, ctx.tokens_out);
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
    const bool clean = reader.done();
    pool_.finish(*pick, upstream_failed, failure, Clock::now());
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
    if (upstream_failed)
      registry_.counter_add("clawbot_gateway_upstream_errors_total", "Upstream failures by kind",
                            {{"upstream", ctx.upstream}, {"kind", "mid_stream"}});
    if (clean) give_back(worker, index, std::move(client));
    co_return;
  }
  const Error error{
      ErrorKind::bad_gateway,
      "no upstream answered after " + std::to_string(tried.size()) + " tries; last: " + last_failure,
      {},
      {}};
  co_await reply_error(ex, ctx, error);
}

// The client's stream starts with the upstream's first event (or keep-alive): until then nothing has
// reached the client, and a failure may still be retried on another upstream.
asio::awaitable<Gateway::Relay> Gateway::relay_stream(http::Exchange& ex, Context& ctx,
                                                      http::ResponseReader& reader, bool drop_usage_chunk,
                                                      const UpstreamWatch& watch, Headers headers,
                                                      std::string& failure) {
  http::SseParser parser(64u << 20);
  std::vector<http::SseEvent> events;
  std::array<char, 16384> chunk;  // (not zeroed: read_some fills what it returns)
  std::size_t comments = 0;
  bool started = false;
  auto start = [&]() -> asio::awaitable<bool> {
    if (started) co_return true;
    started = true;
    co_return co_await ex.sse_start(std::move(headers));
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
      if (event.data != "[DONE]" && find_usage(event.data, ctx.tokens_in, ctx.tokens_out) &&
          drop_usage_chunk) {
        const json chunk_json = json::parse(event.data, nullptr, false);
        auto choices = chunk_json.find("choices");
        const bool usage_only = chunk_json.is_object() &&
                                (choices == chunk_json.end() || (choices->is_array() && choices->empty()));
        if (usage_only) continue;  // the client did not ask for it
      }
      if (!co_await start()) co_return Relay::client_left;
      if (!co_await ex.sse_raw(event_text(event))) co_return Relay::client_left;
    }
    events.clear();
    if (ended) {
      if (!co_await start()) co_return Relay::client_left;
      co_await ex.sse_end();
      co_return Relay::complete;
    }
  }
  if (!started) co_return Relay::failed_before_start;
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
    // The model list: at the first success, then every tenth check (models rarely change).
    bool models_known = false;
    {
      std::lock_guard lock(models_mutex_);  // the request threads read the lists too
      models_known = !upstream_models_[index].empty();
    }
    if (ok && (round % 10 == 0 || !models_known)) {
      auto listed = co_await client.get("/v1/models");
      if (listed && listed->ok()) {
        const json doc = json::parse(listed->body, nullptr, false);
        if (doc.is_object() && doc.contains("data") && doc["data"].is_array()) {
          for (const auto& m : doc["data"])
            if (m.is_object() && m.contains("id") && m["id"].is_string())
              names.push_back(m["id"].get<std::string>());
          std::lock_guard lock(models_mutex_);
          upstream_models_[index] = doc["data"];
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
              << ":" << port << " (" << config_.upstreams.size() << " upstreams, " << threads
              << " threads, auth " << config_.auth << ")" << std::endl;
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
                                     : std::to_string(config.allow.size()) + " networks")
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
