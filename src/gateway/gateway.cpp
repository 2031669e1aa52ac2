#include "gateway/gateway.h"

#include <charconv>
#include <csignal>
#include <functional>
#include <iostream>
#include <thread>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "client/prompts.h"
#include "common/json_read.h"
#include "common/url_query.h"
#include "common/service_notify.h"
#include "gateway/gateway_internal.h"
#include "web/respond.h"

namespace clawbot::gateway::detail {
namespace {

// From a fast non-streamed answer (milliseconds) to a long generation (minutes).
const std::vector<double>& latency_buckets() {
  static const std::vector<double> buckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                              1,     2.5,    5,     10,   30,    60,   120, 300};
  return buckets;
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

// Writes under /v1/kb (creating a knowledge base, uploading or deleting documents) need an admin key; a
// search (POST /v1/kb/{name}/search, one path segment for the name) does not, nor does any read.
bool kb_write(bhttp::verb method, std::string_view path) {
  if (method != bhttp::verb::post && method != bhttp::verb::put && method != bhttp::verb::patch &&
      method != bhttp::verb::delete_)
    return false;
  constexpr std::string_view kb = "/v1/kb";
  if (!path.starts_with(kb) || (path.size() > kb.size() && path[kb.size()] != '/')) return false;
  constexpr std::string_view search = "/search";
  if (method == bhttp::verb::post && path.size() > kb.size() + 1 + search.size() && path.ends_with(search)) {
    const std::string_view name = path.substr(kb.size() + 1, path.size() - kb.size() - 1 - search.size());
    if (name.find('/') == std::string_view::npos) return false;
  }
  return true;
}

// Uploads: audio files, a knowledge base's documents (limits.upload_max_body_bytes).
bool is_upload_route(std::string_view path) {
  return path.starts_with("/v1/audio/") || (path.starts_with("/v1/kb/") && path.ends_with("/documents"));
}

}  // namespace

std::string_view offered_protocol(const http::RequestHead& request, bool key) {
  const auto protocols = request.find(bhttp::field::sec_websocket_protocol);
  if (protocols == request.end()) return {};
  std::string_view list(protocols->value().data(), protocols->value().size());
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string_view entry = list.substr(0, comma);
    while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t')) entry.remove_prefix(1);
    while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t')) entry.remove_suffix(1);
    if (!entry.empty() && entry.starts_with(key_protocol_prefix) == key) return entry;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return {};
}

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
  // The host's memory, as serve exports it (the 90% line of the history, the alerts and `top`).
  registry_.gauge_callback("clawbot_system_memory_total_bytes", "System memory",
                           [] { return monitor::system_memory_total_bytes(); });
  registry_.gauge_callback(
      "clawbot_system_memory_used_bytes", "System memory in use (total minus available)",
      [] { return monitor::system_memory_total_bytes() - monitor::system_memory_available_bytes(); });
  alerts_ = std::make_unique<monitor::Alerts>("gateway", config_.alerts);
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
  monitor::History::Options history;
  history.role = "gateway";
  history.interval_s = config_.metrics_interval_s;
  history.queue_capacity = config_.queue.max_waiting;
  for (std::size_t i = 0; i < pool_.size(); ++i) history.upstreams.push_back(pool_.name(i));
  for (const auto& listener : config_.listen) {
    if (!listener.tls) continue;
    const auto end = std::chrono::duration<double>(
                         tls::read_certificate_file(listener.tls->cert).not_after.time_since_epoch())
                         .count();
    history.tls_not_after = std::min(history.tls_not_after.value_or(end), end);  // the first to expire
  }
  history_ = std::make_unique<monitor::History>(registry_, std::move(history));
  history_->add_listener([this](const monitor::Sample& sample) { alerts_->evaluate(sample); });
  history_->set_thresholds(alerts_->thresholds());
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
            // A chunked body has no Content-Length for the header check: its size is known now.
            if (!refusal)
              if (auto too_large = self->body_too_large(exchange->path(), exchange->request().body().size()))
                refusal = Refusal{std::move(*too_large), {}};
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

json error_body(std::string_view path, const Error& error) {
  return error_json_for_path(path, error);
}

// The gateway's own errors in the shape of the protocol asked (its clients read their message there).
asio::awaitable<void> Gateway::reply_error(http::Exchange& ex, Context& ctx, const Error& error,
                                           Headers headers) {
  ctx.status = http_status(error.kind);
  co_await ex.respond_json(ctx.status, error_body(ex.path(), error), std::move(headers));
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
  // The pages and their files need no key (their data routes do: the pages ask for one).
  const bool open_route =
      (path == "/health" && config_.health_open) || (config_.web && web::find_asset(path));
  if (keys_) {
    const std::string_view presented = presented_key(request, path);
    door::KeyRejection why{};
    const auto info = presented.empty() ? std::nullopt : keys_->verify(presented, &why);
    // /health answers anyone (up or down); a valid key also gets the details, without using its limits.
    if (open_route) {
      if (info) {
        ctx.key_id = info->id;
        ctx.key_name = info->name;
      }
      return std::nullopt;
    }
    if (!info) {
      const Error error{ErrorKind::unauthorized,
                        presented.empty() ? std::string("this gateway needs an API key: send it as "
                                                        "\"Authorization: Bearer <key>\" (or x-api-key)")
                                          : std::string("the API key is not valid here (unknown, revoked or "
                                                        "mistyped); ask the gateway's operator for a key"),
                        {},
                        "invalid_api_key"};
      if (!presented.empty() && count)  // (once: the header check asks first)
        spdlog::info("refused a key from {}: {}", ctx.client, door::to_string(why));
      return Refusal{error, {{"WWW-Authenticate", "Bearer"}}};
    }
    ctx.key_id = info->id;
    ctx.key_name = info->name;
    // Both before the body is read (the header check) and again once it is: neither counts anything.
    if (!info->admin && kb_write(request.method(), path)) {
      const Error error{ErrorKind::forbidden,
                        std::string(request.method_string()) + " " + std::string(path.substr(0, 200)) +
                            " changes a knowledge base and needs an admin key (clawbot gateway keys create "
                            "NAME --admin); key " +
                            info->id + " may search knowledge bases only",
                        {},
                        "admin_key_required"};
      return Refusal{error, {}};
    }
    if (path.starts_with("/v1/audio/")) {
      ctx.audio_seconds_per_hour = info->audio_seconds_per_hour > 0 ? info->audio_seconds_per_hour
                                                                    : config_.limits.audio_seconds_per_hour;
      const auto audio = limiter_.admit_audio(info->id, ctx.audio_seconds_per_hour, Clock::now());
      if (!audio.allowed) return rate_limited(info->id, audio);
    }
    if (!count) return std::nullopt;
    const auto decision = limiter_.admit(*info, config_.limits.requests_per_minute,
                                         config_.limits.tokens_per_minute, Clock::now());
    if (!decision.allowed) return rate_limited(info->id, decision);
    ctx.tokens.open(limiter_, info->id, decision.tokens_per_minute);
  }
  return std::nullopt;
}

std::string_view Gateway::presented_key(const http::RequestHead& request, std::string_view path) {
  if (auto it = request.find(bhttp::field::authorization); it != request.end())
    return door::KeyVerifier::key_from_authorization(
        std::string_view(it->value().data(), it->value().size()));
  if (auto key = request.find("x-api-key"); key != request.end())
    return std::string_view(key->value().data(), key->value().size());
  if (path != live_route) return {};
  // A browser's WebSocket cannot set headers: new WebSocket(url, ["clawbot", "bearer." + key]).
  if (const auto entry = offered_protocol(request, true); !entry.empty())
    return entry.substr(key_protocol_prefix.size());
  const std::string_view target(request.target().data(), request.target().size());
  return http::query_param(target, "api_key").value_or(std::string_view());
}

std::size_t Gateway::body_limit(std::string_view path) const {
  return is_upload_route(path) ? config_.limits.upload_max_body_bytes : config_.limits.max_body_bytes;
}

std::optional<Error> Gateway::body_too_large(std::string_view path, std::size_t bytes) const {
  const std::size_t limit = body_limit(path);
  if (bytes <= limit) return std::nullopt;
  const bool upload = is_upload_route(path);
  return Error{ErrorKind::payload_too_large,
               "request body of " + std::to_string(bytes) + " bytes is larger than this gateway's limit of " +
                   std::to_string(limit) + " bytes for " + std::string(path.substr(0, 200)) + " (limits." +
                   (upload ? "upload_max_body_bytes" : "max_body_bytes") + " in gateway.json)",
               {},
               "request_too_large"};
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
  static constexpr std::array<std::string_view, 31> known = {"/v1/chat/completions",
                                                             "/v1/completions",
                                                             "/v1/embeddings",
                                                             "/v1/models",
                                                             "/health",
                                                             "/metrics",
                                                             "/infill",
                                                             "/tokenize",
                                                             "/v1/responses",
                                                             "/v1/messages",
                                                             "/v1/messages/count_tokens",
                                                             "/v1/rerank",
                                                             "/api/chat",
                                                             "/api/generate",
                                                             "/api/embed",
                                                             "/api/embeddings",
                                                             "/api/tags",
                                                             "/api/show",
                                                             "/api/ps",
                                                             "/api/version",
                                                             "/rerank",
                                                             "/v1/audio/transcriptions",
                                                             "/v1/audio/translations",
                                                             "/v1/audio/live",
                                                             "/detokenize",
                                                             "/api/metrics/history",
                                                             "/api/alerts",
                                                             "/dashboard",
                                                             "/",
                                                             "/v1/clawbot/prompts",
                                                             "other"};
  const auto route_index =
      static_cast<int>(std::find(known.begin(), known.end() - 1, route) - known.begin());  // the last: other
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
  if (!ctx.key_id.empty()) count_key_usage(worker, ctx, tokens_in, tokens_out);
  // Scrapes, probes, a dashboard's files and polls are not requests worth an audit record each.
  if (audit_ && !monitor::monitoring_route(route)) {
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
    record.audio_seconds = ctx.audio_seconds;
    audit_->append(std::move(record));
  }
  if (verbose_)
    spdlog::info("{} {} {} {} {:.1f} ms", ctx.client, ex.request().method_string(), route, ctx.status,
                 seconds * 1000);
}

// Each key's requests and tokens (the dashboard's "keys"): its id and name as labels, never its secret.
// Resolved once per key and thread, as the route counters are.
void Gateway::count_key_usage(Worker& worker, const Context& ctx, std::int64_t tokens_in,
                              std::int64_t tokens_out) {
  auto counters = worker.key_counters.find(ctx.key_id);
  if (counters == worker.key_counters.end()) {
    const monitor::Labels labels{{"key", ctx.key_id}, {"name", ctx.key_name}};
    Worker::KeyCounters made{
        registry_.counter("clawbot_gateway_key_requests_total", "Requests by API key", labels),
        registry_.counter("clawbot_gateway_key_prompt_tokens_total", "Prompt tokens by API key", labels),
        registry_.counter("clawbot_gateway_key_completion_tokens_total", "Generated tokens by API key",
                          labels)};
    counters = worker.key_counters.emplace(ctx.key_id, made).first;
  }
  counters->second.requests.add();
  if (tokens_in > 0) counters->second.prompt_tokens.add(static_cast<double>(tokens_in));
  if (tokens_out > 0) counters->second.completion_tokens.add(static_cast<double>(tokens_out));
}

// ------------------------------------------------------------------------------------------- running

http::ServerLimits Gateway::server_limits() const {
  http::ServerLimits limits;
  // The largest a route takes; the header check holds each route to its own (body_limit()).
  limits.max_body_bytes = std::max(config_.limits.max_body_bytes, config_.limits.upload_max_body_bytes);
  limits.max_header_bytes = config_.limits.max_header_bytes;
  limits.write_timeout = std::chrono::seconds(300);  // a slow reader of a long stream is not an error
  limits.header_timeout = config_.limits.header_timeout;
  limits.min_body_rate = config_.limits.min_body_rate;
  limits.max_connections_per_client = config_.limits.max_connections_per_client;
  return limits;
}

// The pages' files (web/: the chat, the dashboard), the same as serve's.
asio::awaitable<void> Gateway::dashboard_asset(Worker&, http::Exchange& ex, Context& ctx) {
  const web::Asset* asset = web::find_asset(ex.path());
  co_await web::respond_asset(ex, *asset);
  ctx.status = ex.status();
}

asio::awaitable<void> Gateway::prompt_tasks(Worker&, http::Exchange& ex, Context& ctx) {
  ctx.status = 200;
  co_await ex.respond_json(200, client::prompt_tasks());
}

asio::awaitable<void> Gateway::prompt_messages(Worker&, http::Exchange& ex, Context& ctx) {
  const json messages =
      client::prompt_messages(json_read::parse_or_throw(ex.request().body(), "request body"));
  ctx.status = 200;
  co_await ex.respond_json(200, messages);
}

// One worker's server for one listener: the gateway's routes, and the door's header check.
std::unique_ptr<http::Server> Gateway::make_server(
    Worker& worker, const http::ServerLimits& limits,
    std::shared_ptr<http::ClientConnections> client_connections, bool reuse_port) {
  auto router = std::make_shared<http::Router>();
  router->add(http::Verb::get, "/health", guarded(worker, &Gateway::health));
  router->add(http::Verb::get, "/metrics", guarded(worker, &Gateway::metrics));
  router->add(http::Verb::get, "/api/alerts", guarded(worker, &Gateway::alerts));
  router->add(http::Verb::get, "/api/metrics/history", guarded(worker, &Gateway::metrics_history));
  router->add(http::Verb::get, "/v1/models", guarded(worker, &Gateway::models));
  router->add(http::Verb::get, "/api/tags", guarded(worker, &Gateway::ollama_tags));
  router->add(http::Verb::get, "/api/ps", guarded(worker, &Gateway::ollama_ps));
  router->add(http::Verb::get, "/api/version", guarded(worker, &Gateway::ollama_version));
  router->add(http::Verb::get, std::string(live_route), guarded(worker, &Gateway::live));
  if (config_.web) {
    for (const web::Asset& asset : web::assets())
      router->add(http::Verb::get, std::string(asset.path), guarded(worker, &Gateway::dashboard_asset));
    router->add(http::Verb::get, std::string(client::prompts_route), guarded(worker, &Gateway::prompt_tasks));
    router->add(http::Verb::post, std::string(client::prompts_route),
                guarded(worker, &Gateway::prompt_messages));
  }
  router->set_fallback(guarded(worker, &Gateway::forward));
  auto server = std::make_unique<http::Server>(worker.io, router, limits);
  server->set_reuse_port(reuse_port);
  server->set_single_threaded(true);  // each worker's io_context runs on its own thread
  server->share_client_connections(std::move(client_connections));
  // The allow-list and the key before a body is read (a refused request costs no body).
  server->set_header_check(
      [this](const http::RequestHead& head, const asio::ip::address& remote) -> std::optional<Error> {
        const std::string_view target(head.target().data(), head.target().size());
        Context ctx;
        const std::string_view path = target.substr(0, target.find('?'));
        auto refusal = admit(head, path, remote, ctx, false);
        if (refusal) return std::move(refusal->error);
        if (const auto length = head.find(bhttp::field::content_length); length != head.end()) {
          std::size_t bytes = 0;
          const auto text = length->value();
          if (std::from_chars(text.data(), text.data() + text.size(), bytes).ec == std::errc())
            return body_too_large(path, bytes);
        }
        return std::nullopt;
      },
      guarded(worker, &Gateway::refused));
  return server;
}

// Every listener on every worker (SO_REUSEPORT); returns the first listener's port.
unsigned short Gateway::listen_all() {
  const http::ServerLimits limits = server_limits();
  const auto client_connections = std::make_shared<http::ClientConnections>();  // one cap for all workers
  const auto threads = workers_.size();
  unsigned short first_listener_port = 0;
  for (auto& listener : config_.listen) {
    unsigned short port = listener.port;
    for (auto& worker : workers_) {
      auto server = make_server(*worker, limits, client_connections, threads > 1);
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
  return first_listener_port;
}

// Announce the first listener on the LAN, with the models its upstreams serve (known after the first health
// checks, so after a short wait).
void Gateway::advertise_later(unsigned short first_port) {
  auto timer = std::make_shared<asio::steady_timer>(workers_[0]->io, std::chrono::milliseconds(1500));
  const Listener first = config_.listen.front();
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

void Gateway::watch_alerts(unsigned short first_port) {
  const Listener& first = config_.listen.front();
  alerts_->set_source(monitor::alert_source("gateway", first.host, first_port, first.tls.has_value()));
  if (const auto not_after = history_->options().tls_not_after)  // (the first listener's to expire)
    registry_.gauge_callback("clawbot_tls_certificate_expiry_timestamp_seconds",
                             "When the first TLS certificate served expires (notAfter, unix seconds)",
                             [at = *not_after] { return at; });
}

int Gateway::run() {
  unsigned threads = config_.threads > 0 ? static_cast<unsigned>(config_.threads)
                                         : std::max(1u, std::thread::hardware_concurrency());
  threads = std::min(threads, 64u);
  for (unsigned t = 0; t < threads; ++t) {
    auto worker = std::make_unique<Worker>();
    worker->idle.resize(config_.upstreams.size());
    workers_.push_back(std::move(worker));
  }
  const unsigned short first_listener_port = listen_all();
  watch_alerts(first_listener_port);
  history_->start();
  asio::co_spawn(workers_[0]->io, health_loop(*workers_[0]), asio::detached);
  if (config_.advertise) advertise_later(first_listener_port);
  // SIGTERM or SIGINT: drain. The listeners close (new connections are refused; a kept-alive connection ends
  // after its current request), the requests in progress finish for up to drain_timeout, then the gateway
  // stops; a second signal stops it at once.
  asio::signal_set signals(workers_[0]->io, SIGINT, SIGTERM);
  asio::steady_timer drain_timer(workers_[0]->io);
  std::chrono::steady_clock::time_point drain_deadline;
  const auto stop_now = [this] {
    for (auto& worker : workers_) worker->io.stop();
  };
  const auto in_progress = [this] {
    std::size_t left = 0;
    for (auto& worker : workers_)
      for (auto& server : worker->servers) left += server->exchanges_in_progress();
    return left;
  };
  std::function<void()> wait_for_drain = [&] {
    const std::size_t left = in_progress();
    if (left == 0 || std::chrono::steady_clock::now() >= drain_deadline) {
      if (left > 0) spdlog::warn("drain timeout: {} requests still in progress are cut", left);
      stop_now();
      return;
    }
    drain_timer.expires_after(std::chrono::milliseconds(20));
    drain_timer.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) wait_for_drain();
    });
  };
  service_notify("READY=1");  // systemd (Type=notify): every listener is open
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    service_notify("STOPPING=1");
    stopping_ = true;
    advertiser_.reset();  // goodbye packets: browsers drop the gateway now
    for (auto& worker : workers_)
      for (auto& server : worker->servers) server->stop();
    spdlog::info("shutting down: finishing {} requests in progress (at most {} s); signal again to stop now",
                 in_progress(), drain_timeout.count());
    drain_deadline = std::chrono::steady_clock::now() + drain_timeout;
    signals.async_wait([&](const boost::system::error_code& again, int) {
      if (!again) stop_now();
    });
    wait_for_drain();
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
  history_->stop();
  if (audit_ && !audit_->flush()) std::cerr << "audit log: " << audit_->last_error() << std::endl;
  std::cout << "clawbot gateway stopped" << std::endl;
  return 0;
}

}  // namespace clawbot::gateway::detail
