// The gateway's parts, shared by the files that implement it (nothing outside src/gateway includes this):
// gateway.cpp (the door, start and stop), gateway_routes.cpp (its own routes), gateway_queue.cpp (waiting
// for an upstream), gateway_proxy.cpp (forwarding and relaying), upstream_watch.cpp (a worker's watches and
// buffers), health_checks.cpp, gateway_cmd.cpp (the command line).
#pragma once

#include <array>
#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "common/tls.h"
#include "common/use_tuple.h"
#include "discovery/discovery.h"
#include "gateway/config.h"
#include "gateway/door/door.h"
#include "gateway/model_list.h"
#include "gateway/request_facts.h"
#include "gateway/token_account.h"
#include "gateway/upstream_pool.h"
#include "monitor/alerts.h"
#include "monitor/history.h"
#include "monitor/metrics.h"

namespace clawbot::gateway::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using nlohmann::json;

// An error's body in the shape of the protocol `path` belongs to: Ollama's {"error": "..."} on /api/*,
// Anthropic's {"type": "error", "error": {...}} on /v1/messages, else OpenAI's.
json error_body(std::string_view path, const Error& error);
using Headers = std::vector<std::pair<std::string, std::string>>;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

inline constexpr std::string_view live_route = "/v1/audio/live";
// A browser's WebSocket offers the key as a subprotocol "bearer.<key>" (beside "clawbot", which is answered).
inline constexpr std::string_view key_protocol_prefix = "bearer.";
// The first Sec-WebSocket-Protocol entry the client offered that is a key ("bearer.<key>", `key` true) or is
// not one; empty when there is none.
std::string_view offered_protocol(const http::RequestHead& request, bool key);

// "allow" as the door reads it; a bad entry is a gateway.json error that names it.
door::AllowList parse_allow_list(const GatewayConfig& config);
tls::ServerConfig server_tls(const ListenTls& tls);

// Requests waiting for an upstream with capacity. Waiters live on their sessions' executors; a wake-up
// from another thread is posted to the waiter's own executor.
class WaitQueue {
 public:
  struct Waiter {
    explicit Waiter(asio::any_io_executor executor) : timer(std::move(executor)) {}
    asio::steady_timer timer;
  };

  explicit WaitQueue(std::size_t max_waiting) : max_(max_waiting) {}

  // A place in the queue; none when it is full.
  std::shared_ptr<Waiter> enter(asio::any_io_executor executor);
  void leave(const std::shared_ptr<Waiter>& waiter);
  void wake_one();
  std::size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::deque<std::shared_ptr<Waiter>> waiters_;
  std::size_t max_;
};

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
  struct KeyCounters {
    monitor::CounterHandle requests, prompt_tokens, completion_tokens;
  };
  std::unordered_map<std::string, KeyCounters> key_counters;  // by key id
  // Read buffers of finished requests, for the next ones: a fresh 16 KiB buffer per request made glibc grow
  // and trim its heap (brk) over and over.
  static constexpr std::size_t chunk_size = 16384;
  std::vector<std::unique_ptr<char[]>> spare_chunks;
  // Unarmed upstream watches, oldest first, and the ticker that arms them (running while there are any).
  UpstreamWatch* first_watch = nullptr;
  UpstreamWatch* last_watch = nullptr;
  asio::steady_timer watch_ticker{io};
  bool ticking = false;

  void add(UpstreamWatch& watch);  // unarmed, until the ticker arms it
  void remove(UpstreamWatch& watch);
  void tick_later();
};

// A read buffer borrowed from its worker for one request.
class BorrowedChunk {
 public:
  explicit BorrowedChunk(Worker& worker);
  ~BorrowedChunk();
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
    std::string key_name;
    std::string client;
    std::string model;
    std::string upstream;
    TokenAccount tokens;  // reserved, counted and settled against the key's token limit
    int status = 0;
    std::string prompt;
    double audio_seconds = 0;  // what the node transcribed (its X-Audio-Seconds), or a live session sent
    std::int64_t audio_seconds_per_hour = 0;  // the key's audio limit (its own, else gateway.json's; 0: none)
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
  // The key a request presents: Authorization (Bearer), x-api-key; on /v1/audio/live also what a browser can
  // send on a WebSocket: a Sec-WebSocket-Protocol entry "bearer.<key>", or ?api_key=<key>. Empty: none.
  static std::string_view presented_key(const http::RequestHead& request, std::string_view path);
  // The most a request's body may hold on `path`: limits.upload_max_body_bytes for uploads (/v1/audio/*, a
  // knowledge base's documents), else limits.max_body_bytes.
  std::size_t body_limit(std::string_view path) const;
  // A 413 naming the option when the body (its Content-Length, or what was read) exceeds body_limit().
  std::optional<Error> body_too_large(std::string_view path, std::size_t bytes) const;
  // GET /v1/audio/live (live_relay.cpp): the WebSocket relayed to a node with a speech model.
  asio::awaitable<void> live(Worker& worker, http::Exchange& ex, Context& ctx);
  class LiveRelay;
  asio::awaitable<void> reply_error(http::Exchange& ex, Context& ctx, const Error& error, Headers headers);
  asio::awaitable<void> reply_error(http::Exchange& ex, Context& ctx, const Error& error) {
    Headers none;  // (named: no temporaries inside co_await expressions, for GCC 12)
    co_await reply_error(ex, ctx, error, std::move(none));
  }
  void finish(Worker& worker, http::Exchange& ex, Context& ctx);

  asio::awaitable<void> health(Worker&, http::Exchange& ex, Context& ctx);
  asio::awaitable<void> metrics(Worker&, http::Exchange& ex, Context& ctx);
  asio::awaitable<void> alerts(Worker&, http::Exchange& ex, Context& ctx);  // GET /api/alerts
  asio::awaitable<void> metrics_history(Worker&, http::Exchange& ex, Context& ctx);
  void count_key_usage(Worker& worker, const Context& ctx, std::int64_t tokens_in, std::int64_t tokens_out);
  asio::awaitable<void> dashboard_asset(Worker&, http::Exchange& ex, Context& ctx);
  // The chat's writing and code tasks (GET and POST /v1/clawbot/prompts), built here as serve builds them.
  asio::awaitable<void> prompt_tasks(Worker&, http::Exchange& ex, Context& ctx);
  asio::awaitable<void> prompt_messages(Worker&, http::Exchange& ex, Context& ctx);
  asio::awaitable<void> models(Worker&, http::Exchange& ex, Context& ctx);
  // Ollama's listings (gateway_routes.cpp): the upstreams' models as /api/tags and /api/ps list them, and
  // the API version the nodes report.
  asio::awaitable<void> ollama_tags(Worker&, http::Exchange& ex, Context& ctx);
  asio::awaitable<void> ollama_ps(Worker&, http::Exchange& ex, Context& ctx);
  asio::awaitable<void> ollama_version(Worker&, http::Exchange& ex, Context& ctx);
  nlohmann::json ollama_models(bool loaded);
  // The model a request on Ollama's routes names, as the upstreams list it: "m:latest" is "m" when only
  // "m" is served (a node accepts either).
  std::string served_name(std::string_view path, const std::string& model);
  asio::awaitable<void> forward(Worker& worker, http::Exchange& ex, Context& ctx);
  // forward()'s pieces (gateway_proxy.cpp): the request as it goes upstream, each try on one upstream.
  struct Outbound;
  class Attempt;
  enum class Outcome { answered, retry, give_up };
  std::optional<Refusal> prepare_forward(http::Exchange& ex, Context& ctx, Outbound& out);
  asio::awaitable<std::optional<Pick>> wait_or_refuse(http::Exchange& ex, Context& ctx, Outbound& out);
  // Tries upstreams for `out` (the pool's pick, else the queue) with `attempt(pick)` (a coroutine giving the
  // try's Outcome) until one answers: true when the request was answered (or refused, or its client left),
  // false when every try failed. (A template, not a std::function: no allocation per request.)
  template <class TryUpstream>
  asio::awaitable<bool> try_upstreams(http::Exchange& ex, Context& ctx, Outbound& out, std::uint64_t affinity,
                                      TryUpstream& attempt);
  // An error for the client: as the answer, or as the last event of a stream whose header it already has
  // (a stream retried on another upstream after keep-alives reached the client).
  asio::awaitable<void> answer_error(http::Exchange& ex, Context& ctx, const Error& error, Headers headers);
  void count_upstream_answer(Worker& worker, std::size_t index, const std::string& upstream, int status);
  // A 404 model_not_found when every upstream's model list is known and none has `model`; else nothing.
  std::optional<Error> unserved_model(std::string_view model);
  // The speech model requests to /v1/audio/ go to: an id some upstream lists with meta.task "transcription";
  // empty while an upstream's models are unknown (any may serve); an error when none has one.
  std::optional<Error> transcription_model(std::string& model);
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
  // A newline-delimited JSON stream (Ollama's), relayed as its lines come (never buffered whole), each line
  // counted for the key's tokens.
  asio::awaitable<Relay> relay_ndjson(http::Exchange& ex, Context& ctx, http::ResponseReader& reader,
                                      const UpstreamWatch& watch, Headers headers, std::string& failure);

  std::unique_ptr<http::Client> take_client(Worker& worker, std::size_t index);
  void give_back(Worker& worker, std::size_t index, std::unique_ptr<http::Client> client);

  http::ServerLimits server_limits() const;
  std::unique_ptr<http::Server> make_server(Worker& worker, const http::ServerLimits& limits,
                                            std::shared_ptr<http::ClientConnections> client_connections,
                                            bool reuse_port);
  unsigned short listen_all();
  void advertise_later(unsigned short first_port);
  void watch_alerts(unsigned short first_port);  // where notices come from; the certificate's expiry metric

  asio::awaitable<void> health_loop(Worker& worker);
  asio::awaitable<void> check_upstream(Worker& worker, std::size_t index);
  http::ClientOptions health_check_options(const Upstream& upstream) const;
  // One health check of the upstream now, outside the loop: whether it answers.
  asio::awaitable<bool> answers_health_check(Worker& worker, std::size_t index);

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
  // How long a SIGTERM waits for the requests in progress (under the unit's TimeoutStopSec=60s).
  static constexpr std::chrono::seconds drain_timeout{30};
  std::unique_ptr<discovery::Advertiser> advertiser_;  // mDNS/DNS-SD while running
  std::unique_ptr<monitor::Alerts> alerts_;            // the rules of "alerts" and the alerts they raise
  std::unique_ptr<monitor::History> history_;          // last: its sampler reads the members above
};

// `gateway --check`, like `nginx -t`: everything that would stop the gateway at start, without starting it.
int check_config(const GatewayConfig& config);

// One request on its way upstream: what forward() decided before the first try, and the tally of the tries.
struct Gateway::Outbound {
  std::string_view body;
  std::string changed_body;  // when the gateway asks for usage the client did not ask for, or names a model
  RequestFacts facts;
  bool usage_added = false;  // drop the usage chunk on the way back: the client did not ask for it
  std::string_view target;
  std::string upstream_lines;            // the request's headers as the upstream gets them, for every try
  std::array<char, 28> made_request_id;  // the client's X-Request-Id, or one made here
  std::string_view request_id;
  bool head = false;
  Clock::time_point deadline;
  // Upstreams that failed this request: it never goes back to them. A busy upstream (503) is not one of
  // them: the request waits for room there or elsewhere, up to the queue's deadline.
  std::vector<std::size_t> tried;
  int failures = 0;
  bool refused_busy = false;
  std::string last_failure;
  bool resent_after_node_died = false;  // a node died holding it: it may go to one more, never two
};

template <class TryUpstream>
asio::awaitable<bool> Gateway::try_upstreams(http::Exchange& ex, Context& ctx, Outbound& out,
                                             std::uint64_t affinity, TryUpstream& attempt) {
  for (;;) {
    // Most requests find an upstream at once: the waiting coroutine only for those that do not.
    std::optional<Pick> pick =
        pool_.pick(affinity, out.facts.model, out.tried, Clock::now(), out.refused_busy);
    if (!pick) pick = co_await wait_or_refuse(ex, ctx, out);
    if (!pick) co_return true;  // answered why, or the client left
    ctx.upstream = pool_.name(pick->index);
    const Outcome outcome = co_await attempt(*pick);
    if (outcome == Outcome::answered) co_return true;
    if (outcome == Outcome::give_up) co_return false;
  }
}

}  // namespace clawbot::gateway::detail
