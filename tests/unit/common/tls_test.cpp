// TLS in the HTTP client and server against each other on 127.0.0.1, with a throw-away CA and certificates
// made here with OpenSSL's C API: trusted, expired, for another host, self-signed, and client certificates.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <atomic>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>

#include "common/http_client.h"
#include "common/http_server.h"
#include "common/tls.h"

#include "../support/run_async.h"

namespace clawbot::http {
namespace {

using json = nlohmann::json;
using tcp = asio::ip::tcp;
using asio::use_awaitable;
namespace fs = std::filesystem;

// ---------------------------------------------------------------- a throw-away PKI

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};

struct Credential {
  std::unique_ptr<EVP_PKEY, PkeyFree> key;
  std::unique_ptr<X509, X509Free> cert;
  std::string cert_file;
  std::string key_file;
};

struct CertificateSpec {
  std::string common_name;
  std::string subject_alt_names;  // "DNS:localhost,IP:127.0.0.1"; empty: none
  long valid_from_s = -3600;      // relative to now
  long valid_until_s = 86400;
  bool is_ca = false;
};

CertificateSpec leaf_spec(std::string common_name, std::string subject_alt_names = {}) {
  CertificateSpec spec;
  spec.common_name = std::move(common_name);
  spec.subject_alt_names = std::move(subject_alt_names);
  return spec;
}

CertificateSpec ca_spec(std::string common_name) {
  CertificateSpec spec = leaf_spec(std::move(common_name));
  spec.is_ca = true;
  return spec;
}

void add_extension(X509* cert, X509V3_CTX& ctx, int nid, const std::string& value) {
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  ASSERT_NE(extension, nullptr) << "extension " << value;
  X509_add_ext(cert, extension, -1);
  X509_EXTENSION_free(extension);
}

// Signed by `issuer`, or self-signed without one; written as PEM files under `dir` named `name`.
Credential make_credential(const fs::path& dir, const std::string& name, const CertificateSpec& spec,
                           const Credential* issuer) {
  static std::atomic<long> serial{1000};
  Credential made;
  made.key.reset(EVP_EC_gen("P-256"));
  made.cert.reset(X509_new());
  X509* cert = made.cert.get();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert), spec.valid_from_s);
  X509_gmtime_adj(X509_getm_notAfter(cert), spec.valid_until_s);
  X509_set_pubkey(cert, made.key.get());
  X509_NAME* subject = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer->cert.get()) : subject);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer->cert.get() : cert, cert, nullptr, nullptr, 0);
  add_extension(cert, ctx, NID_basic_constraints, spec.is_ca ? "critical,CA:TRUE" : "CA:FALSE");
  add_extension(cert, ctx, NID_subject_key_identifier, "hash");
  if (spec.is_ca) add_extension(cert, ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
  if (!spec.subject_alt_names.empty()) add_extension(cert, ctx, NID_subject_alt_name, spec.subject_alt_names);
  X509_sign(cert, issuer ? issuer->key.get() : made.key.get(), EVP_sha256());

  made.cert_file = (dir / (name + ".pem")).string();
  made.key_file = (dir / (name + ".key")).string();
  std::unique_ptr<BIO, BioFree> cert_out(BIO_new_file(made.cert_file.c_str(), "w"));
  std::unique_ptr<BIO, BioFree> key_out(BIO_new_file(made.key_file.c_str(), "w"));
  PEM_write_bio_X509(cert_out.get(), cert);
  PEM_write_bio_PrivateKey(key_out.get(), made.key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  return made;
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("clawbot-tls-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    ca_ = make_credential(dir_, "ca", ca_spec("clawbot test CA"), nullptr);
    other_ca_ = make_credential(dir_, "other-ca", ca_spec("some other CA"), nullptr);
    const std::string local_names = "DNS:localhost,IP:127.0.0.1";
    server_ = make_credential(dir_, "server", leaf_spec("localhost", local_names), &ca_);
    auto expired = leaf_spec("localhost", local_names);
    expired.valid_from_s = -2 * 86400;
    expired.valid_until_s = -86400;
    expired_ = make_credential(dir_, "expired", expired, &ca_);
    wrong_host_ = make_credential(dir_, "wrong-host", leaf_spec("other.example", "DNS:other.example"), &ca_);
    self_signed_ = make_credential(dir_, "self-signed", leaf_spec("localhost", local_names), nullptr);
    client_ = make_credential(dir_, "client", leaf_spec("laptop1"), &ca_);
    stranger_ = make_credential(dir_, "stranger", leaf_spec("stranger"), &other_ca_);
  }
  static void TearDownTestSuite() {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  static tls::ServerConfig server_config(const Credential& cert) {
    tls::ServerConfig config;
    config.cert_file = cert.cert_file;
    config.key_file = cert.key_file;
    return config;
  }
  static ClientOptions trusting_options() {
    ClientOptions options;
    options.tls_ca_file = ca_.cert_file;
    options.connect_timeout = std::chrono::seconds(5);
    options.read_timeout = std::chrono::seconds(5);
    return options;
  }

  static inline fs::path dir_;
  static inline Credential ca_, other_ca_, server_, expired_, wrong_host_, self_signed_, client_, stranger_;
};

// ---------------------------------------------------------------- helpers

using clawbot::testing::run_async;

std::shared_ptr<Router> test_router() {
  auto router = std::make_shared<Router>();
  router->add(Verb::get, "/v1/hello", [](Exchange& ex) -> asio::awaitable<void> {
    const json body = {{"hello", "world"}, {"tls", ex.is_tls()}, {"client", ex.client_certificate_subject()}};
    co_await ex.respond_json(200, body);
  });
  router->add(Verb::post, "/v1/sse", [](Exchange& ex) -> asio::awaitable<void> {
    const json got = json::parse(ex.request().body());
    co_await ex.sse_start();
    co_await ex.sse_data(got.value("say", "?"));
    co_await ex.sse_data("two");
  });
  return router;
}

std::string url_for(std::string_view scheme, std::string_view host, unsigned short port) {
  return std::string(scheme) + "://" + std::string(host) + ":" + std::to_string(port);
}

// The error of a GET that must fail, or a test failure naming what came back instead.
asio::awaitable<std::string> failed_get(asio::io_context& io, std::string url, ClientOptions options) {
  Client client(io.get_executor(), *parse_url(url), std::move(options));
  auto r = co_await client.get("/v1/hello");
  EXPECT_FALSE(r) << url << " answered " << (r ? r->body : "");
  co_return r ? std::string() : r.error().message;
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// ---------------------------------------------------------------- what works

TEST_F(TlsTest, HttpsGetAndEventStreamWithTheCaFile) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0, server_config(server_));
    for (const char* host : {"127.0.0.1", "localhost"}) {  // an IP SAN and a DNS SAN (with SNI)
      Client client(io.get_executor(), *parse_url(url_for("https", host, port) + "/v1"), trusting_options());
      auto hello = co_await client.get("/hello");
      EXPECT_TRUE(hello) << host << ": " << (hello ? "" : hello.error().message);
      if (!hello) co_return;
      EXPECT_EQ(hello->status, 200);
      const auto body = json::parse(hello->body);
      EXPECT_EQ(body["hello"], "world");
      EXPECT_EQ(body["tls"], true);
      EXPECT_EQ(body["client"], "");  // no client certificate was asked for

      const json ask = {{"say", "one"}};
      auto stream = co_await client.post_sse("/sse", ask);
      EXPECT_TRUE(stream) << (stream ? "" : stream.error().message);
      if (!stream) co_return;
      EXPECT_TRUE(stream->is_event_stream());
      std::vector<std::string> events;
      for (;;) {
        auto event = co_await stream->next();
        EXPECT_TRUE(event) << (event ? "" : event.error().message);
        if (!event || !*event) break;
        events.push_back((*event)->data);
      }
      const std::vector<std::string> expected{"one", "two", "[DONE]"};
      EXPECT_EQ(events, expected);
      auto again = co_await client.get("/hello");
      EXPECT_TRUE(again && again->status == 200);
      EXPECT_EQ(client.connects(), 1u);  // keep-alive over TLS: one handshake for all three
    }
    server.stop();
  });
}

TEST_F(TlsTest, ReconnectsAfterTheServerClosedAnIdleTlsConnection) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    ServerLimits limits;
    limits.idle_timeout = std::chrono::seconds(1);  // then the server sends close_notify and closes
    Server server(io, test_router(), limits);
    const auto port = server.listen("127.0.0.1", 0, server_config(server_));
    Client client(io.get_executor(), *parse_url(url_for("https", "127.0.0.1", port)), trusting_options());
    auto first = co_await client.get("/v1/hello");
    EXPECT_TRUE(first && first->status == 200);
    asio::steady_timer idle(io, std::chrono::milliseconds(1300));
    co_await idle.async_wait(use_awaitable);
    auto second = co_await client.get("/v1/hello");
    EXPECT_TRUE(second && second->status == 200) << (second ? "" : second.error().message);
    EXPECT_EQ(client.connects(), 2u);
    server.stop();
  });
}

TEST_F(TlsTest, InsecureSkipsTheChecks) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0, server_config(self_signed_));
    ClientOptions options;
    options.tls_insecure = true;
    Client client(io.get_executor(), *parse_url(url_for("https", "127.0.0.1", port)), options);
    auto hello = co_await client.get("/v1/hello");
    EXPECT_TRUE(hello && hello->status == 200) << (hello ? "" : hello.error().message);
    server.stop();
  });
}

// ---------------------------------------------------------------- each failure says what it is

TEST_F(TlsTest, UnknownCaNamesTheSetting) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0, server_config(server_));
    ClientOptions system_roots;  // no tls_ca_file: the system's CAs, which never signed our test CA
    const auto message = co_await failed_get(io, url_for("https", "127.0.0.1", port), system_roots);
    EXPECT_TRUE(contains(message, "unable to get local issuer certificate")) << message;
    EXPECT_TRUE(contains(message, "issuer 'CN=clawbot test CA'")) << message;
    EXPECT_TRUE(contains(message, "set tls_ca_file to the CA that signed it")) << message;
    EXPECT_TRUE(contains(message, url_for("https", "127.0.0.1", port))) << message;

    ClientOptions wrong_ca;
    wrong_ca.tls_ca_file = other_ca_.cert_file;
    const auto wrong = co_await failed_get(io, url_for("https", "127.0.0.1", port), wrong_ca);
    EXPECT_TRUE(contains(wrong, "unable to get local issuer certificate")) << wrong;
    server.stop();
  });
}

TEST_F(TlsTest, SelfSignedCertificateIsNamed) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0, server_config(self_signed_));
    const auto message = co_await failed_get(io, url_for("https", "127.0.0.1", port), trusting_options());
    EXPECT_TRUE(contains(message, "self-signed certificate 'CN=localhost'")) << message;
    EXPECT_TRUE(contains(message, "set tls_ca_file")) << message;
    server.stop();
  });
}

TEST_F(TlsTest, ExpiredCertificateSaysWhen) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0, server_config(expired_));
    const auto message = co_await failed_get(io, url_for("https", "127.0.0.1", port), trusting_options());
    const auto not_after = tls::read_certificate_file(expired_.cert_file).not_after;
    EXPECT_TRUE(contains(message, "certificate has expired (notAfter " + tls::format_utc(not_after) +
                                      ") for " + url_for("https", "127.0.0.1", port) +
                                      " — renew the node's certificate"))
        << message;
    server.stop();
  });
}

TEST_F(TlsTest, WrongHostNamesBoth) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0, server_config(wrong_host_));
    const auto by_ip = co_await failed_get(io, url_for("https", "127.0.0.1", port), trusting_options());
    EXPECT_TRUE(contains(by_ip, "certificate is for 'other.example', not '127.0.0.1'")) << by_ip;
    EXPECT_TRUE(contains(by_ip, "use the name on the certificate or reissue it")) << by_ip;
    const auto by_name = co_await failed_get(io, url_for("https", "localhost", port), trusting_options());
    EXPECT_TRUE(contains(by_name, "certificate is for 'other.example', not 'localhost'")) << by_name;
    server.stop();
  });
}

TEST_F(TlsTest, TlsToAPlainHttpPort) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0);
    const auto message = co_await failed_get(io, url_for("https", "127.0.0.1", port), trusting_options());
    EXPECT_TRUE(contains(message,
                         "the server speaks plain HTTP, not TLS — use " + url_for("http", "127.0.0.1", port)))
        << message;
    server.stop();
  });
}

TEST_F(TlsTest, PlainHttpToATlsPortGetsAClearAnswer) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0, server_config(server_));
    // Our server answers a plain request in clear text, as nginx does, and closes.
    Client client(io.get_executor(), *parse_url(url_for("http", "127.0.0.1", port)));
    auto r = co_await client.get("/v1/hello");
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    if (!r) co_return;
    EXPECT_EQ(r->status, 400);
    const auto error = json::parse(r->body)["error"];
    EXPECT_EQ(error["code"], "tls_required");
    EXPECT_TRUE(contains(error["message"], "this port speaks TLS (HTTPS), not plain HTTP — use https://"))
        << r->body;
    EXPECT_FALSE(client.connected());
    // The server is still fine for TLS clients afterwards.
    Client good(io.get_executor(), *parse_url(url_for("https", "127.0.0.1", port)), trusting_options());
    auto hello = co_await good.get("/v1/hello");
    EXPECT_TRUE(hello && hello->status == 200);
    server.stop();
  });
}

TEST_F(TlsTest, PlainHttpToAServerThatAnswersWithATlsAlert) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    // What other TLS servers do with a plain request: a TLS alert record (fatal, protocol_version), then
    // close.
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const auto port = acceptor.local_endpoint().port();
    asio::co_spawn(
        io,
        [&acceptor]() -> asio::awaitable<void> {
          auto socket = co_await acceptor.async_accept(use_awaitable);
          std::array<char, 256> request{};
          co_await socket.async_read_some(asio::buffer(request), use_awaitable);
          static constexpr unsigned char alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46};
          co_await asio::async_write(socket, asio::buffer(alert), use_awaitable);
          socket.shutdown(tcp::socket::shutdown_send);
        },
        asio::detached);
    const ClientOptions plain;  // (a named local: GCC 12 miscompiles braced temporaries inside co_await)
    const auto message = co_await failed_get(io, url_for("http", "127.0.0.1", port), plain);
    EXPECT_TRUE(contains(
        message, "the server speaks TLS, not plain HTTP — use " + url_for("https", "127.0.0.1", port)))
        << message;
  });
}

// ---------------------------------------------------------------- client certificates

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutACertificate) {
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  auto logger =
      std::make_shared<spdlog::logger>("tls-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log));
  logger->set_level(spdlog::level::debug);
  spdlog::set_default_logger(logger);
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    auto config = server_config(server_);
    config.client_ca_file = ca_.cert_file;
    config.require_client_cert = true;
    const auto port = server.listen("127.0.0.1", 0, config);
    const auto url = url_for("https", "127.0.0.1", port);

    const auto without = co_await failed_get(io, url, trusting_options());
    EXPECT_TRUE(contains(without, "requires a client certificate — set tls_cert_file and tls_key_file"))
        << without;

    auto stranger = trusting_options();
    stranger.tls_cert_file = stranger_.cert_file;
    stranger.tls_key_file = stranger_.key_file;
    const auto refused = co_await failed_get(io, url, stranger);
    EXPECT_TRUE(contains(refused, "refused our client certificate")) << refused;

    auto with = trusting_options();
    with.tls_cert_file = client_.cert_file;
    with.tls_key_file = client_.key_file;
    Client client(io.get_executor(), *parse_url(url), with);
    auto hello = co_await client.get("/v1/hello");
    EXPECT_TRUE(hello) << (hello ? "" : hello.error().message);
    if (hello) {
      EXPECT_EQ(hello->status, 200);
      EXPECT_EQ(json::parse(hello->body)["client"], "CN=laptop1");
    }
    server.stop();
  });
  spdlog::set_default_logger(previous);
  const std::string logged = log.str();
  EXPECT_TRUE(contains(logged, "TLS handshake with 127.0.0.1:")) << logged;
  EXPECT_TRUE(contains(logged, "the client sent no certificate")) << logged;
}

// ---------------------------------------------------------------- the server stays responsive

TEST_F(TlsTest, SilentClientsTimeOutWithoutStallingOthers) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    auto config = server_config(server_);
    config.handshake_timeout = std::chrono::milliseconds(300);
    const auto port = server.listen("127.0.0.1", 0, config);
    // Connects and never says anything.
    tcp::socket silent(io);
    co_await silent.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), use_awaitable);
    const auto started = std::chrono::steady_clock::now();
    Client client(io.get_executor(), *parse_url(url_for("https", "127.0.0.1", port)), trusting_options());
    auto hello = co_await client.get("/v1/hello");
    EXPECT_TRUE(hello && hello->status == 200);
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(250));
    std::array<char, 16> sink{};
    auto [ec, n] = co_await silent.async_read_some(asio::buffer(sink), asio::as_tuple(use_awaitable));
    EXPECT_EQ(ec, asio::error::eof) << ec.message();
    EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(250));
    server.stop();
  });
}

// ---------------------------------------------------------------- probe_tls, for doctor

TEST_F(TlsTest, ProbeReportsTheCertificateFacts) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    auto config = server_config(server_);
    config.client_ca_file = ca_.cert_file;  // asks for client certificates, does not require one
    const auto port = server.listen("127.0.0.1", 0, config);
    auto facts = co_await probe_tls(io.get_executor(), *parse_url(url_for("https", "127.0.0.1", port)),
                                    trusting_options());
    EXPECT_TRUE(facts) << (facts ? "" : facts.error().message);
    if (!facts) co_return;
    EXPECT_EQ(facts->protocol, "TLSv1.3");
    EXPECT_FALSE(facts->cipher.empty());
    EXPECT_TRUE(facts->verified) << facts->problem;
    EXPECT_EQ(facts->problem, "");
    EXPECT_EQ(facts->client_ca_names, std::vector<std::string>{"CN=clawbot test CA"});
    EXPECT_FALSE(facts->chain.empty());
    if (facts->chain.empty()) co_return;
    const auto& leaf = facts->chain.front();
    EXPECT_EQ(leaf.subject, "CN=localhost");
    EXPECT_EQ(leaf.issuer, "CN=clawbot test CA");
    EXPECT_EQ(leaf.dns_names, std::vector<std::string>{"localhost"});
    EXPECT_EQ(leaf.ip_addresses, std::vector<std::string>{"127.0.0.1"});
    const auto now = std::chrono::system_clock::now();
    EXPECT_LT(leaf.not_before, now);
    EXPECT_GT(leaf.not_after, now + std::chrono::hours(23));
    EXPECT_LT(leaf.not_after, now + std::chrono::hours(25));
    EXPECT_EQ(leaf.sha256_fingerprint.size(), 32u * 3 - 1);
    EXPECT_FALSE(leaf.self_signed);
    server.stop();
  });
}

TEST_F(TlsTest, ProbeDescribesAnUntrustedCertificateInsteadOfFailing) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0, server_config(expired_));
    auto facts = co_await probe_tls(io.get_executor(), *parse_url(url_for("https", "127.0.0.1", port)),
                                    trusting_options());
    EXPECT_TRUE(facts) << (facts ? "" : facts.error().message);
    if (!facts) co_return;
    EXPECT_FALSE(facts->verified);
    EXPECT_EQ(facts->verify_error, X509_V_ERR_CERT_HAS_EXPIRED);
    EXPECT_EQ(facts->verify_error_text, "certificate has expired");
    EXPECT_TRUE(contains(facts->problem, "renew the node's certificate")) << facts->problem;
    EXPECT_TRUE(facts->client_ca_names.empty());
    EXPECT_LT(facts->chain.at(0).not_after, std::chrono::system_clock::now());

    Server plain(io, test_router(), ServerLimits{});
    const auto plain_port = plain.listen("127.0.0.1", 0);
    auto none = co_await probe_tls(io.get_executor(), *parse_url(url_for("http", "127.0.0.1", plain_port)),
                                   trusting_options());
    EXPECT_FALSE(none);
    if (!none) {
      EXPECT_TRUE(contains(none.error().message, "speaks plain HTTP")) << none.error().message;
    }
    server.stop();
    plain.stop();
  });
}

// ---------------------------------------------------------------- files that cannot be used

TEST_F(TlsTest, UnusableFilesAreNamed) {
  auto missing = server_config(server_);
  missing.cert_file = (dir_ / "nope.pem").string();
  try {
    tls::make_server_context(missing);
    ADD_FAILURE() << "a missing certificate was accepted";
  } catch (const tls::TlsError& e) {
    EXPECT_TRUE(contains(e.what(), "cannot read the TLS certificate '" + missing.cert_file + "'"))
        << e.what();
    EXPECT_TRUE(contains(e.what(), "No such file")) << e.what();
  }
  auto mismatched = server_config(server_);
  mismatched.key_file = client_.key_file;
  try {
    tls::make_server_context(mismatched);
    ADD_FAILURE() << "a key of another certificate was accepted";
  } catch (const tls::TlsError& e) {
    EXPECT_TRUE(contains(e.what(), "does not belong to the certificate")) << e.what();
  }
  auto not_pem = server_config(server_);
  not_pem.cert_file = (dir_ / "not-pem.txt").string();
  std::ofstream(not_pem.cert_file) << "hello\n";
  EXPECT_THROW(tls::make_server_context(not_pem), tls::TlsError);
  auto require_without_ca = server_config(server_);
  require_without_ca.require_client_cert = true;
  EXPECT_THROW(tls::make_server_context(require_without_ca), tls::TlsError);

  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    ClientOptions options;
    options.tls_ca_file = (dir_ / "no-ca.pem").string();
    const auto message = co_await failed_get(io, "https://127.0.0.1:1", options);
    EXPECT_TRUE(contains(message, "cannot read tls_ca_file '" + options.tls_ca_file + "'")) << message;
  });
}

TEST(ParseHttpsUrlTest, DefaultPortAndOrigin) {
  auto u = parse_url("https://node.lan/v1");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_TRUE(u->is_https());
  EXPECT_EQ(u->port, "443");
  EXPECT_EQ(u->origin(), "https://node.lan:443");
  u = parse_url("HTTPS://[::1]:8443");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->port, "8443");
}

}  // namespace
}  // namespace clawbot::http
