#include "common/http_server.h"
#include "common/error.h"
#include "common/http_read.h"
#include "common/use_tuple.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cerrno>
#include <cstring>

#include <algorithm>
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

// string_body without its up-front reserve of the declared Content-Length: memory follows the bytes that
// arrived (a client that declares 8 MiB and sends one byte holds one byte), and never grows past the
// declared length.
struct ArrivingStringBody {
  using value_type = std::string;
  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(http::header<isRequest, Fields>&, value_type& body) : body_(body) {}
    void init(const boost::optional<std::uint64_t>& length, beast::error_code& ec) {
      declared_ = length ? static_cast<std::size_t>(*length) : 0;  // (below the body limit: fits)
      ec = {};
    }
    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, beast::error_code& ec) {
      const std::size_t extra = beast::buffer_bytes(buffers);
      const std::size_t needed = body_.size() + extra;
      if (needed > body_.capacity()) {
        std::size_t grown = std::max(needed, body_.capacity() * 2);
        if (declared_ > 0) grown = std::max(needed, std::min(grown, declared_));
        body_.reserve(grown);
      }
      for (const auto piece : beast::buffers_range_ref(buffers))
        body_.append(static_cast<const char*>(piece.data()), piece.size());
      ec = {};
      return extra;
    }
    void finish(beast::error_code& ec) { ec = {}; }

   private:
    value_type& body_;
    std::size_t declared_ = 0;  // 0: not declared (chunked)
  };
};
using RequestParser = http::request_parser<ArrivingStringBody>;

using Clock = std::chrono::steady_clock;

// The time left until `deadline`, or the timeout error once it has passed; each read of the stream may
// then take at most that long (and never more than the idle timeout).
beast::error_code bound_read(tls::PlainOrTlsStream& stream, Clock::time_point deadline,
                             Clock::duration idle) {
  const auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return beast::error::timeout;
  stream.retime(std::min(left, idle));
  return {};
}

// Reading a request's header block: the idle timeout until its first byte, then header_timeout for all of
// it. A folded header line (obs-fold: a line that starts with a space or tab) is refused here, on the raw
// bytes: Beast would join it to the line above.
struct HeadReadHooks {
  tls::PlainOrTlsStream& stream;
  const ServerLimits& limits;
  const beast::flat_buffer& buffer;
  Clock::time_point deadline{};
  bool started = false;
  bool folded = false;

  beast::error_code before_read(std::size_t) {
    if (buffer.size() == 0) {  // (a partial header is never taken from the buffer) no byte of it yet
      stream.retime(limits.idle_timeout);
      return {};
    }
    if (!started) {
      started = true;
      deadline = Clock::now() + limits.header_timeout;
    }
    return bound_read(stream, deadline, limits.idle_timeout);
  }
  beast::error_code on_header(std::string_view bytes) {
    const auto end = bytes.find("\r\n\r\n");
    const std::string_view header = bytes.substr(0, end == std::string_view::npos ? bytes.size() : end + 2);
    for (auto at = header.find("\r\n"); at != std::string_view::npos; at = header.find("\r\n", at + 2)) {
      if (at + 2 < header.size() && (header[at + 2] == ' ' || header[at + 2] == '\t')) {
        folded = true;
        return http::error::bad_field;
      }
    }
    return {};
  }
};

// Reading a body: at least limits.min_body_rate bytes a second on average, once the grace period is over.
struct BodyReadHooks {
  tls::PlainOrTlsStream& stream;
  const ServerLimits& limits;
  Clock::time_point start = Clock::now();

  beast::error_code before_read(std::size_t received) {
    if (limits.min_body_rate == 0) {
      stream.retime(limits.idle_timeout);
      return {};
    }
    const std::chrono::duration<double> earned(static_cast<double>(received) /
                                               static_cast<double>(limits.min_body_rate));
    return bound_read(stream,
                      start + limits.body_rate_grace + std::chrono::duration_cast<Clock::duration>(earned),
                      limits.idle_timeout);
  }
  beast::error_code on_header(std::string_view) { return {}; }
};

// What the head of a request may not be, whatever the handler: answered 400 and the connection closed.
std::optional<Error> refuse_head(const RequestParser& parser) {
  const auto& head = parser.get();
  auto bad = [](std::string message, std::string code) {
    return Error{ErrorKind::invalid_request, std::move(message), {}, std::move(code)};
  };
  const std::string_view target(head.target().data(), head.target().size());
  const bool asterisk = target == "*" && head.method() == http::verb::options;
  if (!asterisk && (target.empty() || target.front() != '/')) {
    return bad(
        "the request target must be a path starting with '/' (this server is not a proxy for other "
        "hosts), not '" +
            std::string(target.substr(0, 200)) + "'",
        "bad_request_target");
  }
  const auto encodings = head.count(http::field::transfer_encoding);
  if (encodings > 0) {
    const auto value = head[http::field::transfer_encoding];
    if (encodings > 1 || !beast::iequals(value, "chunked")) {
      return bad("Transfer-Encoding must be exactly \"chunked\" (no other coding, no list), not '" +
                     std::string(value.substr(0, 100)) + "'",
                 "bad_transfer_encoding");
    }
    if (head.count(http::field::content_length) > 0)
      return bad("a request may not have both Transfer-Encoding and Content-Length", "bad_transfer_encoding");
  }
  return std::nullopt;
}

// The final answer to a request that cannot be read on: written, then the connection closed.
// `observer` (when given) counts it like any other answer.
asio::awaitable<void> answer_and_close(tls::PlainOrTlsStream& stream, const ServerLimits& limits, int status,
                                       const Error& error, const ExchangeObserver* observer = nullptr,
                                       asio::ip::address remote = {}, std::string_view target = {}) {
  Request req;
  req.version(11);
  req.keep_alive(false);
  Exchange reply(stream, std::move(req), limits, std::move(remote), std::nullopt, observer);
  // In the shape of the protocol the request's path belongs to, when its head was read (see respond_error).
  const nlohmann::json body = error_json_for_path(target.substr(0, target.find('?')), error);
  co_await reply.respond_json(status, body);
  if (observer != nullptr && observer->ended) observer->ended(reply, std::chrono::steady_clock::duration{});
  co_await lingering_close(stream.tcp());
}

// Gives memory back to the system after a large body: glibc keeps freed blocks of a few MiB in its heap
// (its mmap threshold rises to the largest block freed), so 64 clients that each sent a body near the limit
// would keep the process at that size for good.
void release_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}
constexpr std::size_t large_body_bytes = 1u << 20;

}  // namespace

// ---------------------------------------------------------------- ClientConnections

bool ClientConnections::try_open(const asio::ip::address& address, std::size_t limit) {
  const std::lock_guard lock(mutex_);
  auto& count = open_[address];
  if (limit > 0 && count >= limit) {
    if (count == 0) open_.erase(address);
    return false;
  }
  ++count;
  return true;
}

void ClientConnections::close(const asio::ip::address& address) {
  const std::lock_guard lock(mutex_);
  const auto it = open_.find(address);
  if (it != open_.end() && --it->second == 0) open_.erase(it);
}

// ---------------------------------------------------------------- Exchange

Exchange::Exchange(tls::PlainOrTlsStream& stream, Request request, const ServerLimits& limits,
                   asio::ip::address remote, std::optional<Error> refusal, const ExchangeObserver* observer)
    : stream_(stream),
      request_(std::move(request)),
      limits_(limits),
      remote_(std::move(remote)),
      refusal_(std::move(refusal)),
      observer_(observer),
      keep_alive_(!refusal_ && request_.keep_alive()) {}

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
  beast::error_code ec;
  if (request_.method() == http::verb::head) {  // the length of the body, not the body
    http::response_serializer<http::string_body> serializer{res};
    auto [header_ec, n] = co_await http::async_write_header(stream_, serializer, use_tuple);
    ec = header_ec;
  } else {
    auto [write_ec, n] = co_await http::async_write(stream_, res, use_tuple);
    ec = write_ec;
  }
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
  // No body, and no length, where HTTP forbids one (1xx, 204, 304); the length but no body to HEAD.
  const bool bodiless = status < 200 || status == 204 || status == 304;
  const bool head = request_.method() == http::verb::head;
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
      asio::buffer(last.text.data(), last.size),
      asio::buffer(body.data(), bodiless || head ? 0 : body.size())};
  stream_.io_timeout(limits_.write_timeout);
  auto [ec, n] = co_await asio::async_write(stream_, answer, use_tuple);
  if (ec) keep_alive_ = false;
}

asio::awaitable<void> Exchange::respond_error(const Error& error,
                                              std::vector<std::pair<std::string, std::string>> headers) {
  // In the shape of the protocol the path belongs to: an Anthropic or Ollama client reads the message of a
  // 405, 413 or 404 the server itself answers where it reads its own errors.
  co_await respond_json(http_status(error.kind), error_json_for_path(path(), error), std::move(headers));
}

asio::awaitable<bool> Exchange::sse_start() {
  co_return co_await sse_start(std::vector<std::pair<std::string, std::string>>{});
}

asio::awaitable<bool> Exchange::sse_start(std::vector<std::pair<std::string, std::string>> headers) {
  co_return co_await stream_start("text/event-stream", std::move(headers));
}

asio::awaitable<bool> Exchange::ndjson_start() {
  std::vector<std::pair<std::string, std::string>> none;  // (a named local: GCC 12 and braced temporaries)
  co_return co_await ndjson_start(std::move(none));
}

asio::awaitable<bool> Exchange::ndjson_start(std::vector<std::pair<std::string, std::string>> headers) {
  ndjson_ = true;
  co_return co_await stream_start("application/x-ndjson", std::move(headers));
}

asio::awaitable<bool> Exchange::ndjson_line(std::string_view json_text) {
  std::string payload;
  payload.reserve(json_text.size() + 1);
  payload.append(json_text).append("\n");
  co_return co_await write_chunk(std::move(payload));
}

asio::awaitable<bool> Exchange::stream_start(std::string_view content_type,
                                             std::vector<std::pair<std::string, std::string>> headers) {
  answering(200);
  if (limits_.stream_send_buffer_bytes > 0) {
    beast::error_code ignored;
    stream_.tcp().socket().set_option(asio::socket_base::send_buffer_size(limits_.stream_send_buffer_bytes),
                                      ignored);
  }
  sse_started_ = true;
  http::response<http::empty_body> res{http::status::ok, request_.version()};
  res.set(http::field::server, server_name);
  res.set(http::field::content_type, content_type);
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
  if (ndjson_) {  // an NDJSON stream's last line was its own end
    co_await sse_end();
    co_return;
  }
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
  const http::verb method = exchange.request().method();
  std::string allowed;
  for (const auto& route : routes_) {
    if (route.path != path) continue;
    // HEAD is GET without the body (RFC 9110 9.3.2): respond() writes only the header for it, so monitors and
    // `curl -I` get the status and length a GET would.
    if (route.method == method || (method == http::verb::head && route.method == http::verb::get)) {
      return route.handler(exchange);
    }
    if (!allowed.empty()) allowed += ", ";
    allowed += std::string(http::to_string(route.method));
    if (route.method == http::verb::get) allowed += ", HEAD";
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
  HeaderCheck header_check;
  Handler refused;
  std::shared_ptr<ClientConnections> client_connections = std::make_shared<ClientConnections>();
  // A descriptor kept open to be given up at the file-descriptor limit: closed, it makes room to accept a
  // waiting connection and close it at once, so that the connection leaves the backlog and the accept loop
  // does not wake for it again (libev's trick). -1 when none could be opened.
  int spare_fd = -1;
  Clock::time_point fd_limit_logged{};
  std::size_t fd_limit_shed = 0;  // connections closed at the limit since the last log line
  ExchangeObserver observer;
  std::atomic<std::size_t> in_progress{0};

  State(asio::io_context& io_, std::shared_ptr<const Router> r, ServerLimits l)
      : io(io_), router(std::move(r)), limits(l), acceptor(io_) {}
  ~State() {
    if (spare_fd >= 0) ::close(spare_fd);
  }
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  // A connection counted in client_connections while it lives (none when `table` is null).
  struct ClientSlot {
    std::shared_ptr<ClientConnections> table;
    asio::ip::address address;
    ClientSlot() = default;
    ClientSlot(ClientSlot&& other) noexcept : table(std::move(other.table)), address(other.address) {}
    ClientSlot& operator=(ClientSlot&&) = delete;
    ClientSlot(const ClientSlot&) = delete;
    ClientSlot& operator=(const ClientSlot&) = delete;
    ~ClientSlot() {
      if (table) table->close(address);
    }
  };

  // At the descriptor limit: one waiting connection accepted and closed through the spare descriptor.
  // False when that did not work either (then the caller waits a moment).
  bool shed_one_connection() {
    if (spare_fd < 0) return false;
    ::close(spare_fd);
    spare_fd = -1;
    const int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) ::close(fd);
    spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) ++fd_limit_shed;
    return fd >= 0;
  }

  // One log line at most every 10 s, however many connections come: at the limit each one fails.
  void log_accept_failure(const beast::error_code& ec, bool at_fd_limit) {
    const auto now = Clock::now();
    if (fd_limit_logged != Clock::time_point{} && now - fd_limit_logged < std::chrono::seconds(10)) return;
    fd_limit_logged = now;
    if (at_fd_limit) {
      spdlog::warn(
          "accept failed: {} (the process is at its file-descriptor limit; {} new connections closed "
          "at once since the last such line; raise `ulimit -n` or lower the load)",
          ec.message(), fd_limit_shed);
      fd_limit_shed = 0;
    } else {
      spdlog::warn("accept failed: {}", ec.message());
    }
  }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    asio::steady_timer pause(io);
    for (;;) {
      // Each session on its own strand: a tcp_stream's timer and I/O must not run on two threads at once.
      asio::any_io_executor session_executor = io.get_executor();
      if (!single_threaded) session_executor = asio::make_strand(io);
      auto [ec, socket] = co_await acceptor.async_accept(session_executor, use_tuple);
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      if (ec) {
        // Retrying at once would spin: the connection still waits, and the next accept fails the same way.
        const bool at_fd_limit = ec == asio::error::no_descriptors ||
                                 ec == boost::system::errc::too_many_files_open_in_system ||
                                 ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
        log_accept_failure(ec, at_fd_limit);
        if (at_fd_limit && shed_one_connection()) continue;
        if (ec == asio::error::connection_aborted) continue;  // the client left the backlog: nothing waits
        pause.expires_after(std::chrono::milliseconds(at_fd_limit ? 100 : 10));
        co_await pause.async_wait(use_tuple);
        continue;
      }
      // Each SSE event is a small write: without this, Nagle holds it until the client's delayed ACK (~40
      // ms).
      beast::error_code option_ec;
      socket.set_option(tcp::no_delay(true), option_ec);
      ClientSlot slot;
      if (limits.max_connections_per_client > 0) {
        const auto address = socket.remote_endpoint(option_ec).address();
        if (!client_connections->try_open(address, limits.max_connections_per_client)) {
          asio::co_spawn(socket.get_executor(), refuse_over_cap(beast::tcp_stream(std::move(socket))),
                         asio::detached);
          continue;
        }
        slot.table = client_connections;
        slot.address = address;
      }
      asio::co_spawn(socket.get_executor(), session(beast::tcp_stream(std::move(socket)), std::move(slot)),
                     asio::detached);
    }
  }

  // One connection too many from a client address: 429 in clear text (on a TLS port, only the close).
  asio::awaitable<void> refuse_over_cap(beast::tcp_stream stream) {
    auto self = shared_from_this();
    if (tls_context) {
      beast::error_code ignored;
      stream.socket().close(ignored);
      co_return;
    }
    const Error error{ErrorKind::rate_limited,
                      "too many connections from your address (this server allows " +
                          std::to_string(limits.max_connections_per_client) +
                          " at a time); close some or reuse them (keep-alive)",
                      {},
                      "too_many_connections"};
    http::response<http::string_body> res{http::status::too_many_requests, 11};
    res.set(http::field::server, server_name);
    res.set(http::field::content_type, "application/json");
    res.set(http::field::retry_after, "1");
    res.keep_alive(false);
    res.body() = to_json(error).dump();
    res.prepare_payload();
    stream.expires_after(std::chrono::seconds(2));
    co_await http::async_write(stream, res, use_tuple);
    co_await lingering_close(stream);
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

  // The answer to a request that could not be read (nothing when there is no one to answer).
  std::optional<std::pair<int, Error>> read_failure(const beast::error_code& ec, bool in_body) const {
    if (ec == http::error::body_limit) {
      return std::pair{413, Error{ErrorKind::payload_too_large,
                                  "request body is larger than this server's limit of " +
                                      std::to_string(limits.max_body_bytes) + " bytes",
                                  {},
                                  {}}};
    }
    if (ec == http::error::header_limit) {
      return std::pair{
          431, Error{ErrorKind::invalid_request,
                     "request headers are larger than " + std::to_string(limits.max_header_bytes) + " bytes",
                     {},
                     "headers_too_large"}};
    }
    if (ec == http::error::buffer_overflow && in_body) {
      return std::pair{
          400, Error{ErrorKind::invalid_request,
                     "a chunk header (with its extensions) or the trailer section is longer than " +
                         std::to_string(std::max<std::size_t>(limits.max_header_bytes, 16u << 10)) + " bytes",
                     {},
                     "chunk_header_too_large"}};
    }
    return std::pair{
        400, Error{ErrorKind::invalid_request, "malformed HTTP request: " + ec.message(), {}, "bad_http"}};
  }

  asio::awaitable<void> session(beast::tcp_stream tcp_stream, [[maybe_unused]] ClientSlot slot) {
    auto self = shared_from_this();
    tls::PlainOrTlsStream stream(std::move(tcp_stream));
    if (tls_context && !co_await tls_handshake(stream)) co_return;
    beast::error_code remote_ec;
    const asio::ip::address remote = stream.tcp().socket().remote_endpoint(remote_ec).address();
    // Only bytes the parser has not taken stay here: a header block, a chunk header or a trailer section.
    beast::flat_buffer buffer(std::max<std::size_t>(limits.max_header_bytes, 16u << 10));
    bool peer_closed = false;
    bool large_body = false;  // memory to give back once it is freed
    struct ReleaseAtEnd {     // (destroyed after the loop's parser and request, whichever way it ends)
      bool& large;
      ~ReleaseAtEnd() {
        if (large) release_memory();
      }
    } release_at_end{large_body};
    for (;;) {
      if (large_body) {
        release_memory();
        large_body = false;
      }
      RequestParser parser;
      parser.body_limit(
          boost::none);  // set after the header check: a refused client gets its refusal, not 413
      parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
      stream.io_timeout(limits.idle_timeout);
      HeadReadHooks head_hooks{stream, limits, buffer};
      beast::error_code ec = co_await detail::read_message(stream, buffer, parser, true, head_hooks);
      if (!ec) {
        if (auto refusal = refuse_head(parser)) {
          co_await answer_and_close(stream, limits, 400, *refusal, &observer, remote);
          co_return;
        }
      } else if (head_hooks.folded) {
        const Error folded{ErrorKind::invalid_request,
                           "a header line starts with a space or tab (obsolete line folding): write each "
                           "header on one line",
                           {},
                           "bad_http"};
        co_await answer_and_close(stream, limits, 400, folded, &observer, remote);
        co_return;
      }
      bool continue_needed = false;
      if (!ec) {
        auto& head = parser.get();
        if (const auto expect = head[http::field::expect]; !expect.empty()) {
          if (!beast::iequals(expect, "100-continue")) {
            const Error unknown{
                ErrorKind::invalid_request,
                "Expect: " + std::string(expect.substr(0, 100)) + " is not supported (only 100-continue is)",
                {},
                "expectation_failed"};
            co_await answer_and_close(stream, limits, 417, unknown, &observer, remote, head.target());
            co_return;
          }
          continue_needed = head.version() >= 11 && !parser.is_done();
          head.erase(http::field::expect);  // handled here: never passed on (a proxy must not forward it)
        }
        if (header_check && !parser.is_done()) {
          if (auto refusal = header_check(head, remote)) {
            Request refused_request(std::move(head.base()));
            co_await answer_refused(stream, std::move(refused_request), remote, std::move(*refusal));
            co_return;
          }
        }
        parser.body_limit(limits.max_body_bytes);  // (chunks are counted against it as they come)
        if (const auto length = parser.content_length(); length && *length > limits.max_body_bytes) {
          ec = http::error::body_limit;
        } else {
          if (continue_needed) {
            static constexpr std::string_view interim = "HTTP/1.1 100 Continue\r\n\r\n";
            stream.io_timeout(limits.write_timeout);
            auto [wec, n] = co_await asio::async_write(stream, asio::buffer(interim), use_tuple);
            if (wec) break;
          }
          if (!parser.is_done()) {
            stream.io_timeout(limits.idle_timeout);
            ec = co_await detail::read_message(stream, buffer, parser, false, BodyReadHooks{stream, limits});
            large_body = parser.get().body().capacity() >= large_body_bytes;
          }
        }
      }
      const auto read_at = std::chrono::steady_clock::now();
      // A TLS client that closes without close_notify (stream_truncated) has only left, like end_of_stream:
      // every request it sent was complete, so nothing was cut short.
      if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
          ec == asio::ssl::error::stream_truncated) {
        peer_closed = true;
        break;
      }
      // A deadline passed: the connection is closed (a client that sends too slowly is not answered).
      if (ec == beast::error::timeout || ec == asio::error::operation_aborted) {
        if (parser.got_some())
          spdlog::debug("closed the connection of {}: its request came too slowly",
                        endpoint_text(stream.tcp().socket()));
        break;
      }
      if (ec.category() == asio::error::get_ssl_category()) {  // broken TLS: no answer could be read
        spdlog::debug("TLS with {} failed: {}", endpoint_text(stream.tcp().socket()), ec.message());
        break;
      }
      if (ec) {
        const auto failure = read_failure(ec, parser.is_header_done());
        const std::string target =
            parser.is_header_done() ? std::string(parser.get().target()) : std::string();
        co_await answer_and_close(stream, limits, failure->first, failure->second, &observer, remote, target);
        co_return;
      }

      auto message = parser.release();
      Exchange exchange(stream, Request(std::move(message.base()), std::move(message.body())), limits, remote,
                        std::nullopt, &observer);
      ++in_progress;
      std::optional<Error> failure;  // co_await may not appear inside a catch handler
      try {
        co_await router->dispatch(exchange);
      } catch (const std::exception& e) {
        failure = answer_for(e);
        if (failure->kind == ErrorKind::internal)
          spdlog::error("handler for {} failed: {}", exchange.path(), e.what());
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

  // A request the header check refused: to the `refused` handler (or answered with the error), then closed
  // without reading its body.
  asio::awaitable<void> answer_refused(tls::PlainOrTlsStream& stream, Request head, asio::ip::address remote,
                                       Error refusal) {
    Exchange exchange(stream, std::move(head), limits, std::move(remote), std::move(refusal));
    std::optional<Error> failure;
    try {
      if (refused) co_await refused(exchange);
    } catch (const std::exception& e) {
      failure = answer_for(e);
    }
    if (!exchange.responded()) co_await exchange.respond_error(failure ? *failure : *exchange.refusal());
    if (exchange.sse_started()) co_await exchange.sse_finish();
    co_await lingering_close(stream.tcp());
  }
};

Server::Server(asio::io_context& io, std::shared_ptr<const Router> router, ServerLimits limits)
    : state_(std::make_shared<State>(io, std::move(router), limits)) {}

Server::~Server() {
  stop();
}

void Server::set_header_check(HeaderCheck check, Handler refused) {
  state_->header_check = std::move(check);
  state_->refused = std::move(refused);
}

void Server::share_client_connections(std::shared_ptr<ClientConnections> table) {
  if (table) state_->client_connections = std::move(table);
}

unsigned short Server::listen(const std::string& host, unsigned short port, const tls::ServerConfig& tls) {
  state_->tls_context = tls::make_server_context(tls);
  state_->tls_handshake_timeout = tls.handshake_timeout;
  return listen(host, port);
}

unsigned short Server::listen(const std::string& host, unsigned short port) {
  beast::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec)
    throw ClawbotError(ErrorKind::invalid_request, "--host '" + host + "' is not an IPv4 or IPv6 address");
  const tcp::endpoint endpoint(address, port);
  auto& acceptor = state_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && state_->reuse_port)
    acceptor.set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (ec) {
    throw ClawbotError(
        ErrorKind::internal,
        "cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message() +
            (ec == asio::error::address_in_use ? " (another server uses this port? pick --port)" : ""));
  }
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw ClawbotError(ErrorKind::internal,
                       "cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
  if (state_->spare_fd < 0) state_->spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
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
