#include "common/tls.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>

namespace clawbot::tls {
namespace {

// RAII for the OpenSSL objects this file creates.
struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* names) const { GENERAL_NAMES_free(names); }
};
struct BignumFree {
  void operator()(BIGNUM* bn) const { BN_free(bn); }
};
struct OpensslStringFree {
  void operator()(char* s) const { OPENSSL_free(s); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, GeneralNamesFree>;
using BignumPtr = std::unique_ptr<BIGNUM, BignumFree>;
using OpensslString = std::unique_ptr<char, OpensslStringFree>;

// OpenSSL's reason for the last failure, and an empty error queue afterwards.
std::string openssl_reason() {
  unsigned long last = 0;
  while (const unsigned long e = ERR_get_error()) last = e;
  if (last == 0) return "unknown OpenSSL error";
  if (ERR_SYSTEM_ERROR(last)) return std::strerror(ERR_GET_REASON(last));
  const char* reason = ERR_reason_error_string(last);
  return reason ? reason : "OpenSSL error " + std::to_string(last);
}

// A missing or unreadable file gets the system's reason, which says more than OpenSSL's "system lib".
void check_readable(const std::string& path, std::string_view what) {
  if (path.empty()) throw TlsError(std::string(what) + ": no file given");
  std::ifstream file(path);
  if (!file) throw TlsError("cannot read " + std::string(what) + " '" + path + "': " + std::strerror(errno));
}

std::string common_name(const X509_NAME* name) {
  const int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return {};
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)),
                     static_cast<std::size_t>(ASN1_STRING_length(data)));
}

// Loads the private key for the certificate already in `context`; `key_name` and `cert_name` are how the
// user knows the two files ("the TLS key", "tls_key_file").
void use_private_key(SSL_CTX* context, const std::string& key_file, std::string_view key_name,
                     const std::string& cert_file, std::string_view cert_name) {
  const bool loaded = SSL_CTX_use_PrivateKey_file(context, key_file.c_str(), SSL_FILETYPE_PEM) == 1;
  const bool mismatch = loaded ? SSL_CTX_check_private_key(context) != 1
                               : ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
  if (mismatch) {
    ERR_clear_error();
    throw TlsError(std::string(key_name) + " '" + key_file + "' does not belong to " +
                   std::string(cert_name) + " '" + cert_file + "'");
  }
  if (!loaded) {
    throw TlsError("cannot use " + std::string(key_name) + " '" + key_file + "': " + openssl_reason() +
                   " (expected an unencrypted PEM private key)");
  }
}

std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* when) {
  std::tm parts{};
  if (!when || ASN1_TIME_to_tm(when, &parts) != 1) return {};
  return std::chrono::system_clock::from_time_t(timegm(&parts));
}

std::string quoted_list(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) {
    if (!out.empty()) out += ", ";
    out += "'" + name + "'";
  }
  return out.empty() ? "no name" : out;
}

unsigned long ssl_reason(beast::error_code ec) {
  return ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
}

bool is_ssl_error(beast::error_code ec) {
  return ec.category() == asio::error::get_ssl_category();
}

// Remembers the first record header the server sent: "HTTP/" there means a plain HTTP server answered.
void record_header_callback(int write_p, int, int content_type, const void* buf, std::size_t len, SSL*,
                            void* arg) {
  auto* record = static_cast<VerifyRecord*>(arg);
  if (write_p || content_type != SSL3_RT_HEADER || !record->first_record_header.empty()) return;
  record->first_record_header.assign(static_cast<const char*>(buf), std::min<std::size_t>(len, 5));
}

}  // namespace

// ---------------------------------------------------------------- contexts

std::shared_ptr<asio::ssl::context> make_server_context(const ServerConfig& config) {
  if (config.cert_file.empty() || config.key_file.empty()) {
    throw TlsError("TLS needs both a certificate file and its private key file");
  }
  check_readable(config.cert_file, "the TLS certificate");
  check_readable(config.key_file, "the TLS key");
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = context->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(native, config.cert_file.c_str()) != 1) {
    throw TlsError("cannot use the TLS certificate '" + config.cert_file + "': " + openssl_reason() +
                   " (expected PEM: the certificate, then its intermediates)");
  }
  use_private_key(native, config.key_file, "the TLS key", config.cert_file, "the certificate");
  if (config.require_client_cert && config.client_ca_file.empty()) {
    throw TlsError("requiring client certificates needs the CA file that signs them");
  }
  if (!config.client_ca_file.empty()) {
    check_readable(config.client_ca_file, "the client CA file");
    if (SSL_CTX_load_verify_locations(native, config.client_ca_file.c_str(), nullptr) != 1) {
      throw TlsError("cannot use the client CA file '" + config.client_ca_file + "': " + openssl_reason());
    }
    // The CAs named in the certificate request: clients pick a certificate one of them signed.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config.client_ca_file.c_str())) {
      SSL_CTX_set_client_CA_list(native, names);
    }
    ERR_clear_error();
    SSL_CTX_set_verify(native,
                       SSL_VERIFY_PEER | (config.require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                       nullptr);
    // Resumed sessions with client verification need an id context, or OpenSSL refuses them.
    static constexpr unsigned char session_context[] = "clawbot";
    SSL_CTX_set_session_id_context(native, session_context, sizeof session_context - 1);
  }
  return context;
}

std::shared_ptr<asio::ssl::context> make_client_context(const ClientConfig& config) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX* native = context->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  if (config.ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(native) != 1) ERR_clear_error();  // then nothing is trusted
  } else {
    check_readable(config.ca_file, "tls_ca_file");
    if (SSL_CTX_load_verify_locations(native, config.ca_file.c_str(), nullptr) != 1) {
      throw TlsError("cannot use tls_ca_file '" + config.ca_file + "': " + openssl_reason() +
                     " (expected PEM CA certificates)");
    }
  }
  if (!config.cert_file.empty()) {
    const std::string& key_file = config.key_file.empty() ? config.cert_file : config.key_file;
    check_readable(config.cert_file, "tls_cert_file");
    check_readable(key_file, "tls_key_file");
    if (SSL_CTX_use_certificate_chain_file(native, config.cert_file.c_str()) != 1) {
      throw TlsError("cannot use tls_cert_file '" + config.cert_file + "': " + openssl_reason());
    }
    use_private_key(native, key_file, "tls_key_file", config.cert_file, "tls_cert_file");
  } else if (!config.key_file.empty()) {
    throw TlsError("tls_key_file is set without tls_cert_file; give both for a client certificate");
  }
  return context;
}

// ---------------------------------------------------------------- certificate facts

std::string name_text(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || !name) return {};
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

CertificateFacts certificate_facts(X509* certificate) {
  CertificateFacts facts;
  if (!certificate) return facts;
  facts.subject = name_text(X509_get_subject_name(certificate));
  facts.issuer = name_text(X509_get_issuer_name(certificate));
  facts.common_name = common_name(X509_get_subject_name(certificate));
  facts.not_before = to_time_point(X509_get0_notBefore(certificate));
  facts.not_after = to_time_point(X509_get0_notAfter(certificate));
  facts.self_signed = X509_self_signed(certificate, 0) == 1;
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type == GEN_DNS) {
      const ASN1_STRING* dns = name->d.dNSName;
      facts.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                                   static_cast<std::size_t>(ASN1_STRING_length(dns)));
    } else if (name->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      const int length = ASN1_STRING_length(ip);
      char text[INET6_ADDRSTRLEN] = {};
      if ((length == 4 || length == 16) &&
          inet_ntop(length == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text, sizeof text)) {
        facts.ip_addresses.emplace_back(text);
      }
    }
  }
  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate), nullptr));
  if (serial) {
    OpensslString hex(BN_bn2hex(serial.get()));
    if (hex) facts.serial = hex.get();
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (X509_digest(certificate, EVP_sha256(), digest, &digest_size) == 1) {
    static constexpr char hex_digits[] = "0123456789ABCDEF";
    for (unsigned int i = 0; i < digest_size; ++i) {
      if (i > 0) facts.sha256_fingerprint.push_back(':');
      facts.sha256_fingerprint.push_back(hex_digits[digest[i] >> 4]);
      facts.sha256_fingerprint.push_back(hex_digits[digest[i] & 0xF]);
    }
  }
  return facts;
}

std::vector<std::string> certificate_names(const CertificateFacts& facts) {
  std::vector<std::string> names = facts.dns_names;
  names.insert(names.end(), facts.ip_addresses.begin(), facts.ip_addresses.end());
  if (names.empty() && !facts.common_name.empty()) names.push_back(facts.common_name);
  return names;
}

CertificateFacts read_certificate_file(const std::string& path) {
  check_readable(path, "the certificate");
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) throw TlsError("cannot read the certificate '" + path + "': " + openssl_reason());
  X509Ptr certificate(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!certificate) throw TlsError("'" + path + "' holds no PEM certificate: " + openssl_reason());
  return certificate_facts(certificate.get());
}

std::string format_utc(std::chrono::system_clock::time_point when) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm parts{};
  gmtime_r(&seconds, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &parts);
  return text;
}

// ---------------------------------------------------------------- one connection's verification

void prepare_client(beast::ssl_stream<beast::tcp_stream>& stream, const std::string& host, bool verify,
                    VerifyRecord& record) {
  SSL* ssl = stream.native_handle();
  boost::system::error_code not_an_address;
  asio::ip::make_address(host, not_an_address);
  if (not_an_address) {
    SSL_set_tlsext_host_name(ssl, host.c_str());  // SNI is for names only (RFC 6066)
    SSL_set1_host(ssl, host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
  }
  SSL_set_msg_callback(ssl, &record_header_callback);
  SSL_set_msg_callback_arg(ssl, &record);
  // Verification always runs, so that a failure is recorded with its certificate; `verify` decides only
  // whether it ends the handshake.
  stream.set_verify_mode(asio::ssl::verify_peer);
  stream.set_verify_callback([&record, verify](bool preverified, asio::ssl::verify_context& context) {
    if (!preverified && record.error == X509_V_OK) {
      X509_STORE_CTX* store = context.native_handle();
      record.error = X509_STORE_CTX_get_error(store);
      record.error_depth = X509_STORE_CTX_get_error_depth(store);
      record.failed_certificate = certificate_facts(X509_STORE_CTX_get_current_cert(store));
    }
    return verify ? preverified : true;
  });
}

std::string describe_verify_error(const VerifyRecord& record, std::string_view origin,
                                  std::string_view host) {
  const std::string at(origin);
  const CertificateFacts& cert = record.failed_certificate;
  switch (record.error) {
    case X509_V_OK:
      return {};
    case X509_V_ERR_CERT_HAS_EXPIRED:
      if (record.error_depth > 0) {
        return "the CA certificate '" + cert.subject + "' has expired (notAfter " +
               format_utc(cert.not_after) + ") for " + at +
               " — renew the CA and reissue the node's certificate";
      }
      return "certificate has expired (notAfter " + format_utc(cert.not_after) + ") for " + at +
             " — renew the node's certificate";
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return "certificate is not valid before " + format_utc(cert.not_before) + " for " + at +
             " — check the clocks of this machine and of the node";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
      return "self-signed certificate '" + cert.subject + "' for " + at +
             " — set tls_ca_file to the CA that signed it (for a self-signed certificate, to the certificate "
             "itself)";
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return "self-signed certificate in the chain ('" + cert.subject + "') for " + at +
             ", not a CA this client trusts — set tls_ca_file to the CA that signed it";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      return "unable to get local issuer certificate (issuer '" + cert.issuer + "') for " + at +
             " — set tls_ca_file to the CA that signed it";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return "certificate is for " + quoted_list(certificate_names(cert)) + ", not '" + std::string(host) +
             "' (" + at + ") — use the name on the certificate or reissue it";
    default:
      return "certificate verification failed for " + at + ": " +
             X509_verify_cert_error_string(record.error) + " (certificate '" + cert.subject + "')";
  }
}

std::string describe_client_failure(beast::error_code ec, const VerifyRecord& record, std::string_view origin,
                                    std::string_view host) {
  const std::string at(origin);
  if (record.error != X509_V_OK) return describe_verify_error(record, origin, host);
  if (record.first_record_header.starts_with("HTTP/")) {
    std::string plain = at;
    if (plain.starts_with("https://")) plain.replace(0, 8, "http://");
    return "the server speaks plain HTTP, not TLS — use " + plain;
  }
  if (ec == asio::ssl::error::stream_truncated || ec == asio::error::eof ||
      ec == asio::error::connection_reset) {
    return at + " closed the connection during TLS (" + ec.message() +
           ") — is this port TLS, and does the server want a client certificate (tls_cert_file)?";
  }
  if (!is_ssl_error(ec)) return "TLS with " + at + " failed: " + ec.message();
  switch (ssl_reason(ec)) {
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
      return at + " does not speak TLS on this port (it answered something else) — check the port";
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return at +
             " requires a client certificate — set tls_cert_file and tls_key_file to one signed by a CA "
             "it trusts";
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
      return at + " refused our client certificate (" + ec.message() +
             ") — use a tls_cert_file signed by a CA the server trusts, and still valid";
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
      return at + " refused the TLS handshake (" + ec.message() +
             ") — it may require a client certificate (tls_cert_file), or share no cipher or TLS version";
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_UNSUPPORTED_PROTOCOL:
      return "no TLS version in common with " + at + " (this client needs TLS 1.2 or newer)";
    default:
      return "TLS with " + at + " failed: " + ec.message();
  }
}

bool is_plain_http_request(beast::error_code ec) {
  return is_ssl_error(ec) && ssl_reason(ec) == SSL_R_HTTP_REQUEST;
}

std::string describe_server_failure(beast::error_code ec, SSL* ssl) {
  if (ec == beast::error::timeout) return "no handshake within the time limit";
  if (!is_ssl_error(ec)) return ec.message();
  switch (ssl_reason(ec)) {
    case SSL_R_HTTP_REQUEST:
      return "a plain HTTP request on the TLS port";
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
      return "the client sent no certificate (one is required)";
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
      if (ssl) {
        return std::string("the client's certificate was refused: ") +
               X509_verify_cert_error_string(SSL_get_verify_result(ssl));
      }
      return "the client's certificate was refused";
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
      return "the client refused our certificate (" + ec.message() + ")";
    default:
      return ec.message();
  }
}

// ---------------------------------------------------------------- IoDeadline

void IoDeadline::watch(Clock::time_point at) {
  watching_ = true;
  watch_at_ = at;
  timer_.expires_at(at);
  timer_.async_wait([self = shared_from_this(), at](const beast::error_code& ec) {
    if (ec || self->owner_ == nullptr || self->watch_at_ != at) return;  // re-armed, or the stream is gone
    self->watching_ = false;
    if (self->pending_ == 0) return;  // nothing to time out; the next operation watches again
    if (Clock::now() < self->deadline_) {
      self->watch(self->deadline_);  // a later operation moved the deadline on
      return;
    }
    self->expired_ = true;
    self->owner_->tcp().close();  // fails the operations in progress, as Beast's timeout does
  });
}

}  // namespace clawbot::tls
