// An HTTP/1.1 client on Boost.Beast with C++20 coroutines: one keep-alive connection per Client, GET and
// JSON POST with whole responses, and server-sent event streams read event by event.
//
// A Client runs one exchange at a time (use one Client per concurrent task); it reconnects by itself when
// the server has closed an idle keep-alive connection. Failures come back as a ClientError whose message
// names the URL and says what to check. http:// and https:// share the I/O code through one stream type
// (tls::PlainOrTlsStream); a failed TLS handshake says which check failed (expiry, issuer, host name, plain
// HTTP on the other end) and what to change.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/system/result.hpp>
#include <nlohmann/json.hpp>

#include "common/tls.h"

namespace clawbot::http {

namespace asio = boost::asio;
namespace beast = boost::beast;

struct ClientError {
  boost::system::error_code code;
  std::string message;  // what failed, on which URL, and what to check
  // The whole request had been written when the exchange failed: the server may have read it and acted on
  // it (a proxy must not send it to another server). False for resolve, connect, TLS and write failures.
  bool request_sent = false;
};

// For Result<T>::value() on an error (boost::system::result finds this by ADL).
[[noreturn]] void throw_exception_from_error(const ClientError& error, const boost::source_location& where);

template <class T>
using Result = boost::system::result<T, ClientError>;

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;    // an IPv6 address without its brackets
  std::string port;    // always set ("80" or "443" when the URL names none)
  std::string path;    // base path without a trailing '/', empty for none

  std::string origin() const;  // scheme://host:port, IPv6 in brackets
  std::string str() const;     // origin() + path
  bool is_https() const noexcept { return scheme == "https"; }
};

// Parses "http[s]://host[:port][/path]"; other schemes are refused with a message saying so.
Result<Url> parse_url(std::string_view text);

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds read_timeout{300'000};  // longest silence while waiting for (more of) a response
  std::size_t max_body_bytes = 64u << 20;           // whole responses; event streams have no limit
  std::size_t max_event_bytes = 16u << 20;          // one server-sent event line
  std::vector<std::pair<std::string, std::string>> headers;  // sent with every request (Authorization, ...)
  // https:// only. The server's certificate must lead to a trusted CA and name the URL's host (or IP).
  std::string tls_ca_file;    // PEM CA bundle to trust; empty: the system's default verify paths
  bool tls_insecure = false;  // skip the certificate and host checks (tests and diagnosis only)
  std::string tls_cert_file;  // client certificate for servers that require one (mTLS), PEM
  std::string tls_key_file;   // its private key; empty: in tls_cert_file
  // For a client kept in a long-running pool (a proxy's upstream connections): read timeouts kept by one
  // timer per connection that stays armed while the connection lives, instead of a timer per read. Not for
  // one-shot tools: that timer keeps io_context::run() from returning until the client is destroyed.
  bool pooled = false;
};

// The TLS half of ClientOptions.
tls::ClientConfig tls_client_config(const ClientOptions& options);

struct Response {
  int status = 0;
  beast::http::fields headers;
  std::string body;

  std::string content_type() const;
  bool ok() const noexcept { return status >= 200 && status < 300; }
};

// One server-sent event: the `data:` lines joined with '\n', and the optional `event:` and `id:` fields.
struct SseEvent {
  std::string data;
  std::string event;
  std::string id;
};

// The text/event-stream format, fed in pieces of any size: CR, LF or CRLF line ends, `: comment` lines
// (keep-alives) skipped, several `data:` lines joined. finish() delivers an event the stream ended without
// its blank line (a lenient reading of the spec, which drops it).
class SseParser {
 public:
  explicit SseParser(std::size_t max_line_bytes = 16u << 20) : max_line_(max_line_bytes) {}
  // Appends the events completed by `bytes`; false if a line grew longer than the limit.
  bool feed(std::string_view bytes, std::vector<SseEvent>& out);
  void finish(std::vector<SseEvent>& out);
  std::size_t comments() const noexcept { return comments_; }

 private:
  void take_line(std::string_view line, std::vector<SseEvent>& out);
  void dispatch(std::vector<SseEvent>& out);

  std::size_t max_line_;
  std::string line_;
  std::string data_;
  std::string event_;
  std::string id_;
  bool has_data_ = false;
  bool after_cr_ = false;  // the last piece ended with '\r': a '\n' next belongs to it
  bool at_start_ = true;   // a UTF-8 byte order mark is skipped here
  std::size_t comments_ = 0;
};

// What a TLS handshake with `url`'s host and port shows, for `clawbot doctor`. The handshake goes on when
// verification fails, so that an untrusted, expired or misnamed certificate can still be described.
struct TlsHandshakeFacts {
  std::string protocol;                      // "TLSv1.3"
  std::string cipher;                        // "TLS_AES_256_GCM_SHA384"
  std::vector<tls::CertificateFacts> chain;  // as the server sent it, its own certificate first
  bool verified = false;                     // trusted chain, valid dates and a matching host name
  int verify_error = 0;                      // X509_V_OK (0) or OpenSSL's X509_V_ERR_* code
  std::string verify_error_text;             // OpenSSL's words for verify_error
  std::string problem;                       // what is wrong and what to do; empty when verified
  std::vector<std::string> client_ca_names;  // CAs the server accepts client certificates from
};

class Client;

// The answer to Client::send: the status and header, then the body read piece by piece. Destroying it before
// the body is complete closes the connection (its state is unknown). The Client must outlive it.
class ResponseReader {
 public:
  ResponseReader(ResponseReader&&) noexcept;
  ResponseReader& operator=(ResponseReader&&) noexcept;
  ~ResponseReader();

  int status() const noexcept;
  const beast::http::fields& headers() const noexcept;
  bool done() const noexcept { return done_; }
  // Up to `size` bytes of the body into `data`; 0 once the body is complete (then the connection goes back
  // to keep-alive use).
  asio::awaitable<Result<std::size_t>> read_some(char* data, std::size_t size);
  // The rest of the body appended to `out`, read through `scratch`: one coroutine for a whole answer, and no
  // I/O at all for the part that came in with the header.
  asio::awaitable<Result<void>> read_rest(std::string& out, char* scratch, std::size_t size);

 private:
  friend class Client;
  struct Parser;
  ResponseReader(Client* client, std::unique_ptr<Parser> parser);
  void abandon() noexcept;
  Client* client_ = nullptr;
  std::unique_ptr<Parser> parser_;
  bool done_ = false;
};

// The answer to Client::post_sse. When the server answered with an event stream, next() yields its events;
// otherwise (an error status, or a JSON answer to a request it did not stream) body() holds the answer and
// next() yields nothing. Destroying an unfinished stream closes the connection. The Client must outlive it.
class SseStream {
 public:
  SseStream(SseStream&&) noexcept;
  SseStream& operator=(SseStream&&) noexcept;
  ~SseStream();

  int status() const noexcept;
  const beast::http::fields& headers() const noexcept;
  bool is_event_stream() const noexcept;
  const std::string& body() const noexcept;  // only when !is_event_stream()

  // The next event; an empty optional at the end of the stream.
  asio::awaitable<Result<std::optional<SseEvent>>> next();

 private:
  friend class Client;
  struct State;
  explicit SseStream(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

class Client {
 public:
  Client(asio::any_io_executor executor, Url base, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const Url& base() const noexcept { return base_; }
  const ClientOptions& options() const noexcept { return options_; }

  // `target` is appended to the base URL's path ("/v1/models").
  asio::awaitable<Result<Response>> get(std::string_view target);
  asio::awaitable<Result<Response>> post_json(std::string_view target, const nlohmann::json& body);
  // POSTs `body` with Accept: text/event-stream and returns once the response header is in.
  asio::awaitable<Result<SseStream>> post_sse(std::string_view target, const nlohmann::json& body);
  // For a proxy: `headers` as given (Host, Content-Length and the options' headers are set here), any
  // method and body; returns once the response header is in. A request that finds its kept-alive connection
  // closed by the server is sent once more on a new one, as get and post_json are.
  asio::awaitable<Result<ResponseReader>> send(beast::http::verb verb, std::string_view target,
                                               std::string body, beast::http::fields headers);
  // The same with the headers already written as "Name: value\r\n" lines (valid, and without Host,
  // Content-Length, Transfer-Encoding or a header the options set): no field-by-field copy. `header_lines`
  // and `body` must stay valid until the answer's header is in.
  asio::awaitable<Result<ResponseReader>> send(beast::http::verb verb, std::string_view target,
                                               std::string_view body, std::string_view header_lines);

  // Drops the connection; an exchange in progress ends with a "cancelled" error. Safe to call from a
  // handler on the client's executor while a coroutine waits on it.
  void cancel();
  bool connected() const;
  std::size_t connects() const noexcept { return connects_; }  // connections opened so far

 private:
  friend class SseStream;
  friend class ResponseReader;
  friend asio::awaitable<Result<TlsHandshakeFacts>> probe_tls(asio::any_io_executor, const Url&,
                                                              const ClientOptions&);
  struct Connection;
  using Parser = beast::http::response_parser<beast::http::buffer_body>;

  asio::awaitable<Result<std::unique_ptr<Parser>>> exchange(beast::http::verb verb, std::string_view target,
                                                            std::string_view body, std::string_view accept,
                                                            const beast::http::fields* pass,
                                                            std::string_view pass_lines);
  asio::awaitable<Result<void>> connect();
  asio::awaitable<Result<std::size_t>> read_some(Parser& parser, char* data, std::size_t size);
  asio::awaitable<Result<std::string>> read_body(Parser& parser);
  void finish_exchange(const Parser& parser);
  ClientError error(boost::system::error_code ec, std::string_view while_doing) const;
  void bound_io(Connection& conn);  // the read timeout for the next operations on `conn`
  ClientError tls_setup_error(std::string message) const;

  Url base_;
  ClientOptions options_;
  std::unique_ptr<Connection> connection_;
  std::shared_ptr<asio::ssl::context> tls_context_;  // made at the first https:// connect, then reused
  bool busy_ = false;
  std::size_t connects_ = 0;
  std::size_t cancels_ = 0;  // an exchange that sees this change was cancelled
};

// Connects (options.connect_timeout), does only the handshake and closes. Fails only when no handshake
// happens at all (nothing listening, plain HTTP, a refused client certificate ...).
asio::awaitable<Result<TlsHandshakeFacts>> probe_tls(asio::any_io_executor executor, const Url& url,
                                                     const ClientOptions& options);

}  // namespace clawbot::http
