// GET /v1/audio/live through the gateway: the client's WebSocket is relayed to a node that lists a speech
// model (serve's route: binary messages of 16-bit mono PCM at 16 kHz in, JSON text messages out).
//
// The upstream's WebSocket is opened first, so that a node that refuses (no speech model, draining) is
// answered over HTTP with its own status and body; only then is the client's upgrade accepted. Each direction
// then reads one message and writes it on before reading the next: a reader that does not keep up stops the
// other side's reads (TCP's flow control reaches the writer), so a session holds at most one message per
// direction whatever the clients do. Close codes and reasons pass through both ways; a node that fails
// mid-stream closes the client with 4502 (private use: "bad gateway"); the key's audio limit or its
// revocation closes it with 1008 (policy), a drain with 1001 after the node has finished what it had.
#include <spdlog/spdlog.h>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include "common/url_query.h"
#include "common/websocket.h"
#include "gateway/gateway_internal.h"

namespace clawbot::gateway::detail {
namespace {

namespace websocket = beast::websocket;
using namespace asio::experimental::awaitable_operators;

// Close codes the gateway sends on its own account.
constexpr std::uint16_t close_upstream_failed = 4502;  // the node failed mid-stream (502 "bad gateway")
constexpr auto close_policy = websocket::close_code::policy_error;    // 1008: the key's limit, revocation
constexpr auto close_going_away = websocket::close_code::going_away;  // 1001: the gateway drains
// serve's live format: 16 kHz, 16-bit, mono.
constexpr double pcm_bytes_per_second = 16000.0 * 2;
constexpr std::size_t max_client_message = 1u << 20;    // serve's own read limit
constexpr std::size_t max_upstream_message = 4u << 20;  // a JSON message of segments
constexpr auto key_check_interval = std::chrono::seconds(1);

// A close reason fits a control frame: 123 bytes, cut on a UTF-8 character boundary.
websocket::close_reason close_with(std::uint16_t code, std::string_view text) {
  if (text.size() > 123) {
    std::size_t n = 123;
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
    text = text.substr(0, n);
  }
  return websocket::close_reason(static_cast<websocket::close_code>(code), text);
}

// The target as the node gets it: the client's query without api_key (a key is never passed on).
std::string upstream_target(std::string_view target) {
  const auto q = target.find('?');
  std::string out(live_route);
  if (q == std::string_view::npos) return out;
  std::string_view query = target.substr(q + 1);
  char separator = '?';
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (!pair.empty() && pair.substr(0, pair.find('=')) != "api_key") {
      out += separator;
      out += pair;
      separator = '&';
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

}  // namespace

// One live session on one upstream: connect, accept, relay, close.
class Gateway::LiveRelay {
 public:
  LiveRelay(Gateway& gateway, Worker& worker, http::Exchange& ex, Context& ctx, Outbound& out,
            const Pick& pick)
      : gw_(gateway),
        worker_(worker),
        ex_(ex),
        ctx_(ctx),
        out_(out),
        pick_(pick),
        upstream_(gateway.config_.upstreams[pick.index]),
        up_stream_(beast::tcp_stream(worker.io.get_executor())) {}

  asio::awaitable<Outcome> run() {
    if (auto failure = co_await connect()) {
      const Outcome outcome = co_await connect_failed(*failure);
      co_return outcome;
    }
    // The client's side: accepted only now that the node has.
    tls::PlainOrTlsStream& client_stream = ex_.take_over();
    ctx_.status = 101;
    client_stream.retime(std::chrono::steady_clock::duration::zero());  // the WebSocket's own timeouts rule
    websocket::stream<tls::PlainOrTlsStream&> down(client_stream);
    down_ = &down;
    down.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    down.read_message_max(max_client_message);
    down.set_option(websocket::stream_base::decorator(
        // (the client's first offer that is not its key: a browser fails a connection whose answer names none
        // of those it offered)
        [protocol = std::string(offered_protocol(ex_.request(), false).substr(0, 100)),
         upstream = ctx_.upstream](websocket::response_type& r) {
          if (!protocol.empty()) r.set(bhttp::field::sec_websocket_protocol, protocol);
          r.set("X-Clawbot-Upstream", upstream);
        }));
    auto [accept_error] = co_await down.async_accept(ex_.request(), use_tuple);
    if (accept_error) {
      up_closing_ = true;
      co_await up_.async_close(close_with(close_going_away, "the client's upgrade failed"), use_tuple);
      gw_.pool_.finish(pick_, false, {}, Clock::now());
      co_return Outcome::answered;
    }
    if (gw_.keys_) presented_ = std::string(presented_key(ex_.request(), ex_.path()));
    next_key_check_ = Clock::now() + key_check_interval;
    co_await (client_to_node() && node_to_client());
    if (upstream_failure_.empty()) {
      gw_.pool_.finish(pick_, false, "answered 101", Clock::now());
    } else {
      gw_.pool_.finish_unproven(pick_, upstream_failure_, Clock::now());
      gw_.registry_.counter_add("clawbot_gateway_upstream_errors_total", "Upstream failures by kind",
                                {{"upstream", ctx_.upstream}, {"kind", "mid_stream"}});
    }
    gw_.count_upstream_answer(worker_, pick_.index, ctx_.upstream, 101);
    co_return Outcome::answered;
  }

 private:
  // The upstream's WebSocket; nullopt when it is open, else why not (with the node's answer when it gave
  // one: `answer` holds its status).
  asio::awaitable<std::optional<std::string>> connect() {
    const http::Url& url = upstream_.parsed;
    const auto executor = worker_.io.get_executor();
    asio::ip::tcp::resolver resolver(executor);
    auto [resolve_error, endpoints] = co_await resolver.async_resolve(url.host, url.port, use_tuple);
    if (resolve_error) co_return "resolve: " + resolve_error.message();
    up_stream_.expires_after(gw_.config_.connect_timeout);
    auto [connect_error, endpoint] = co_await up_stream_.tcp().async_connect(endpoints, use_tuple);
    if (connect_error) co_return "connect: " + connect_error.message();
    boost::system::error_code ignored;  // small frames both ways: not held back by Nagle's algorithm
    up_stream_.tcp().socket().set_option(asio::ip::tcp::no_delay(true), ignored);
    if (url.is_https()) {
      http::ClientOptions options;
      options.tls_ca_file = upstream_.tls_ca_file;
      options.tls_insecure = upstream_.tls_insecure;
      try {
        tls_context_ = tls::make_client_context(http::tls_client_config(options));
      } catch (const std::exception& e) {
        co_return std::string("TLS setup: ") + e.what();
      }
      up_stream_.start_tls(*tls_context_);
      tls::prepare_client(up_stream_.tls(), url.host, !upstream_.tls_insecure, verify_);
      up_stream_.expires_after(gw_.config_.connect_timeout);
      auto [handshake_error] =
          co_await up_stream_.tls().async_handshake(asio::ssl::stream_base::client, use_tuple);
      if (handshake_error) co_return "TLS handshake: " + handshake_error.message();
    }
    up_stream_.tcp().expires_never();
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = std::chrono::seconds(10);  // the upgrade, and a close
    timeouts.idle_timeout = std::chrono::seconds(60);       // a silent node is pinged at 30 s
    timeouts.keep_alive_pings = true;
    up_.set_option(timeouts);
    up_.read_message_max(max_upstream_message);
    std::string authorization = upstream_.api_key.empty() ? std::string() : "Bearer " + upstream_.api_key;
    up_.set_option(websocket::stream_base::decorator(
        [authorization, client = ctx_.client,
         request_id = std::string(out_.request_id)](websocket::request_type& r) {
          r.set(bhttp::field::user_agent, "clawbot-gateway");
          if (!authorization.empty()) r.set(bhttp::field::authorization, authorization);
          r.set("X-Forwarded-For", client);
          if (!request_id.empty()) r.set("X-Request-Id", request_id);
        }));
    const bool default_port = url.port == (url.is_https() ? "443" : "80");
    const std::string host = (url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host) +
                             (default_port ? "" : ":" + url.port);
    const std::string_view target(ex_.request().target().data(), ex_.request().target().size());
    auto [handshake_error] =
        co_await up_.async_handshake(answer_, host, url.path + upstream_target(target), use_tuple);
    // (Beast marks `answer_` 500 when no answer was read: only upgrade_declined means the node answered.)
    node_answered_ = handshake_error == websocket::error::upgrade_declined;
    if (handshake_error)
      co_return node_answered_ ? "answered " + std::to_string(answer_.result_int())
                               : "WebSocket handshake: " + handshake_error.message();
    co_return std::nullopt;
  }

  // The node did not take the session: its own refusal goes to the client as it is (the client's upgrade is
  // still an HTTP request), a busy node (503) or an unreachable one is left for another.
  asio::awaitable<Outcome> connect_failed(const std::string& why) {
    const int status = node_answered_ ? answer_.result_int() : 0;
    if (status == 503) {
      gw_.pool_.busy(pick_, std::nullopt, Clock::now());
      out_.refused_busy = true;
      out_.last_failure = ctx_.upstream + ": answered 503";
      co_return Outcome::retry;
    }
    if (status != 0) {
      gw_.pool_.finish(pick_, status == 502 || status == 504, why, Clock::now());
      gw_.count_upstream_answer(worker_, pick_.index, ctx_.upstream, status);
      ctx_.status = status;
      std::string lines = "Content-Type: ";
      const auto type = answer_.find(bhttp::field::content_type);
      lines.append(type == answer_.end() ? std::string_view("application/json")
                                         : std::string_view(type->value().data(), type->value().size()));
      lines.append("\r\nX-Clawbot-Upstream: ").append(ctx_.upstream).append("\r\n");
      co_await ex_.respond_raw(status, lines, answer_.body());
      co_return Outcome::answered;
    }
    gw_.pool_.finish(pick_, true, why, Clock::now());
    gw_.registry_.counter_add("clawbot_gateway_upstream_errors_total", "Upstream failures by kind",
                              {{"upstream", ctx_.upstream}, {"kind", "connect"}});
    out_.tried.push_back(pick_.index);
    out_.last_failure = ctx_.upstream + ": " + why;
    co_return ++out_.failures <= gw_.config_.retries ? Outcome::retry : Outcome::give_up;
  }

  // The client's messages to the node, counted; the key's limit and revocation end the session here.
  asio::awaitable<void> client_to_node() {
    auto& down = *down_;
    beast::flat_buffer buffer;
    for (;;) {
      buffer.clear();
      auto [read_error, n] = co_await down.async_read(buffer, use_tuple);
      if (read_error) {
        if (down_closing_) co_return;  // our close (passed on from the node) completed
        down_closing_ = true;          // the client closed, or left: either way, its side is over
        if (read_error == websocket::error::closed)
          co_await close_up(down.reason());
        else
          co_await close_up(close_with(close_going_away, "the client went away: " + read_error.message()));
        co_return;
      }
      const bool binary = down.got_binary();
      if (draining_ && binary) continue;  // after the stop sent for the drain: nothing more is transcribed
      if (binary) {
        if (auto over = over_limit()) {
          co_await end_session(close_with(close_policy, *over));
          co_return;
        }
        const double seconds = static_cast<double>(n) / pcm_bytes_per_second;
        ctx_.audio_seconds += seconds;
        if (!ctx_.key_id.empty()) gw_.limiter_.add_audio(ctx_.key_id, seconds, Clock::now());
      }
      if (auto revoked = key_revoked()) {
        co_await end_session(close_with(close_policy, *revoked));
        co_return;
      }
      if (up_closing_) continue;  // the node's side is over; the client's close is on its way
      up_.binary(binary);
      std::string_view payload(static_cast<const char*>(buffer.data().data()), n);
      static constexpr std::string_view stop = R"({"type":"stop"})";
      if (gw_.stopping_ && !draining_) {
        // The gateway drains: the node finishes what it has (its finals and "done" still reach the client),
        // then its close ends the session, passed on as 1001.
        draining_ = true;
        up_.text(true);
        payload = stop;
      }
      auto [write_error, written] = co_await up_.async_write(asio::buffer(payload), use_tuple);
      if (write_error) {
        if (up_closing_) continue;
        co_await upstream_failed(write_error);
      }
    }
  }

  // The node's messages to the client, as they come.
  asio::awaitable<void> node_to_client() {
    auto& down = *down_;
    beast::flat_buffer buffer;
    for (;;) {
      buffer.clear();
      auto [read_error, n] = co_await up_.async_read(buffer, use_tuple);
      if (read_error) {
        if (up_closing_) co_return;  // our close completed, or the node's failure was handled
        if (read_error == websocket::error::closed) {
          up_closing_ = true;
          co_await close_down(draining_ ? close_with(close_going_away, "the gateway is shutting down")
                                        : up_.reason());
        } else {
          co_await upstream_failed(read_error);
        }
        co_return;
      }
      if (down_closing_) continue;  // the client's side is over: what the node still sends is dropped
      down.binary(up_.got_binary());
      auto [write_error, written] = co_await down.async_write(buffer.data(), use_tuple);
      if (write_error) {
        // The client is gone (its read fails too); a node we are writing to must not wait for it.
        down_closing_ = true;
        co_await close_up(close_with(close_going_away, "the client went away: " + write_error.message()));
        co_return;
      }
    }
  }

  // Why the key's audio allowance is used up, or nothing.
  std::optional<std::string> over_limit() {
    if (ctx_.key_id.empty() || ctx_.audio_seconds_per_hour <= 0) return std::nullopt;
    const auto decision = gw_.limiter_.admit_audio(ctx_.key_id, ctx_.audio_seconds_per_hour, Clock::now());
    if (decision.allowed) return std::nullopt;
    return "audio seconds per hour of key " + ctx_.key_id + " used up (" +
           std::to_string(ctx_.audio_seconds_per_hour) + "); resets in " +
           std::to_string(decision.retry_after.count()) + " s";
  }

  // A key revoked (or its row tampered with) during the session ends it within key_check_interval.
  std::optional<std::string> key_revoked() {
    if (presented_.empty()) return std::nullopt;
    const auto now = Clock::now();
    if (now < next_key_check_) return std::nullopt;
    next_key_check_ = now + key_check_interval;
    if (gw_.keys_->verify(presented_)) return std::nullopt;
    return "the API key " + ctx_.key_id + " was revoked during the session";
  }

  // The gateway ends the session: the node's side first (quick), then the client's, with `reason`.
  asio::awaitable<void> end_session(websocket::close_reason reason) {
    spdlog::info("live session of key {} from {} closed: {}", ctx_.key_id, ctx_.client,
                 std::string_view(reason.reason.data(), reason.reason.size()));
    co_await close_up(close_with(websocket::close_code::normal, "closed by the gateway"));
    co_await close_down(reason);
  }

  asio::awaitable<void> upstream_failed(const beast::error_code& ec) {
    up_closing_ = true;  // nothing to close: the connection is gone
    upstream_failure_ = ec.message();
    spdlog::warn("upstream {} failed mid-stream (live session): {}", ctx_.upstream, upstream_failure_);
    co_await close_down(close_with(close_upstream_failed, "bad gateway: the node " + ctx_.upstream +
                                                              " failed mid-stream: " + upstream_failure_));
  }

  asio::awaitable<void> close_up(websocket::close_reason reason) {
    if (up_closing_) co_return;
    up_closing_ = true;
    co_await up_.async_close(reason, use_tuple);
  }

  asio::awaitable<void> close_down(websocket::close_reason reason) {
    if (down_closing_) co_return;
    down_closing_ = true;
    co_await down_->async_close(reason, use_tuple);
  }

  Gateway& gw_;
  Worker& worker_;
  http::Exchange& ex_;
  Context& ctx_;
  Outbound& out_;
  const Pick& pick_;
  const Upstream& upstream_;
  std::shared_ptr<asio::ssl::context> tls_context_;
  tls::VerifyRecord verify_;
  tls::PlainOrTlsStream up_stream_;
  websocket::stream<tls::PlainOrTlsStream&> up_{up_stream_};
  websocket::response_type answer_;
  bool node_answered_ = false;  // the upgrade was answered over HTTP (answer_ holds the node's refusal)
  websocket::stream<tls::PlainOrTlsStream&>* down_ = nullptr;
  std::string presented_;  // the client's key, checked again while the session lasts (never logged)
  Clock::time_point next_key_check_{};
  bool up_closing_ = false;    // the node's side is closing or gone: no more writes, no second close
  bool down_closing_ = false;  // the same for the client's side
  bool draining_ = false;      // the gateway drains: the node was told to stop
  std::string upstream_failure_;
};

asio::awaitable<void> Gateway::live(Worker& worker, http::Exchange& ex, Context& ctx) {
  if (stopping_) {
    const Error error{
        ErrorKind::unavailable, "the gateway is shutting down; connect again", {}, "shutting_down"};
    Headers retry{{"Retry-After", "1"}};
    co_await reply_error(ex, ctx, error, std::move(retry));
    co_return;
  }
  if (!websocket::is_upgrade(ex.request())) {
    const Error error{
        ErrorKind::invalid_request,
        "/v1/audio/live is a WebSocket: connect with Upgrade: websocket and send 16-bit mono PCM "
        "at 16 kHz (clawbot transcribe --live does)",
        {},
        "websocket_required"};
    co_await reply_error(ex, ctx, error);
    co_return;
  }
  const std::string_view target(ex.request().target().data(), ex.request().target().size());
  Outbound out;
  out.facts.model =
      std::string(http::query_param(target, "model").value_or(std::string_view()).substr(0, 256));
  if (auto none = transcription_model(out.facts.model)) {
    co_await reply_error(ex, ctx, *none);
    co_return;
  }
  ctx.model = out.facts.model;
  out.request_id = {};
  if (auto id = ex.request().find("x-request-id"); id != ex.request().end())
    out.request_id = std::string_view(id->value().data(), std::min<std::size_t>(id->value().size(), 200));
  out.deadline = Clock::now() + config_.queue.timeout;
  auto attempt = [&](const Pick& pick) -> asio::awaitable<Outcome> {
    LiveRelay relay(*this, worker, ex, ctx, out, pick);
    co_return co_await relay.run();
  };
  if (co_await try_upstreams(ex, ctx, out, 0, attempt)) co_return;
  const Error error{ErrorKind::bad_gateway,
                    "no upstream took the live session after " + std::to_string(out.failures) +
                        " tries; last: " + out.last_failure,
                    {},
                    {}};
  co_await reply_error(ex, ctx, error);
}

}  // namespace clawbot::gateway::detail
