#include "common/http_client.h"
#include "common/error.h"
#include "common/http_read.h"
#include "common/text.h"
#include "common/use_tuple.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>

namespace clawbot::http {
namespace {

namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr const char* user_agent = "clawbot";

using text::lower;

ClientError url_error(std::string message) {
  return ClientError{boost::system::errc::make_error_code(boost::system::errc::invalid_argument),
                     std::move(message)};
}

std::string seconds_text(std::chrono::milliseconds ms) {
  const auto count = ms.count();
  if (count % 1000 == 0) return std::to_string(count / 1000) + " s";
  return std::to_string(count) + " ms";
}

// A server may close an idle keep-alive connection just as we reuse it: a write that fails there is made
// again on a fresh connection, once (the server cannot have read all of it).
bool stale_connection(boost::system::error_code ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::connection_aborted ||
         ec == asio::ssl::error::stream_truncated;
}

bool is_tls_error(boost::system::error_code ec) {
  return ec.category() == asio::error::get_ssl_category() ||
         ec.category() == asio::ssl::error::get_stream_category();
}

// A TLS record (handshake 0x16 or alert 0x15, then version 3.x) where an HTTP status line should be: the
// other end speaks TLS.
bool starts_like_tls_record(const beast::flat_buffer& buffer) {
  const auto data = buffer.data();
  const auto* bytes = static_cast<const unsigned char*>(data.data());
  return data.size() >= 2 && (bytes[0] == 0x15 || bytes[0] == 0x16) && bytes[1] == 0x03;
}

}  // namespace

void throw_exception_from_error(const ClientError& error, const boost::source_location&) {
  throw ClawbotError(ErrorKind::internal, error.message);
}

// ---------------------------------------------------------------- Url

std::string Url::origin() const {
  const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return scheme + "://" + h + ":" + port;
}

std::string Url::str() const {
  return origin() + path;
}

Result<Url> parse_url(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  const std::string shown(text);
  if (text.empty()) return url_error("the URL is empty; give one like http://127.0.0.1:5000");
  Url url;
  if (auto sep = text.find("://"); sep != std::string_view::npos) {
    url.scheme = lower(text.substr(0, sep));
    text.remove_prefix(sep + 3);
  } else {
    url.scheme = "http";  // "host:port" alone means http
  }
  if (url.scheme != "http" && url.scheme != "https") {
    return url_error("'" + shown + "': scheme '" + url.scheme +
                     "' is not supported; use http://host:port or https://host:port");
  }
  const auto authority_end = text.find_first_of("/?#");
  std::string_view authority = text.substr(0, authority_end);
  std::string_view rest = authority_end == std::string_view::npos ? "" : text.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return url_error("'" + shown + "': user names in URLs are not supported; pass the key with --api-key");
  }
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos)
      return url_error("'" + shown + "': unclosed '[' in the IPv6 address");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return url_error("'" + shown + "': expected ':port' after the IPv6 address");
      port = after.substr(1);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    url.host = std::string(authority.substr(0, colon));
    port = authority.substr(colon + 1);
  } else {
    url.host = std::string(authority);
  }
  if (url.host.empty()) return url_error("'" + shown + "': no host; give one like http://127.0.0.1:5000");
  if (port.empty()) {
    url.port = url.is_https() ? "443" : "80";
  } else {
    const bool digits = port.size() <= 5 && std::all_of(port.begin(), port.end(), [](char c) {
                          return std::isdigit(static_cast<unsigned char>(c));
                        });
    const long value = digits ? std::stol(std::string(port)) : 0;
    if (!digits || value < 1 || value > 65535) {
      return url_error("'" + shown + "': the port '" + std::string(port) +
                       "' is not a number from 1 to 65535");
    }
    url.port = std::string(port);
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return url_error("'" + shown + "': a base URL takes no query or fragment");
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  url.path = std::string(rest);
  return url;
}

tls::ClientConfig tls_client_config(const ClientOptions& options) {
  return tls::ClientConfig{.ca_file = options.tls_ca_file,
                           .insecure = options.tls_insecure,
                           .cert_file = options.tls_cert_file,
                           .key_file = options.tls_key_file};
}

// ---------------------------------------------------------------- Response

std::string Response::content_type() const {
  auto it = headers.find(http::field::content_type);
  return it == headers.end() ? std::string() : std::string(it->value());
}

// ---------------------------------------------------------------- SseParser

bool SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  if (at_start_ && !bytes.empty()) {
    // A byte order mark may open the stream; it may arrive split, so wait for three bytes.
    line_.append(bytes);
    if (line_.size() < 3 && std::string_view("\xEF\xBB\xBF").starts_with(line_)) return true;
    at_start_ = false;
    std::string pending = std::move(line_);
    line_.clear();
    std::string_view view(pending);
    if (view.starts_with("\xEF\xBB\xBF")) view.remove_prefix(3);
    return feed(view, out);
  }
  std::size_t pos = 0;
  if (after_cr_ && !bytes.empty() && bytes.front() == '\n') pos = 1;
  after_cr_ = false;
  while (pos < bytes.size()) {
    const auto end = bytes.find_first_of("\r\n", pos);
    if (end == std::string_view::npos) {
      line_.append(bytes.substr(pos));
      return line_.size() <= max_line_;
    }
    if (line_.empty()) {
      take_line(bytes.substr(pos, end - pos), out);
    } else {
      line_.append(bytes.substr(pos, end - pos));
      if (line_.size() > max_line_) return false;
      take_line(line_, out);
      line_.clear();
    }
    pos = end + 1;
    if (bytes[end] == '\r') {
      if (pos == bytes.size()) {
        after_cr_ = true;
      } else if (bytes[pos] == '\n') {
        ++pos;
      }
    }
  }
  return true;
}

void SseParser::finish(std::vector<SseEvent>& out) {
  if (!line_.empty()) {
    const std::string last = std::move(line_);
    line_.clear();
    take_line(last, out);
  }
  dispatch(out);
}

void SseParser::take_line(std::string_view line, std::vector<SseEvent>& out) {
  if (line.empty()) {
    dispatch(out);
    return;
  }
  if (line.front() == ':') {
    ++comments_;
    return;
  }
  std::string_view field = line;
  std::string_view value;
  if (auto colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    event_ = std::string(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) id_ = std::string(value);
  }
  // "retry" and unknown fields are ignored, as the spec says.
}

void SseParser::dispatch(std::vector<SseEvent>& out) {
  if (has_data_) out.push_back(SseEvent{std::move(data_), std::move(event_), id_});
  data_.clear();
  event_.clear();
  has_data_ = false;
}

// ---------------------------------------------------------------- Client

// The most a connection buffers besides a body: a response header (64 KiB), or a chunk header or trailer
// section an upstream never ends (see http_read.h).
constexpr std::size_t max_response_header_bytes = 64u << 10;
// Interim (1xx) responses skipped before the final one; an endless run of them is a broken server.
constexpr int max_interim_responses = 16;

struct Client::Connection {
  explicit Connection(asio::any_io_executor executor)
      : stream(beast::tcp_stream(std::move(executor))), buffer(max_response_header_bytes) {}

  bool is_open() { return stream.tcp().socket().is_open(); }
  // A kept-alive connection between exchanges that the server has closed, or sent bytes on (no idle
  // connection may have any): not reused. Sent there, a request could be read by nobody or by a dying
  // server, and whether it was acted on would be unknown.
  bool closed_while_idle() {
    if (buffer.size() > 0) return true;
    char byte = 0;
    const auto got = ::recv(stream.tcp().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return got >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
  // Closes the socket only: an operation still pending on the TLS stream completes (aborted) on it, so the
  // stream itself is replaced at the next connect, not here.
  void drop() {
    beast::error_code ignored;
    auto& socket = stream.tcp().socket();
    if (socket.is_open()) socket.shutdown(tcp::socket::shutdown_both, ignored);
    stream.tcp().close();
    buffer.clear();
  }

  tls::PlainOrTlsStream stream;
  beast::flat_buffer buffer;
  std::string head;          // the request head being sent, reused from one exchange to the next
  tls::VerifyRecord verify;  // what the TLS handshake of this connection saw
};

Client::Client(asio::any_io_executor executor, Url base, ClientOptions options)
    : base_(std::move(base)),
      options_(std::move(options)),
      connection_(std::make_unique<Connection>(std::move(executor))) {}

Client::~Client() = default;

void Client::bound_io(Connection& conn) {
  // A pooled connection keeps one deadline timer armed while it lives (cheap per request); a one-shot
  // client's timer must not outlive its exchange, or io_context::run() would wait for it.
  if (options_.pooled)
    conn.stream.io_timeout(options_.read_timeout);
  else
    conn.stream.expires_after(options_.read_timeout);
}

void Client::cancel() {
  ++cancels_;
  connection_->drop();
}

bool Client::connected() const {
  return connection_->is_open();
}

ClientError Client::tls_setup_error(std::string message) const {
  return ClientError{boost::system::errc::make_error_code(boost::system::errc::invalid_argument),
                     "cannot use TLS for " + base_.origin() + ": " + std::move(message)};
}

ClientError Client::error(boost::system::error_code ec, std::string_view while_doing) const {
  const std::string where = base_.origin();
  std::string message;
  if (ec == asio::error::operation_aborted) {
    message = "the request to " + where + " was cancelled";
  } else if (while_doing == "handshake" && ec == beast::error::timeout) {
    message = "no TLS handshake from " + where + " within " + seconds_text(options_.connect_timeout) +
              " (is this port TLS? a plain HTTP server waits silently for a request)";
  } else if (while_doing == "handshake" || is_tls_error(ec)) {
    tls::VerifyRecord seen = connection_->verify;
    if (options_.tls_insecure) seen.error = X509_V_OK;  // ignored on purpose: not the reason it failed
    message = tls::describe_client_failure(ec, seen, where, base_.host);
  } else if (while_doing == "resolve") {
    message = "cannot resolve the host '" + base_.host + "' of " + base_.str() + " (" + ec.message() +
              "); check the host name";
  } else if (while_doing == "connect") {
    if (ec == beast::error::timeout) {
      message = "cannot connect to " + where + ": no answer within " +
                seconds_text(options_.connect_timeout) +
                " (check the host, the port and any firewall between)";
    } else if (ec == asio::error::connection_refused) {
      message = "cannot connect to " + where +
                ": connection refused (is the server running, and listening on that address and port?)";
    } else {
      message = "cannot connect to " + where + ": " + ec.message() + " (check the host and port)";
    }
  } else if (ec == beast::error::timeout) {
    message = where + " sent nothing for " + seconds_text(options_.read_timeout) +
              (while_doing == "header" ? " after the request" : " in the middle of the response") +
              " (the server is busy or stuck; a longer timeout may help)";
  } else if (ec == http::error::body_limit) {
    message = "the response from " + where + " is larger than " + std::to_string(options_.max_body_bytes) +
              " bytes";
  } else if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
             ec != http::error::end_of_stream && ec != http::error::partial_message) {
    message = where + " did not answer with valid HTTP (" + ec.message() + "); is it an HTTP server?";
  } else if (while_doing == "send") {
    message = "cannot send the request to " + where + ": " + ec.message();
  } else if (while_doing == "header") {
    message = where + " closed the connection without answering (" + ec.message() +
              "); is it an HTTP server" +
              (base_.is_https() ? "?" : ", and not HTTPS only (then use https://)?");
  } else {
    message = where + " closed the connection before the response was complete (" + ec.message() + ")";
  }
  return ClientError{ec, std::move(message)};
}

asio::awaitable<Result<void>> Client::connect() {
  auto& conn = *connection_;
  conn.drop();
  conn.stream.reset();
  conn.verify = {};
  if (base_.is_https() && !tls_context_) {
    // A TLS file that cannot be used is a setting to fix, whatever the network does: say so first.
    try {
      tls_context_ = tls::make_client_context(tls_client_config(options_));
    } catch (const tls::TlsError& e) {
      co_return tls_setup_error(e.what());
    }
  }
  tcp::resolver resolver(conn.stream.get_executor());
  auto [rec, endpoints] = co_await resolver.async_resolve(base_.host, base_.port, use_tuple);
  if (rec) co_return error(rec, "resolve");
  conn.stream.expires_after(options_.connect_timeout);
  auto [cec, endpoint] = co_await conn.stream.tcp().async_connect(endpoints, use_tuple);
  if (cec) {
    conn.drop();
    co_return error(cec, "connect");
  }
  beast::error_code ignored;
  conn.stream.tcp().socket().set_option(tcp::no_delay(true), ignored);
  if (base_.is_https()) {
    conn.stream.start_tls(*tls_context_);
    tls::prepare_client(conn.stream.tls(), base_.host, !options_.tls_insecure, conn.verify);
    conn.stream.expires_after(options_.connect_timeout);
    auto [hec] = co_await conn.stream.tls().async_handshake(asio::ssl::stream_base::client, use_tuple);
    if (hec) {
      conn.drop();
      co_return error(hec, "handshake");
    }
  }
  ++connects_;
  co_return Result<void>();
}

asio::awaitable<Result<std::unique_ptr<Client::Parser>>> Client::exchange(
    http::verb verb, std::string_view target, std::string_view body, std::string_view accept,
    const http::fields* pass, std::string_view pass_lines) {
  if (busy_) {
    ClientError busy{asio::error::make_error_code(asio::error::in_progress),
                     "this HTTP client is in the middle of another exchange with " + base_.origin() +
                         " (one request at a time per client)"};
    co_return busy;
  }
  busy_ = true;
  // The request head written straight into one reused string: a proxy sends a request per client request,
  // and Beast's field-by-field serializer cost more than the rest of the exchange.
  auto& conn = *connection_;
  std::string& head = conn.head;
  head.clear();
  head.append(http::to_string(verb)).append(" ").append(base_.path).append(target).append(" HTTP/1.1\r\n");
  const bool default_port = base_.port == (base_.is_https() ? "443" : "80");
  head.append("Host: ");
  if (base_.host.find(':') != std::string::npos)
    head.append("[").append(base_.host).append("]");
  else
    head.append(base_.host);
  if (!default_port) head.append(":").append(base_.port);
  head.append("\r\n");
  auto set_by_options = [&](std::string_view name) {
    return std::any_of(options_.headers.begin(), options_.headers.end(),
                       [&](const auto& header) { return beast::iequals(header.first, name); });
  };
  bool has_content_type = false;
  if (pass != nullptr) {
    for (const auto& field : *pass) {
      const std::string_view name(field.name_string().data(), field.name_string().size());
      if (field.name() == http::field::host || field.name() == http::field::content_length ||
          field.name() == http::field::transfer_encoding || set_by_options(name))
        continue;
      has_content_type = has_content_type || field.name() == http::field::content_type;
      head.append(name).append(": ").append(field.value()).append("\r\n");
    }
  }
  head.append(pass_lines);
  if (pass == nullptr && pass_lines.empty()) {
    head.append("User-Agent: ").append(user_agent).append("\r\n");
    head.append("Accept: ").append(accept).append("\r\n");
  }
  for (const auto& [name, value] : options_.headers)
    head.append(name).append(": ").append(value).append("\r\n");
  if (verb != http::verb::get || !body.empty()) {
    if (!has_content_type && pass_lines.empty()) head.append("Content-Type: application/json\r\n");
    head.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  head.append("\r\n");
  const std::array<asio::const_buffer, 2> request{asio::buffer(head), asio::buffer(body.data(), body.size())};

  const std::size_t cancels = cancels_;
  for (int attempt = 0;; ++attempt) {
    if (conn.is_open() && conn.closed_while_idle()) conn.drop();
    const bool reused = conn.is_open();
    if (!reused) {
      auto connected = co_await connect();
      if (cancels_ != cancels) connected = error(asio::error::operation_aborted, "connect");
      if (!connected) {
        conn.drop();
        busy_ = false;
        co_return connected.error();
      }
    }
    bound_io(conn);
    auto [wec, written] = co_await asio::async_write(conn.stream, request, use_tuple);
    if (wec) {
      conn.drop();
      if (reused && attempt == 0 && stale_connection(wec)) continue;
      busy_ = false;
      co_return error(wec, "send");
    }
    // Interim answers (100 Continue, 103 Early Hints) are skipped: the first final one is the answer. Taken
    // for the answer, a 1xx would leave the real one on the connection for the next request to read.
    std::unique_ptr<Parser> parser;
    beast::error_code rec;
    for (int interim = 0;; ++interim) {
      parser = std::make_unique<Parser>();
      parser->header_limit(static_cast<std::uint32_t>(max_response_header_bytes));
      parser->body_limit(boost::none);         // whole responses are limited by read_body, streams not at all
      parser->skip(verb == http::verb::head);  // a Content-Length, but no body
      bound_io(conn);
      rec = co_await detail::read_message(conn.stream, conn.buffer, *parser, true);
      if (rec) break;
      const unsigned status = parser->get().result_int();
      if (status / 100 != 1) break;
      if (status == 101 || interim == max_interim_responses) {  // no upgrade was asked for
        rec = http::error::bad_status;
        break;
      }
    }
    if (rec) {
      const bool tls_answer = !conn.stream.is_tls() && starts_like_tls_record(conn.buffer);
      conn.drop();
      // (Not sent again, even on a reused connection: the server read it and may have acted on it. A
      // connection the server had closed while idle was found above, before sending.)
      busy_ = false;
      if (tls_answer) {
        std::string tls_origin = base_.origin();
        tls_origin.replace(0, base_.scheme.size(), "https");
        co_return ClientError{rec, "the server speaks TLS, not plain HTTP — use " + tls_origin};
      }
      ClientError failed = error(rec, "header");
      failed.request_sent = true;
      co_return failed;
    }
    co_return std::move(parser);
  }
}

asio::awaitable<Result<std::size_t>> Client::read_some(Parser& parser, char* data, std::size_t size) {
  auto& conn = *connection_;
  parser.get().body().data = data;
  parser.get().body().size = size;
  bound_io(conn);
  auto [ec, read] = co_await http::async_read_some(conn.stream, conn.buffer, parser, use_tuple);
  if (ec == http::error::need_buffer) ec = {};
  if (ec) {
    conn.drop();
    busy_ = false;
    co_return error(ec, "body");
  }
  co_return size - parser.get().body().size;
}

asio::awaitable<Result<std::string>> Client::read_body(Parser& parser) {
  std::string body;
  std::array<char, 16384> chunk{};
  while (!parser.is_done()) {
    auto got = co_await read_some(parser, chunk.data(), chunk.size());
    if (!got) co_return got.error();
    if (body.size() + *got > options_.max_body_bytes) {
      connection_->drop();
      busy_ = false;
      co_return error(http::error::body_limit, "body");
    }
    body.append(chunk.data(), *got);
  }
  co_return body;
}

void Client::finish_exchange(const Parser& parser) {
  busy_ = false;
  // Back to keep-alive use only after an answer read to its end as framed by its Content-Length or chunks
  // (not one that ends with the connection) and nothing after it: bytes nobody asked for would be read as
  // the answer to the next request.
  if (!parser.is_done() || !parser.keep_alive() || parser.need_eof() || connection_->buffer.size() > 0)
    connection_->drop();
}

asio::awaitable<Result<Response>> Client::get(std::string_view target) {
  auto parser = co_await exchange(http::verb::get, target, std::string(), "application/json", nullptr,
                                  std::string_view());
  if (!parser) co_return parser.error();
  Response response;
  response.status = static_cast<int>((*parser)->get().result_int());
  response.headers = static_cast<const http::fields&>((*parser)->get());
  auto body = co_await read_body(**parser);
  if (!body) co_return body.error();
  response.body = std::move(*body);
  finish_exchange(**parser);
  co_return response;
}

asio::awaitable<Result<Response>> Client::post_json(std::string_view target, const nlohmann::json& body) {
  std::string text = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  auto parser = co_await exchange(http::verb::post, target, std::move(text), "application/json", nullptr,
                                  std::string_view());
  if (!parser) co_return parser.error();
  Response response;
  response.status = static_cast<int>((*parser)->get().result_int());
  response.headers = static_cast<const http::fields&>((*parser)->get());
  auto answer = co_await read_body(**parser);
  if (!answer) co_return answer.error();
  response.body = std::move(*answer);
  finish_exchange(**parser);
  co_return response;
}

// ---------------------------------------------------------------- SseStream

struct SseStream::State {
  Client* client = nullptr;
  std::unique_ptr<Client::Parser> parser;  // while the event stream is being read
  int status = 0;
  http::fields headers;
  bool event_stream = false;
  std::string body;
  SseParser sse;
  std::vector<SseEvent> pending;
  std::size_t next_pending = 0;
  bool done = false;
  std::array<char, 16384> chunk{};

  explicit State(Client* c) : client(c), sse(c->options().max_event_bytes) {}
};

SseStream::SseStream(std::unique_ptr<State> state) : state_(std::move(state)) {}
SseStream::SseStream(SseStream&&) noexcept = default;

SseStream& SseStream::operator=(SseStream&& other) noexcept {
  if (this != &other) {
    if (state_ && !state_->done) {
      state_->client->busy_ = false;
      state_->client->cancel();
    }
    state_ = std::move(other.state_);
  }
  return *this;
}

SseStream::~SseStream() {
  if (state_ && !state_->done) {  // abandoned mid-stream: the connection is in an unknown state
    state_->client->busy_ = false;
    state_->client->cancel();
  }
}

int SseStream::status() const noexcept {
  return state_->status;
}
const beast::http::fields& SseStream::headers() const noexcept {
  return state_->headers;
}
bool SseStream::is_event_stream() const noexcept {
  return state_->event_stream;
}
const std::string& SseStream::body() const noexcept {
  return state_->body;
}

asio::awaitable<Result<std::optional<SseEvent>>> SseStream::next() {
  auto& s = *state_;
  for (;;) {
    if (s.next_pending < s.pending.size()) {
      std::optional<SseEvent> event(std::move(s.pending[s.next_pending++]));
      co_return event;
    }
    s.pending.clear();
    s.next_pending = 0;
    if (s.done) {
      std::optional<SseEvent> none;
      co_return none;
    }
    if (s.parser->is_done()) {
      s.sse.finish(s.pending);
      s.client->finish_exchange(*s.parser);
      s.parser.reset();
      s.done = true;
      continue;
    }
    auto got = co_await s.client->read_some(*s.parser, s.chunk.data(), s.chunk.size());
    if (!got) {
      s.done = true;
      co_return got.error();
    }
    if (!s.sse.feed(std::string_view(s.chunk.data(), *got), s.pending)) {
      s.done = true;
      s.client->busy_ = false;
      s.client->cancel();
      ClientError too_long{boost::system::errc::make_error_code(boost::system::errc::message_size),
                           s.client->base().origin() + " sent an event line longer than " +
                               std::to_string(s.client->options().max_event_bytes) + " bytes"};
      co_return too_long;
    }
  }
}

asio::awaitable<Result<SseStream>> Client::post_sse(std::string_view target, const nlohmann::json& body) {
  std::string text = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  auto parser = co_await exchange(http::verb::post, target, std::move(text), "text/event-stream", nullptr,
                                  std::string_view());
  if (!parser) co_return parser.error();
  auto state = std::make_unique<SseStream::State>(this);
  auto& message = (*parser)->get();
  state->status = static_cast<int>(message.result_int());
  state->headers = static_cast<const http::fields&>(message);
  auto type = message.find(http::field::content_type);
  const bool ok = state->status >= 200 && state->status < 300;
  state->event_stream =
      ok && type != message.end() && lower(std::string_view(type->value())).starts_with("text/event-stream");
  if (state->event_stream) {
    state->parser = std::move(*parser);
  } else {
    auto answer = co_await read_body(**parser);
    if (!answer) co_return answer.error();
    state->body = std::move(*answer);
    finish_exchange(**parser);
    state->done = true;
  }
  co_return SseStream(std::move(state));
}

// ---------------------------------------------------------------- ResponseReader

struct ResponseReader::Parser {
  std::unique_ptr<Client::Parser> parser;
};

ResponseReader::ResponseReader(Client* client, std::unique_ptr<Parser> parser)
    : client_(client), parser_(std::move(parser)) {}
ResponseReader::ResponseReader(ResponseReader&& other) noexcept
    : client_(other.client_), parser_(std::move(other.parser_)), done_(other.done_) {
  other.done_ = true;
}
ResponseReader& ResponseReader::operator=(ResponseReader&& other) noexcept {
  if (this != &other) {
    abandon();
    client_ = other.client_;
    parser_ = std::move(other.parser_);
    done_ = other.done_;
    other.done_ = true;
  }
  return *this;
}
ResponseReader::~ResponseReader() {
  abandon();
}

void ResponseReader::abandon() noexcept {
  if (!done_ && client_ != nullptr) {  // mid-body: the connection is in an unknown state
    client_->busy_ = false;
    client_->cancel();
  }
  done_ = true;
}

int ResponseReader::status() const noexcept {
  return static_cast<int>(parser_->parser->get().result_int());
}
const beast::http::fields& ResponseReader::headers() const noexcept {
  return parser_->parser->get();
}

asio::awaitable<Result<std::size_t>> ResponseReader::read_some(char* data, std::size_t size) {
  if (done_) co_return std::size_t{0};
  auto& parser = *parser_->parser;
  while (!parser.is_done()) {
    auto got = co_await client_->read_some(parser, data, size);
    if (!got) {
      done_ = true;
      co_return got.error();
    }
    if (*got > 0) co_return *got;
  }
  client_->finish_exchange(parser);
  done_ = true;
  co_return std::size_t{0};
}

asio::awaitable<Result<void>> ResponseReader::read_rest(std::string& out, char* scratch, std::size_t size) {
  if (done_) co_return Result<void>();
  auto& parser = *parser_->parser;
  auto& conn = *client_->connection_;
  if (const auto length = parser.content_length(); length && *length <= client_->options_.max_body_bytes)
    out.reserve(out.size() + static_cast<std::size_t>(*length));
  auto fail = [&](beast::error_code ec) {
    conn.drop();
    client_->busy_ = false;
    done_ = true;
    return client_->error(ec, "body");
  };
  // The body bytes in the buffer, through the parser (which takes away chunk framing) into `out`.
  auto drain = [&]() -> beast::error_code {
    while (!parser.is_done() && conn.buffer.size() > 0) {
      parser.get().body().data = scratch;
      parser.get().body().size = size;
      beast::error_code ec;
      const std::size_t used = parser.put(conn.buffer.data(), ec);
      conn.buffer.consume(used);
      out.append(scratch, size - parser.get().body().size);
      if (ec == http::error::need_buffer) continue;  // the scratch buffer was full
      if (ec == http::error::need_more) break;
      if (ec) return ec;
      if (used == 0) break;
    }
    return {};
  };
  // What came in with the header needs no I/O; then one plain read at a time.
  if (const auto ec = drain()) co_return fail(ec);
  while (!parser.is_done()) {
    if (conn.buffer.size() >= conn.buffer.max_size()) co_return fail(http::error::buffer_overflow);
    client_->bound_io(conn);
    auto [ec, read] = co_await conn.stream.async_read_some(detail::prepare_read(conn.buffer), use_tuple);
    conn.buffer.commit(read);
    if (ec == asio::error::eof && parser.got_some()) {
      parser.put_eof(ec);  // a body that ends with the connection
      if (!ec && !parser.is_done()) ec = http::error::partial_message;
    }
    if (!ec) ec = drain();
    if (ec) co_return fail(ec);
  }
  client_->finish_exchange(parser);
  done_ = true;
  co_return Result<void>();
}

asio::awaitable<Result<ResponseReader>> Client::send(http::verb verb, std::string_view target,
                                                     std::string body, http::fields headers) {
  auto parser = co_await exchange(verb, target, body, {}, &headers, {});
  if (!parser) co_return parser.error();
  auto owned = std::make_unique<ResponseReader::Parser>();
  owned->parser = std::move(*parser);
  co_return ResponseReader(this, std::move(owned));
}

asio::awaitable<Result<ResponseReader>> Client::send(http::verb verb, std::string_view target,
                                                     std::string_view body, std::string_view header_lines) {
  auto parser = co_await exchange(verb, target, body, {}, nullptr, header_lines);
  if (!parser) co_return parser.error();
  auto owned = std::make_unique<ResponseReader::Parser>();
  owned->parser = std::move(*parser);
  co_return ResponseReader(this, std::move(owned));
}

// ---------------------------------------------------------------- probe_tls

asio::awaitable<Result<TlsHandshakeFacts>> probe_tls(asio::any_io_executor executor, const Url& url,
                                                     const ClientOptions& options) {
  Url https_url = url;
  https_url.scheme = "https";
  ClientOptions probe_options = options;
  probe_options.tls_insecure = true;  // go on past a failed check: describing it is the point
  Client client(std::move(executor), https_url, probe_options);
  auto connected = co_await client.connect();
  if (!connected) co_return connected.error();

  auto& conn = *client.connection_;
  SSL* ssl = conn.stream.ssl();
  TlsHandshakeFacts facts;
  facts.protocol = SSL_get_version(ssl);
  facts.cipher = SSL_get_cipher_name(ssl);
  // On the client side the chain the server sent starts with its own certificate.
  if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl)) {
    for (int i = 0; i < sk_X509_num(chain); ++i) {
      facts.chain.push_back(tls::certificate_facts(sk_X509_value(chain, i)));
    }
  }
  if (STACK_OF(X509_NAME)* cas = SSL_get_client_CA_list(ssl)) {
    for (int i = 0; i < sk_X509_NAME_num(cas); ++i) {
      facts.client_ca_names.push_back(tls::name_text(sk_X509_NAME_value(cas, i)));
    }
  }
  facts.verify_error = conn.verify.error;
  facts.verified = conn.verify.error == X509_V_OK;
  if (!facts.verified) {
    facts.verify_error_text = X509_verify_cert_error_string(conn.verify.error);
    facts.problem = tls::describe_verify_error(conn.verify, https_url.origin(), https_url.host);
  }
  conn.drop();
  co_return facts;
}

}  // namespace clawbot::http
