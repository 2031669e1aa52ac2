// RAII over the OpenSSL 3 EVP handles (model verify and encryption, the gateway's key hashes), and the one
// way their errors become text.
#pragma once

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/text.h"

namespace clawbot::openssl {

struct EvpMdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};
struct EvpMdDeleter {
  void operator()(EVP_MD* md) const noexcept { EVP_MD_free(md); }
};
struct EvpCipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const noexcept { EVP_CIPHER_CTX_free(ctx); }
};
struct EvpCipherDeleter {
  void operator()(EVP_CIPHER* cipher) const noexcept { EVP_CIPHER_free(cipher); }
};
struct EvpKdfDeleter {
  void operator()(EVP_KDF* kdf) const noexcept { EVP_KDF_free(kdf); }
};
struct EvpKdfCtxDeleter {
  void operator()(EVP_KDF_CTX* ctx) const noexcept { EVP_KDF_CTX_free(ctx); }
};

using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter>;
using EvpMdPtr = std::unique_ptr<EVP_MD, EvpMdDeleter>;
using EvpCipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, EvpCipherCtxDeleter>;
using EvpCipherPtr = std::unique_ptr<EVP_CIPHER, EvpCipherDeleter>;
using EvpKdfPtr = std::unique_ptr<EVP_KDF, EvpKdfDeleter>;
using EvpKdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, EvpKdfCtxDeleter>;

// "what failed: OpenSSL's reason" (the error queue is drained, so the next failure reports only itself).
inline std::string openssl_failure(std::string_view what) {
  std::string message(what);
  unsigned long code = 0;
  bool first = true;
  while ((code = ERR_get_error()) != 0) {
    char reason[256];
    ERR_error_string_n(code, reason, sizeof reason);
    message += first ? ": " : "; ";
    message += reason;
    first = false;
  }
  return message;
}

[[noreturn]] inline void throw_openssl(std::string_view what) {
  throw ClawbotError(ErrorKind::internal, openssl_failure(what));
}

// A message digest fetched once (SHA256, MD5) with a context to stream data through it.
class Digest {
 public:
  explicit Digest(const char* name) : md_(EVP_MD_fetch(nullptr, name, nullptr)), ctx_(EVP_MD_CTX_new()) {
    if (!md_) throw_openssl(std::string("OpenSSL has no ") + name + " digest");
    if (!ctx_ || EVP_DigestInit_ex2(ctx_.get(), md_.get(), nullptr) != 1)
      throw_openssl(std::string("cannot start a ") + name + " digest");
  }
  void update(std::span<const std::byte> data) {
    if (EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) != 1) throw_openssl("digest update failed");
  }
  std::vector<std::uint8_t> finish() {
    std::vector<std::uint8_t> out(EVP_MAX_MD_SIZE);
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), out.data(), &len) != 1) throw_openssl("digest final failed");
    out.resize(len);
    return out;
  }
  // The digest in lower-case hex.
  std::string finish_hex() { return text::to_hex(finish()); }

 private:
  EvpMdPtr md_;
  EvpMdCtxPtr ctx_;
};

}  // namespace clawbot::openssl
