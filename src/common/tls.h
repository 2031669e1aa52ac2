// TLS for the HTTP client and server (OpenSSL 3 through Boost.Asio): one SSL_CTX per listener or client,
// a stream type that is plain TCP or TLS over it, the facts of a peer's certificate, and messages that turn
// OpenSSL's verify results and alerts into what failed and what to do about it.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <openssl/ssl.h>
#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "common/error.h"

namespace clawbot::tls {

namespace asio = boost::asio;
namespace beast = boost::beast;

// A TLS file or setting that cannot be used; the message names the file and the problem.
class TlsError : public ClawbotError {
 public:
  explicit TlsError(const std::string& message) : ClawbotError(ErrorKind::internal, message) {}
};

// ---------------------------------------------------------------- contexts

struct ServerConfig {
  std::string cert_file;             // PEM: the server's certificate, then its intermediates
  std::string key_file;              // PEM: its private key
  std::string client_ca_file;        // PEM: CAs whose client certificates are accepted; empty: none asked for
  bool require_client_cert = false;  // refuse clients without one (needs client_ca_file)
  std::chrono::milliseconds handshake_timeout{10'000};
};

// A listener's settings from its files; a client CA makes client certificates required, not only asked for
// (a server that checks them checks them all).
inline ServerConfig server_config(std::string cert_file, std::string key_file, std::string client_ca_file) {
  ServerConfig config;
  config.cert_file = std::move(cert_file);
  config.key_file = std::move(key_file);
  config.require_client_cert = !client_ca_file.empty();
  config.client_ca_file = std::move(client_ca_file);
  return config;
}

struct ClientConfig {
  std::string ca_file;    // PEM bundle of trusted CAs; empty: the system's default verify paths
  bool insecure = false;  // skip the certificate and host checks (tests and diagnosis only)
  std::string cert_file;  // client certificate for mutual TLS, PEM with its chain; empty: none
  std::string key_file;   // its private key; empty: read from cert_file
};

// TLS 1.2 at least. Throws TlsError naming the file that cannot be read or does not fit.
std::shared_ptr<asio::ssl::context> make_server_context(const ServerConfig& config);
std::shared_ptr<asio::ssl::context> make_client_context(const ClientConfig& config);

// ---------------------------------------------------------------- certificate facts

struct CertificateFacts {
  std::string subject;  // one line, "CN=node1,O=Home"
  std::string issuer;
  std::string common_name;                // the subject's CN, empty when it has none
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
  std::string serial;              // hex
  std::string sha256_fingerprint;  // "AB:CD:..."
  bool self_signed = false;        // subject and issuer are the same
};

CertificateFacts certificate_facts(X509* certificate);
std::string name_text(const X509_NAME* name);  // one line, RFC 2253: "CN=node1,O=Home"
// The names a host is checked against: SAN DNS and IP entries, else the subject's CN.
std::vector<std::string> certificate_names(const CertificateFacts& facts);
// The first certificate of a PEM file; throws TlsError.
CertificateFacts read_certificate_file(const std::string& path);
std::string format_utc(std::chrono::system_clock::time_point when);  // "2026-01-01 00:00:00 UTC"

// ---------------------------------------------------------------- one connection's verification

// What a client saw while verifying one server: filled by the callbacks that prepare_client() installs.
struct VerifyRecord {
  int error = X509_V_OK;  // the first failure of the chain or host check
  int error_depth = 0;    // 0: the server's own certificate
  CertificateFacts failed_certificate;
  std::string first_record_header;  // the first 5 bytes the server sent, to recognise plain HTTP
};

// Sets SNI (names only, not IP literals) and the host check, and records verification in `record`, which
// must outlive the handshake. With verify false the handshake goes on whatever the result (still recorded).
void prepare_client(beast::ssl_stream<beast::tcp_stream>& stream, const std::string& host, bool verify,
                    VerifyRecord& record);

// What went wrong in a client's TLS handshake or exchange with `origin` (https://host:port), and what to
// check; `host` is the name or address the client asked for.
std::string describe_client_failure(beast::error_code ec, const VerifyRecord& record, std::string_view origin,
                                    std::string_view host);
// The problem a verify result names, for `doctor`; empty for X509_V_OK.
std::string describe_verify_error(const VerifyRecord& record, std::string_view origin, std::string_view host);

// True when a failed server handshake read a plain HTTP request ("GET /..." on a TLS port).
bool is_plain_http_request(beast::error_code ec);
// A server handshake failure in a few words, for the log ("the client sent no certificate", ...); `ssl`
// (may be null) adds the verify result of a refused client certificate.
std::string describe_server_failure(beast::error_code ec, SSL* ssl);

// ---------------------------------------------------------------- a stream with or without TLS

// How long a read or write through a PlainOrTlsStream may take, kept without a timer per operation:
// Beast's tcp_stream arms, cancels and completes a timer around every read and write, which cost a proxy
// as much as its HTTP parsing. Here each operation only notes its deadline, and one timer per connection
// (armed at most once per timeout period) closes the connection when an operation outlives it, as Beast
// would; the operation then fails with beast::error::timeout.
class PlainOrTlsStream;

class IoDeadline : public std::enable_shared_from_this<IoDeadline> {
 public:
  using Clock = std::chrono::steady_clock;
  IoDeadline(asio::any_io_executor executor, PlainOrTlsStream* owner)
      : timer_(std::move(executor)), owner_(owner) {}

  void set_timeout(Clock::duration timeout) noexcept { timeout_ = timeout; }
  void release() noexcept {  // the stream is gone
    owner_ = nullptr;
    timer_.cancel();
  }

  // Before each read or write; true when it counts (a timeout is set), and end() must follow.
  bool begin() {
    if (timeout_ == Clock::duration::zero()) return false;
    ++pending_;
    deadline_ = Clock::now() + timeout_;
    if (!watching_ || deadline_ < watch_at_) watch(deadline_);
    return true;
  }
  // After it, with its result: an operation cut short by the deadline says so.
  void end(beast::error_code& ec) noexcept {
    --pending_;
    if (expired_ && ec) ec = beast::error::timeout;
  }
  // Whatever the operation, one cut short by the deadline says so.
  void mark(beast::error_code& ec) const noexcept {
    if (expired_ && ec) ec = beast::error::timeout;
  }

 private:
  void watch(Clock::time_point at);

  asio::steady_timer timer_;
  PlainOrTlsStream* owner_;
  Clock::duration timeout_ = Clock::duration::zero();
  Clock::time_point deadline_{};
  Clock::time_point watch_at_{};
  int pending_ = 0;
  bool watching_ = false;
  bool expired_ = false;
};

// A completion handler that tells the stream's deadline its operation ended. It keeps the handler's
// executor, allocator and cancellation slot (the associator specialisation below).
template <class Handler>
struct DeadlineHandler {
  Handler handler;
  std::shared_ptr<IoDeadline> deadline;
  bool counted = false;  // begin() counted the operation
  void operator()(beast::error_code ec, std::size_t n) {
    if (counted)
      deadline->end(ec);
    else if (deadline)
      deadline->mark(ec);
    std::move(handler)(ec, n);
  }
};

// Plain TCP or TLS over TCP behind one type, so that the HTTP code is written once. Socket options,
// close() and the timeouts of connect and handshakes go to tcp(), the layer below; reads and writes go
// through TLS when it is on, bounded by io_timeout().
class PlainOrTlsStream {
 public:
  using TlsStream = beast::ssl_stream<beast::tcp_stream>;
  using executor_type = beast::tcp_stream::executor_type;

  explicit PlainOrTlsStream(beast::tcp_stream tcp) : stream_(std::move(tcp)) {}
  ~PlainOrTlsStream() {
    if (deadline_) deadline_->release();
  }
  // The deadline keeps this object's address.
  PlainOrTlsStream(const PlainOrTlsStream&) = delete;
  PlainOrTlsStream& operator=(const PlainOrTlsStream&) = delete;

  // Wraps the (connected) TCP stream in TLS; the handshake comes next, through tls().
  void start_tls(asio::ssl::context& context) {
    beast::tcp_stream tcp = std::move(std::get<beast::tcp_stream>(stream_));
    stream_.emplace<TlsStream>(std::move(tcp), context);
  }
  // Back to a fresh, closed TCP stream (the TLS session state is dropped with it).
  void reset() {
    stream_.emplace<beast::tcp_stream>(get_executor());
    if (deadline_) {
      deadline_->release();
      deadline_.reset();
    }
  }

  bool is_tls() const noexcept { return std::holds_alternative<TlsStream>(stream_); }
  TlsStream& tls() { return std::get<TlsStream>(stream_); }
  beast::tcp_stream& tcp() {
    if (auto* tls_stream = std::get_if<TlsStream>(&stream_)) return tls_stream->next_layer();
    return std::get<beast::tcp_stream>(stream_);
  }
  SSL* ssl() { return is_tls() ? tls().native_handle() : nullptr; }

  executor_type get_executor() { return tcp().get_executor(); }
  // For operations on tcp() and tls() themselves (connect, handshakes, shutdown): Beast's own timer.
  void expires_after(std::chrono::steady_clock::duration after) { tcp().expires_after(after); }
  // For each read and write through this stream from now on: at most `timeout` (see IoDeadline).
  void io_timeout(std::chrono::steady_clock::duration timeout) {
    tcp().expires_never();
    if (!deadline_) deadline_ = std::make_shared<IoDeadline>(get_executor(), this);
    deadline_->set_timeout(timeout);
  }
  // A new io_timeout() for the operations that start from now on, cheaper once io_timeout() has run.
  void retime(std::chrono::steady_clock::duration timeout) {
    if (deadline_)
      deadline_->set_timeout(timeout);
    else
      io_timeout(timeout);
  }

  template <class MutableBuffers, class ReadToken>
  auto async_read_some(const MutableBuffers& buffers, ReadToken&& token) {
    return asio::async_initiate<ReadToken, void(beast::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          auto guarded = guard(std::move(handler));
          if (auto* tls_stream = std::get_if<TlsStream>(&stream_)) {
            tls_stream->async_read_some(b, std::move(guarded));
          } else {
            std::get<beast::tcp_stream>(stream_).async_read_some(b, std::move(guarded));
          }
        },
        token, buffers);
  }

  template <class ConstBuffers, class WriteToken>
  auto async_write_some(const ConstBuffers& buffers, WriteToken&& token) {
    return asio::async_initiate<WriteToken, void(beast::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          auto guarded = guard(std::move(handler));
          if (auto* tls_stream = std::get_if<TlsStream>(&stream_)) {
            tls_stream->async_write_some(b, std::move(guarded));
          } else {
            std::get<beast::tcp_stream>(stream_).async_write_some(b, std::move(guarded));
          }
        },
        token, buffers);
  }

 private:
  template <class Handler>
  DeadlineHandler<Handler> guard(Handler handler) {
    const bool counted = deadline_ && deadline_->begin();
    return DeadlineHandler<Handler>{std::move(handler), deadline_, counted};
  }

  std::variant<beast::tcp_stream, TlsStream> stream_;
  std::shared_ptr<IoDeadline> deadline_;  // made by the first io_timeout()
};

}  // namespace clawbot::tls

namespace boost::asio {
// The wrapped handler's associated executor, allocator and cancellation slot are the handler's own.
template <template <typename, typename> class Associator, typename Handler, typename DefaultCandidate>
struct associator<Associator, clawbot::tls::DeadlineHandler<Handler>, DefaultCandidate> {
  using type = typename Associator<Handler, DefaultCandidate>::type;
  static type get(const clawbot::tls::DeadlineHandler<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler);
  }
  static auto get(const clawbot::tls::DeadlineHandler<Handler>& h, const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};
}  // namespace boost::asio
