// A small HTTP/1.1 server on Boost.Beast with C++20 coroutines: routing, body limits, JSON replies and
// server-sent events, over plain TCP or TLS. Handlers know nothing of sockets; they answer through an
// Exchange.
//
// Hostile clients are bounded (ServerLimits): every buffer has a maximum (chunk headers and trailers
// included), the header block and the body have deadlines, connections per client address may be capped,
// and at the process's file-descriptor limit the accept loop sheds connections instead of spinning. Requests
// that proxies and servers may read differently are refused with 400 and the connection closed: a
// Transfer-Encoding other than exactly "chunked", Transfer-Encoding with Content-Length, folded header lines
// (obs-fold), a target that is not a path (absolute-form "http://host/...", authority-form; "OPTIONS *"
// passes). "Expect: 100-continue" is answered here, once the head is accepted, and never reaches handlers.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/tls.h"

namespace clawbot::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using Request = beast::http::request<beast::http::string_body>;
using RequestHead = beast::http::request_header<>;
using Verb = beast::http::verb;

struct ServerLimits {
  std::size_t max_body_bytes = 8u << 20;
  // A request's header block; also the most a chunk header (with its extensions) or a trailer section may
  // take, and so the most any connection buffers besides a body (at least 16 KiB).
  std::size_t max_header_bytes = 16u << 10;
  std::chrono::seconds idle_timeout{60};  // waiting for a request, and for any one read
  // The whole header block, from its first byte: a client that sends a byte now and then (slowloris) is cut
  // off here, not kept alive by each byte.
  std::chrono::milliseconds header_timeout{30'000};
  // A body must arrive at this average rate (bytes a second) once body_rate_grace has passed; 0: any rate.
  std::size_t min_body_rate = 1024;
  std::chrono::milliseconds body_rate_grace{10'000};
  std::chrono::seconds write_timeout{60};  // one write to a client that does not read
  // Open connections from one client address; one more is answered 429 and closed. 0: no cap.
  std::size_t max_connections_per_client = 0;
  // SO_SNDBUF of a connection once it streams events (0: the kernel's autotuning, up to 4 MiB on Linux): how
  // far a stream may run ahead of a client that does not read before its writes wait.
  int stream_send_buffer_bytes = 0;
};

// Open connections per client address, for ServerLimits::max_connections_per_client; one table may be
// shared by the servers of a process (a gateway's workers) so that the cap holds across them.
class ClientConnections {
 public:
  // Counts a connection from `address`, unless `limit` of them are open already (then false).
  bool try_open(const asio::ip::address& address, std::size_t limit);
  void close(const asio::ip::address& address);

 private:
  std::mutex mutex_;
  std::unordered_map<asio::ip::address, std::size_t> open_;
};

class Exchange;

// What a server tells its owner about each exchange (for per-status counters and an access log).
struct ExchangeObserver {
  // The answer's status is set and its writing starts: a client that has read the answer finds it counted.
  std::function<void(const Exchange&)> answering;
  // The exchange is over (answer written, or the client gone), `elapsed` after its request was read.
  std::function<void(const Exchange&, std::chrono::steady_clock::duration elapsed)> ended;
};

// One request and its answer. Exactly one of respond_* or an SSE sequence is used.
class Exchange {
 public:
  Exchange(tls::PlainOrTlsStream& stream, Request request, const ServerLimits& limits,
           asio::ip::address remote = {}, std::optional<Error> refusal = std::nullopt,
           const ExchangeObserver* observer = nullptr);

  const Request& request() const noexcept { return request_; }
  // The request's body moved out, for a handler that hands it to another thread without a copy (an audio
  // upload); request().body() is empty afterwards.
  std::string take_body() noexcept { return std::move(request_.body()); }
  std::string_view path() const noexcept;  // the target without its query
  bool responded() const noexcept { return responded_; }
  bool keep_alive() const noexcept { return keep_alive_; }
  asio::any_io_executor executor() { return stream_.get_executor(); }
  const ServerLimits& limits() const noexcept { return limits_; }
  bool is_tls() const noexcept { return stream_.is_tls(); }
  // The subject of the client's verified certificate ("CN=laptop1,O=Home"); empty without one.
  std::string client_certificate_subject() const;
  // The peer's address (read once per connection); unspecified when the socket did not know it.
  const asio::ip::address& remote_address() const noexcept { return remote_; }
  // Why the server's header check refused this request (see Server::set_header_check); its body was not
  // read, and the connection closes after the answer. Null for every request a handler gets through routes.
  const Error* refusal() const noexcept { return refusal_ ? &*refusal_ : nullptr; }
  // The status of the answer (200 once a stream started); 0 while none was sent.
  int status() const noexcept { return status_; }
  // What the handler notes for the access log (tokens, timings): a JSON object, null when nothing.
  nlohmann::json& log_fields() noexcept { return log_fields_; }
  const nlohmann::json& log_fields() const noexcept { return log_fields_; }

  asio::awaitable<void> respond_json(int status, const nlohmann::json& body,
                                     std::vector<std::pair<std::string, std::string>> headers = {});
  asio::awaitable<void> respond_text(int status, std::string body, std::string content_type,
                                     std::vector<std::pair<std::string, std::string>> headers = {});
  asio::awaitable<void> respond_error(const Error& error,
                                      std::vector<std::pair<std::string, std::string>> headers = {});
  // An answer whose headers the caller has written as "Name: value\r\n" lines (valid, and without
  // Content-Length, Connection or Transfer-Encoding): the status line, Server, Content-Length and Connection
  // are added here. For a proxy passing an answer through without a field-by-field copy. (To a HEAD request
  // every respond_* sends the header only, with the Content-Length of `body`.)
  asio::awaitable<void> respond_raw(int status, std::string_view header_lines, std::string_view body);

  // For a handler that waits on something else (an upstream): calls `on_close` (on this connection's
  // executor) when the client closes its connection; never once stop_watching() has run, nor when the client
  // sends more bytes instead. Only while nothing else reads. (A callback, not a coroutine: it costs one wait
  // on the socket per request.)
  template <class OnClose>
  void watch_for_close(OnClose on_close) {
    auto& socket = stream_.tcp().socket();
    socket.async_wait(
        asio::socket_base::wait_read,
        [fd = socket.native_handle(), on_close = std::move(on_close)](const beast::error_code& ec) mutable {
          if (ec == asio::error::operation_aborted) return;
          if (!ec && !peer_closed(fd)) return;  // readable: a next request already on its way
          on_close();
        });
  }
  // Ends a watch_for_close(); call it only while no write is in progress (it cancels the socket's waits).
  void stop_watching();

  // For a handler that takes the connection over (a WebSocket upgrade): the stream is the handler's from
  // now on; the exchange counts as answered (101) and the connection closes after the handler returns.
  tls::PlainOrTlsStream& take_over() noexcept {
    responded_ = true;
    keep_alive_ = false;
    status_ = 101;
    return stream_;
  }

  // Server-sent events. Each returns false once the client is gone.
  asio::awaitable<bool> sse_start();
  asio::awaitable<bool> sse_data(std::string_view data);     // "data: <data>\n\n"
  asio::awaitable<bool> sse_comment(std::string_view text);  // ": <text>\n\n", a keep-alive
  // Text already in the event-stream format (a relayed event with its event:/id: fields and blank line).
  asio::awaitable<bool> sse_raw(std::string text) { co_return co_await write_chunk(std::move(text)); }
  // Like sse_start, with the status and headers of a relayed stream.
  asio::awaitable<bool> sse_start(std::vector<std::pair<std::string, std::string>> headers);
  // Ends the body without "data: [DONE]" (a relayed stream sent its own end).
  asio::awaitable<void> sse_end();
  asio::awaitable<void> sse_finish();  // "data: [DONE]" and the end of the body
  bool sse_started() const noexcept { return sse_started_; }

  // Newline-delimited JSON (Ollama's streams): a chunked application/x-ndjson body, one JSON text a line,
  // with the same slow-reader timeouts and hang-up detection as SSE. The body ends as an SSE one does
  // (sse_end, or by the session after the handler), without "data: [DONE]". Each returns false once the
  // client is gone.
  asio::awaitable<bool> ndjson_start();
  asio::awaitable<bool> ndjson_start(std::vector<std::pair<std::string, std::string>> headers);
  asio::awaitable<bool> ndjson_line(std::string_view json_text);  // the text and "\n", as one chunk

 private:
  asio::awaitable<bool> write_chunk(std::string payload);
  asio::awaitable<bool> stream_start(std::string_view content_type,
                                     std::vector<std::pair<std::string, std::string>> headers);
  static bool peer_closed(int fd) noexcept;  // a readable socket with nothing to read: the peer closed
  void answering(int status);
  tls::PlainOrTlsStream& stream_;
  Request request_;
  const ServerLimits& limits_;
  asio::ip::address remote_;
  std::optional<Error> refusal_;
  const ExchangeObserver* observer_ = nullptr;
  int status_ = 0;
  nlohmann::json log_fields_;
  bool responded_ = false;
  bool sse_started_ = false;
  bool ndjson_ = false;  // the stream is NDJSON: it ends without "data: [DONE]"
  bool keep_alive_ = true;
};

using Handler = std::function<asio::awaitable<void>(Exchange&)>;
// A look at a request's head (and the client's address) before its body is read; an error refuses it.
using HeaderCheck =
    std::function<std::optional<Error>(const RequestHead& head, const asio::ip::address& remote)>;

// Exact-path routes; an unknown path is 404, a known path with another method 405 with Allow.
class Router {
 public:
  void add(Verb method, std::string path, Handler handler);
  // Every path that no route names goes here instead of a 404 (a proxy's pass-through).
  void set_fallback(Handler handler) { fallback_ = std::move(handler); }
  asio::awaitable<void> dispatch(Exchange& exchange) const;

 private:
  struct Route {
    Verb method;
    std::string path;
    Handler handler;
  };
  std::vector<Route> routes_;
  Handler fallback_;
};

class Server {
 public:
  Server(asio::io_context& io, std::shared_ptr<const Router> router, ServerLimits limits);
  ~Server();
  // Binds and starts accepting; returns the port (useful with port 0). Throws ClawbotError on failure.
  unsigned short listen(const std::string& host, unsigned short port);
  // The same, speaking only TLS (1.2 or newer) with one SSL_CTX for all connections. A handshake must end
  // within tls.handshake_timeout; a plain HTTP request gets a clear-text 400 "this port speaks TLS" and the
  // connection is closed (nginx answers 497 the same way). Throws tls::TlsError naming a file it cannot use.
  unsigned short listen(const std::string& host, unsigned short port, const tls::ServerConfig& tls);
  // Before listen(): share the port with other listening sockets (SO_REUSEPORT), one per I/O thread, so
  // the kernel spreads connections over them.
  void set_reuse_port(bool on) noexcept;
  // Before listen(): the io_context is run by one thread only, so sessions need no strand of their own (one
  // less hop through a strand for every completion).
  void set_single_threaded(bool on) noexcept;
  // Before listen(): `check` runs on every request that has a body, once its head is parsed and before any
  // byte of the body is read (and before "100 Continue" is sent), so that a request refused anyway (an
  // address or key a gateway does not accept) costs no body. A refused request goes to `refused` with
  // Exchange::refusal() set (so it can be counted and logged like any other), or without one is answered
  // with the error; then the connection closes.
  void set_header_check(HeaderCheck check, Handler refused = {});
  // Before listen(): count connections per client address in `table` (shared with other servers) instead of
  // a table of this server's own.
  void share_client_connections(std::shared_ptr<ClientConnections> table);
  // Before listen(): told of every exchange (see ExchangeObserver).
  void set_observer(ExchangeObserver observer);
  // Requests read and not yet fully answered (for a drain before shutting down).
  std::size_t exchanges_in_progress() const noexcept;
  void stop();  // stops accepting; open sessions end after their current exchange

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace clawbot::http
