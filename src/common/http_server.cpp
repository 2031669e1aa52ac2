#include "common/http_server.h"
#include "common/http_read.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <array>
#include <atomic>
#include <charconv>
#include <optional>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>

namespace clawbot::http {
namespace {

namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr const char* server_name = "clawbot";

http::status to_status(int status) {
  return static_cast<http::status>(status);
}

// After answering a request we will not read (413, a broken request), close the way nginx's lingering close
// does: stop sending, then drain what the client still sends for a moment, so the kernel does not reset the
// connection and destroy the answer before the client reads it.
asio::awaitable<void> lingering_close(beast::tcp_stream& stream) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::array<char, 16384> sink{};
  stream.expires_after(std::chrono::seconds(2));
  std::size_t drained = 0;
  while (drained < (64u << 20)) {
    auto [rec, n] = co_await stream.async_read_some(asio::buffer(sink), use_tuple);
    if (rec) break;
    drained += n;
  }
  stream.socket().close(ec);
}

std::string endpoint_text(const tcp::socket& socket) {
  beast::error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  if (ec) return "an unknown peer";
  const auto address = endpoint.address().to_string();
  return (endpoint.address().is_v6() ? "[" + address + "]" : address) + ":" + std::to_string(endpoint.port());
}

// A plain HTTP request on a TLS port: OpenSSL has read its first bytes and given up. Answer in clear text,
// as nginx does, so that curl and browsers show why instead of an empty reply.
asio::awaitable<void> refuse_plain_http(beast::tcp_stream& stream, const ServerLimits& limits) {
  const Error error{ErrorKind::invalid_request,
                    "this port speaks TLS (HTTPS), not plain HTTP — use https://",
                    {},
                    "tls_required"};
  http::response<http::string_body> res{http::status::bad_request, 11};
  res.set(http::field::server, server_name);
  res.set(http::field::content_type, "application/json");
  res.keep_alive(false);
  res.body() = to_json(error).dump();
  res.prepare_payload();
  stream.expires_after(limits.write_timeout);
  co_await http::async_write(stream, res, use_tuple);
  co_await lingering_close(stream);
}

}  // namespace

// ---------------------------------------------------------------- Exchange

Exchange::Exchange(tls::PlainOrTlsStream& stream, Request request, const ServerLimits& limits,
                   asio::ip::address remote, const ExchangeObserver* observer)
    : stream_(stream),
      request_(std::move(request)),
      limits_(limits),
      remote_(std::move(remote)),
      observer_(observer),
      keep_alive_(request_.keep_alive()) {}

void Exchange::answering(int status) {
  responded_ = true;
  status_ = status;
  if (observer_ && observer_->answering) observer_->answering(*this);
}

std::string Exchange::client_certificate_subject() const {
  SSL* ssl = stream_.ssl();
  if (!ssl || SSL_get_verify_result(ssl) != X509_V_OK) return {};
  X509* certificate = SSL_get0_peer_certificate(ssl);
  return certificate ? tls::name_text(X509_get_subject_name(certificate)) : std::string();
}

bool Exchange::peer_closed(int fd) noexcept {
  char byte = 0;
  const auto got = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

void Exchange::stop_watching() {
  beast::error_code ignored;
  stream_.tcp().socket().cancel(ignored);
}

std::string_view Exchange::path() const noexcept {
  std::string_view target(request_.target().data(), request_.target().size());
  return target.substr(0, target.find('?'));
}

asio::awaitable<void> Exchange::respond_json(int status, const nlohmann::json& body,
                                             std::vector<std::pair<std::string, std::string>> headers) {
  co_await respond_text(status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                        "application/json", std::move(headers));
}

asio::awaitable<void> Exchange::respond_text(int status, std::string body, std::string content_type,
                                             std::vector<std::pair<std::string, std::string>> headers) {
  answering(status);
  http::response<http::string_body> res{to_status(status), request_.version()};
  res.set(http::field::server, server_name);
  res.set(http::field::content_type, content_type);
  for (auto& [name, value] : headers) res.set(name, value);
  res.keep_alive(keep_alive_);
  res.body() = std::move(body);
  res.prepare_payload();
  stream_.io_timeout(limits_.write_timeout);
  auto [ec, n] = co_await http::async_write(stream_, res, use_tuple);
  if (ec) keep_alive_ = false;
}

asio::awaitable<void> Exchange::respond_raw(int status, std::string_view header_lines,
                                            std::string_view body) {
  answering(status);
  // The status line and the closing lines go in small buffers of their own: nothing is copied or allocated
  // for the caller's lines or body.
  struct Line {
    std::array<char, 112> text;
    std::size_t size = 0;
    void put(std::string_view part) {
      part = part.substr(0, text.size() - size);
      std::memcpy(text.data() + size, part.data(), part.size());
      size += part.size();
    }
    void put(std::size_t number) {
      size = static_cast<std::size_t>(
          std::to_chars(text.data() + size, text.data() + text.size(), number).ptr - text.data());
    }
  };
  Line first;
  first.put(request_.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  first.put(static_cast<std::size_t>(status));
  first.put(" ");
  const auto reason = http::obsolete_reason(to_status(status));
  first.put(std::string_view(reason.data(), std::min<std::size_t>(reason.size(), 48)));
  first.put("\r\nServer: ");
  first.put(server_name);
  first.put("\r\n");
  // No body, and no length, where HTTP forbids one (1xx, 204, 304).
  const bool bodiless = status < 200 || status == 204 || status == 304;
  Line last;
  if (!bodiless) {
    last.put("Content-Length: ");
    last.put(body.size());
    last.put("\r\n");
  }
  if (!keep_alive_)
    last.put("Connection: close\r\n");
  else if (request_.version() == 10)
    last.put("Connection: keep-alive\r\n");
  last.put("\r\n");
  const std::array<asio::const_buffer, 4> answer{
      asio::buffer(first.text.data(), first.size), asio::buffer(header_lines.data(), header_lines.size()),
      asio::buffer(last.text.data(), last.size), asio::buffer(body.data(), bodiless ? 0 : body.size())};
  stream_.io_timeout(limits_.write_timeout);
  auto [ec, n] = co_await asio::async_write(stream_, answer, use_tuple);
  if (ec) keep_alive_ = false;
}

asio::awaitable<void> Exchange::respond_error(const Error& error,
                                              std::vector<std::pair<std::string, std::string>> headers) {
  co_await respond_json(http_status(error.kind), to_json(error), std::move(headers));
}

asio::awaitable<bool> Exchange::sse_start() {
  co_return co_await sse_start(std::vector<std::pair<std::string, std::string>>{});
}

asio::awaitable<bool> Exchange::sse_start(std::vector<std::pair<std::string, std::string>> headers) {
  answering(200);
  if (limits_.stream_send_buffer_bytes > 0) {
    beast::error_code ignored;
    stream_.tcp().socket().set_option(asio::socket_base::send_buffer_size(limits_.stream_send_buffer_bytes),
                                      ignored);
  }
  sse_started_ = true;
  http::response<http::empty_body> res{http::status::ok, request_.version()};
  res.set(http::field::server, server_name);
  res.set(http::field::content_type, "text/event-stream");
  res.set(http::field::cache_control, "no-cache");
  for (auto& [name, value] : headers) res.set(name, value);
  res.set("X-Accel-Buffering", "no");  // tell nginx-like proxies not to buffer the stream
  res.keep_alive(keep_alive_);
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  stream_.io_timeout(limits_.write_timeout);
  auto [ec, n] = co_await http::async_write_header(stream_, sr, use_tuple);
  if (ec) keep_alive_ = false;
  co_return !ec;
}

asio::awaitable<bool> Exchange::write_chunk(std::string payload) {
  if (!keep_alive_ && !sse_started_) co_return false;
  stream_.io_timeout(limits_.write_timeout);
  auto [ec, n] = co_await asio::async_write(stream_, http::make_chunk(asio::buffer(payload)), use_tuple);
  if (ec) {
    keep_alive_ = false;
    sse_started_ = false;  // nothing more can be written
    co_return false;
  }
  co_return true;
}

asio::awaitable<bool> Exchange::sse_data(std::string_view data) {
  std::string payload;
  payload.reserve(data.size() + 8);
  payload.append("data: ").append(data).append("\n\n");
  co_return co_await write_chunk(std::move(payload));
}

asio::awaitable<bool> Exchange::sse_comment(std::string_view text) {
  co_return co_await write_chunk(": " + std::string(text) + "\n\n");
}

asio::awaitable<void> Exchange::sse_finish() {
  if (!sse_started_) co_return;
  // (Named locals and plain statements: GCC 12 miscompiled the one-line form of this coroutine.)
  std::string done = "data: [DONE]\n\n";
  const bool written = co_await write_chunk(std::move(done));
  if (!written) co_return;
  co_await sse_end();
}

asio::awaitable<void> Exchange::sse_end() {
  if (!sse_started_) co_return;
  sse_started_ = false;  // the body is complete: nothing more may be written
  stream_.io_timeout(limits_.write_timeout);
  auto [ec, n] = co_await asio::async_write(stream_, http::make_chunk_last(), use_tuple);
  if (ec) keep_alive_ = false;
}

// ---------------------------------------------------------------- Router

void Router::add(Verb method, std::string path, Handler handler) {
  routes_.push_back({method, std::move(path), std::move(handler)});
}

namespace {

// 405 with Allow when `allowed` names the path's methods, else 404.
asio::awaitable<void> answer_unrouted(Exchange& exchange, std::string allowed) {
  const std::string_view path = exchange.path();
  // (Named locals, not braced temporaries inside co_await: GCC 12 miscompiles the latter.)
  if (!allowed.empty()) {
    const Error error{ErrorKind::method_not_allowed,
                      "method " + std::string(exchange.request().method_string()) + " is not allowed on " +
                          std::string(path) + "; use " + allowed,
                      {},
                      {}};
    std::vector<std::pair<std::string, std::string>> headers;
    headers.emplace_back("Allow", allowed);
    co_await exchange.respond_error(error, std::move(headers));
    co_return;
  }
  const Error error{ErrorKind::not_found,
                    "no route " + std::string(path) + " (see GET /v1/models for what this server offers)",
                    {},
                    {}};
  co_await exchange.respond_error(error);
}

}  // namespace

// Not a coroutine: it hands back the chosen handler's own coroutine (one frame less per request).
asio::awaitable<void> Router::dispatch(Exchange& exchange) const {
  const std::string_view path = exchange.path();
  std::string allowed;
  for (const auto& route : routes_) {
    if (route.path != path) continue;
    if (route.method == exchange.request().method()) return route.handler(exchange);
    if (!allowed.empty()) allowed += ", ";
    allowed += std::string(http::to_string(route.method));
  }
  if (allowed.empty() && fallback_) return fallback_(exchange);
  return answer_unrouted(exchange, std::move(allowed));
}

// ---------------------------------------------------------------- Server

struct Server::State : std::enable_shared_from_this<Server::State> {
  asio::io_context& io;
  std::shared_ptr<const Router> router;
  ServerLimits limits;
  tcp::acceptor acceptor;
  std::shared_ptr<asio::ssl::context> tls_context;  // one per listener; null: plain HTTP
  std::chrono::milliseconds tls_handshake_timeout{10'000};
  bool reuse_port = false;
  bool single_threaded = false;
  ExchangeObserver observer;
  std::atomic<std::size_t> in_progress{0};

  State(asio::io_context& io_, std::shared_ptr<const Router> r, ServerLimits l)
      : io(io_), router(std::move(r)), limits(l), acceptor(io_) {}

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    for (;;) {
      // Each session on its own strand: a tcp_stream's timer and I/O must not run on two threads at once.
      asio::any_io_executor session_executor = io.get_executor();
      if (!single_threaded) session_executor = asio::make_strand(io);
      auto [ec, socket] = co_await acceptor.async_accept(session_executor, use_tuple);
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      if (ec) {
        spdlog::warn("accept failed: {}", ec.message());
        continue;
      }
      // Each SSE event is a small write: without this, Nagle holds it until the client's delayed ACK (~40
      // ms).
      beast::error_code nodelay_ec;
      socket.set_option(tcp::no_delay(true), nodelay_ec);
      asio::co_spawn(socket.get_executor(), session(beast::tcp_stream(std::move(socket))), asio::detached);
    }
  }

  // The TLS handshake, bounded in time. Failures are the client's business (a wrong CA, no certificate, a
  // port scan): logged at debug level, and the connection closed without stalling anything else.
  asio::awaitable<bool> tls_handshake(tls::PlainOrTlsStream& stream) {
    stream.start_tls(*tls_context);
    stream.expires_after(tls_handshake_timeout);
    auto [ec] = co_await stream.tls().async_handshake(asio::ssl::stream_base::server, use_tuple);
    if (!ec) co_return true;
    spdlog::debug("TLS handshake with {} failed: {}", endpoint_text(stream.tcp().socket()),
                  tls::describe_server_failure(ec, stream.ssl()));
    if (tls::is_plain_http_request(ec)) {
      co_await refuse_plain_http(stream.tcp(), limits);
    } else if (ec != beast::error::timeout) {
      co_await lingering_close(stream.tcp());  // let the client read the alert before the socket closes
    }
    co_return false;
  }

  asio::awaitable<void> session(beast::tcp_stream tcp_stream) {
    auto self = shared_from_this();
    tls::PlainOrTlsStream stream(std::move(tcp_stream));
    if (tls_context && !co_await tls_handshake(stream)) co_return;
    beast::error_code remote_ec;
    const asio::ip::address remote = stream.tcp().socket().remote_endpoint(remote_ec).address();
    beast::flat_buffer buffer;
    bool peer_closed = false;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(limits.max_body_bytes);
      parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
      stream.io_timeout(limits.idle_timeout);
      const beast::error_code ec = co_await detail::read_message(stream, buffer, parser, false);
      const auto read_at = std::chrono::steady_clock::now();
      // A TLS client that closes without close_notify (stream_truncated) has only left, like end_of_stream:
      // every request it sent was complete, so nothing was cut short.
      if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
          ec == asio::ssl::error::stream_truncated) {
        peer_closed = true;
        break;
      }
      if (ec == beast::error::timeout || ec == asio::error::operation_aborted) break;
      if (ec.category() == asio::error::get_ssl_category()) {  // broken TLS: no answer could be read
        spdlog::debug("TLS with {} failed: {}", endpoint_text(stream.tcp().socket()), ec.message());
        break;
      }
      if (ec) {
        Request req;
        req.version(11);
        req.keep_alive(false);
        Exchange reply(stream, std::move(req), limits, remote, &observer);
        Error error{ErrorKind::invalid_request, "malformed HTTP request: " + ec.message(), {}, "bad_http"};
        int status = 400;
        if (ec == http::error::body_limit) {
          error = Error{ErrorKind::payload_too_large,
                        "request body is larger than this server's limit of " +
                            std::to_string(limits.max_body_bytes) + " bytes",
                        {},
                        {}};
          status = 413;
        } else if (ec == http::error::header_limit) {
          error =
              Error{ErrorKind::invalid_request,
                    "request headers are larger than " + std::to_string(limits.max_header_bytes) + " bytes",
                    {},
                    "headers_too_large"};
          status = 431;
        }
        const nlohmann::json body = to_json(error);
        co_await reply.respond_json(status, body);
        if (observer.ended) observer.ended(reply, std::chrono::steady_clock::now() - read_at);
        co_await lingering_close(stream.tcp());
        co_return;
      }

      Exchange exchange(stream, parser.release(), limits, remote, &observer);
      ++in_progress;
      std::optional<Error> failure;  // co_await may not appear inside a catch handler
      try {
        co_await router->dispatch(exchange);
      } catch (const ClawbotError& e) {
        failure = e.error();
      } catch (const std::exception& e) {
        spdlog::error("handler for {} failed: {}", exchange.path(), e.what());
        failure = Error{ErrorKind::internal, std::string("internal error: ") + e.what(), {}, {}};
      }
      if (failure && !exchange.responded()) co_await exchange.respond_error(*failure);
      if (exchange.sse_started()) co_await exchange.sse_finish();
      --in_progress;
      if (observer.ended) observer.ended(exchange, std::chrono::steady_clock::now() - read_at);
      if (!exchange.keep_alive()) break;
    }
    if (stream.is_tls() && !peer_closed) {
      // close_notify, so the client knows the end is real; a client that never answers it costs a second.
      stream.expires_after(std::chrono::seconds(1));
      co_await stream.tls().async_shutdown(use_tuple);
    }
    beast::error_code ignored;
    stream.tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
  }
};

Server::Server(asio::io_context& io, std::shared_ptr<const Router> router, ServerLimits limits)
    : state_(std::make_shared<State>(io, std::move(router), limits)) {}

Server::~Server() {
  stop();
}

unsigned short Server::listen(const std::string& host, unsigned short port, const tls::ServerConfig& tls) {
  state_->tls_context = tls::make_server_context(tls);
  state_->tls_handshake_timeout = tls.handshake_timeout;
  return listen(host, port);
}

unsigned short Server::listen(const std::string& host, unsigned short port) {
  beast::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) throw std::runtime_error("--host '" + host + "' is not an IPv4 or IPv6 address");
  const tcp::endpoint endpoint(address, port);
  auto& acceptor = state_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && state_->reuse_port)
    acceptor.set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (ec) {
    throw std::runtime_error(
        "cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message() +
        (ec == asio::error::address_in_use ? " (another server uses this port? pick --port)" : ""));
  }
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
  asio::co_spawn(state_->io, state_->accept_loop(), asio::detached);
  return acceptor.local_endpoint().port();
}

void Server::set_single_threaded(bool on) noexcept {
  state_->single_threaded = on;
}

void Server::set_observer(ExchangeObserver observer) {
  state_->observer = std::move(observer);
}

std::size_t Server::exchanges_in_progress() const noexcept {
  return state_->in_progress.load();
}

void Server::set_reuse_port(bool on) noexcept {
  state_->reuse_port = on;
}

void Server::stop() {
  if (!state_) return;
  asio::post(state_->io, [state = state_] {
    beast::error_code ignored;
    state->acceptor.close(ignored);
  });
}

}  // namespace clawbot::http
