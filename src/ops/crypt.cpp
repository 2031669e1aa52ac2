// `clawbot encrypt` / `decrypt`: AES-256-GCM in authenticated chunks (the format is described in
// integrity.h). Chunks are independent, so they are sealed and opened on all cores; output goes straight into
// a mapping of the destination (a file, or for serve a memfd), with no copy in between.
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "common/openssl_handles.h"
#include "common/text.h"
#include "ops/file_io.h"
#include "ops/integrity.h"

namespace clawbot::ops {
namespace {

namespace fs = std::filesystem;
using Header80 = std::array<std::uint8_t, encrypted_header_bytes>;
constexpr std::size_t nonce_bytes = 12;
using Nonce = std::array<std::uint8_t, nonce_bytes>;

template <class T>
void put_le(std::uint8_t* out, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out[i] = static_cast<std::uint8_t>(value >> (8 * i));
}
template <class T>
T get_le(const std::uint8_t* in) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    value = static_cast<T>(value | static_cast<T>(T{in[i]} << (8 * i)));
  return value;
}

using text::to_hex;

Header80 encode_header(const EncryptedHeader& header) {
  Header80 bytes{};
  std::memcpy(bytes.data(), encrypted_magic.data(), encrypted_magic.size());
  put_le(bytes.data() + 8, header.version);
  put_le(bytes.data() + 10, header.cipher);
  put_le(bytes.data() + 12, header.chunk_size);
  put_le(bytes.data() + 16, header.plaintext_size);
  std::memcpy(bytes.data() + 24, header.key_id.data(), header.key_id.size());
  std::memcpy(bytes.data() + 32, header.salt.data(), header.salt.size());
  std::memcpy(bytes.data() + 64, header.tag.data(), header.tag.size());
  return bytes;
}

EncryptedHeader decode_header(const Header80& bytes, const std::string& path) {
  EncryptedHeader header;
  header.version = get_le<std::uint16_t>(bytes.data() + 8);
  header.cipher = get_le<std::uint16_t>(bytes.data() + 10);
  header.chunk_size = get_le<std::uint32_t>(bytes.data() + 12);
  header.plaintext_size = get_le<std::uint64_t>(bytes.data() + 16);
  std::memcpy(header.key_id.data(), bytes.data() + 24, header.key_id.size());
  std::memcpy(header.salt.data(), bytes.data() + 32, header.salt.size());
  std::memcpy(header.tag.data(), bytes.data() + 64, header.tag.size());
  if (header.version != 1 || header.cipher != 1) {
    throw CryptError(CryptFailure::unsupported_version,
                     "'" + path + "' uses encryption format version " + std::to_string(header.version) +
                         ", cipher " + std::to_string(header.cipher) +
                         "; this clawbot reads version 1, cipher 1 (AES-256-GCM): use a newer clawbot");
  }
  if (header.chunk_size < encrypted_chunk_min || header.chunk_size > encrypted_chunk_max ||
      header.plaintext_size > (std::uint64_t{1} << 56)) {
    throw CryptError(CryptFailure::bad_header, "'" + path + "' has a damaged header: chunk size " +
                                                   std::to_string(header.chunk_size) + ", plaintext size " +
                                                   std::to_string(header.plaintext_size) + " are impossible");
  }
  return header;
}

Nonce chunk_nonce(std::uint64_t index, bool last) {
  Nonce nonce{};
  for (int i = 0; i < 8; ++i)
    nonce[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(index >> (56 - 8 * i));
  nonce[11] = last ? 1 : 0;
  return nonce;
}

Nonce header_nonce() {
  Nonce nonce;
  nonce.fill(0xff);  // no chunk has it: a chunk nonce ends in 0 or 1
  return nonce;
}

// The AES key of one file: HKDF-SHA256 of the user's key with the file's salt. Wiped when destroyed.
class FileKey {
 public:
  FileKey(const ModelKey& key, std::span<const std::uint8_t, 32> salt) {
    openssl::EvpKdfPtr kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
    if (!kdf) openssl::throw_openssl("OpenSSL has no HKDF");
    openssl::EvpKdfCtxPtr ctx(EVP_KDF_CTX_new(kdf.get()));
    if (!ctx) openssl::throw_openssl("cannot create an HKDF context");
    static constexpr char digest[] = "SHA256";
    static constexpr char info[] = "clawbot model encryption v1";
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(digest), 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<std::uint8_t*>(key.bytes().data()),
                                          key.bytes().size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<std::uint8_t*>(salt.data()),
                                          salt.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info), sizeof info - 1),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_KDF_derive(ctx.get(), bytes_.data(), bytes_.size(), params) != 1)
      openssl::throw_openssl("HKDF derivation failed");
  }
  FileKey(const FileKey&) = delete;
  FileKey& operator=(const FileKey&) = delete;
  ~FileKey() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }
  const std::uint8_t* data() const noexcept { return bytes_.data(); }

 private:
  std::array<std::uint8_t, 32> bytes_{};
};

// One thread's AES-256-GCM context, keyed once; each chunk only sets its nonce.
class ChunkCipher {
 public:
  ChunkCipher(const FileKey& key, bool encrypt) : ctx_(EVP_CIPHER_CTX_new()) {
    static const openssl::EvpCipherPtr cipher(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
    if (!cipher) openssl::throw_openssl("OpenSSL has no AES-256-GCM");
    if (!ctx_) openssl::throw_openssl("cannot create a cipher context");
    const int ok = encrypt ? EVP_EncryptInit_ex2(ctx_.get(), cipher.get(), key.data(), nullptr, nullptr)
                           : EVP_DecryptInit_ex2(ctx_.get(), cipher.get(), key.data(), nullptr, nullptr);
    if (ok != 1) openssl::throw_openssl("cannot key AES-256-GCM");
  }

  // Encrypts in into out (same length) and writes the tag.
  void seal(const Nonce& nonce, std::span<const std::uint8_t> aad, const std::uint8_t* in, std::uint8_t* out,
            std::size_t length, std::uint8_t* tag) {
    int n = 0;
    if (EVP_EncryptInit_ex2(ctx_.get(), nullptr, nullptr, nonce.data(), nullptr) != 1 ||
        EVP_EncryptUpdate(ctx_.get(), nullptr, &n, aad.data(), static_cast<int>(aad.size())) != 1 ||
        (length > 0 && EVP_EncryptUpdate(ctx_.get(), out, &n, in, static_cast<int>(length)) != 1) ||
        EVP_EncryptFinal_ex(ctx_.get(), out + length, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(encrypted_tag_bytes), tag) !=
            1) {
      openssl::throw_openssl("AES-256-GCM encryption failed");
    }
  }

  // Decrypts in into out; false when the tag does not authenticate (out then holds garbage).
  bool open(const Nonce& nonce, std::span<const std::uint8_t> aad, const std::uint8_t* in, std::uint8_t* out,
            std::size_t length, const std::uint8_t* tag) {
    int n = 0;
    if (EVP_DecryptInit_ex2(ctx_.get(), nullptr, nullptr, nonce.data(), nullptr) != 1 ||
        EVP_DecryptUpdate(ctx_.get(), nullptr, &n, aad.data(), static_cast<int>(aad.size())) != 1 ||
        (length > 0 && EVP_DecryptUpdate(ctx_.get(), out, &n, in, static_cast<int>(length)) != 1) ||
        EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(encrypted_tag_bytes),
                            const_cast<std::uint8_t*>(tag)) != 1) {
      openssl::throw_openssl("AES-256-GCM decryption failed");
    }
    const bool ok = EVP_DecryptFinal_ex(ctx_.get(), out + length, &n) == 1;
    ERR_clear_error();  // a failed tag check leaves nothing worth reporting
    return ok;
  }

 private:
  openssl::EvpCipherCtxPtr ctx_;
};

int thread_count(int wanted, std::uint64_t chunks) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = wanted > 0 ? wanted : cores;
  return static_cast<int>(std::clamp<std::uint64_t>(chunks, 1, static_cast<std::uint64_t>(threads)));
}

// Runs process(state, chunk) for every chunk on `threads` threads, each with its own state. After a failure
// no chunk past it is started, but all before it are finished, so the failure rethrown is always that of the
// lowest failing chunk (the same message however the threads ran).
template <class State>
void for_each_chunk(std::uint64_t count, int threads, std::uint64_t plaintext_bytes, std::uint32_t chunk_size,
                    detail::ProgressBar& bar, const std::function<State()>& make_state,
                    const std::function<void(State&, std::uint64_t)>& process) {
  std::atomic<std::uint64_t> next{0};
  std::atomic<std::uint64_t> lowest_failure{UINT64_MAX};
  std::atomic<std::uint64_t> chunks_done{0};
  std::atomic<int> running{threads};
  std::mutex mutex;
  std::exception_ptr failure;
  std::uint64_t failure_chunk = UINT64_MAX;
  auto record = [&](std::uint64_t chunk, std::exception_ptr error) {
    std::lock_guard lock(mutex);
    if (chunk < failure_chunk || !failure) {
      failure = std::move(error);
      failure_chunk = chunk;
    }
    std::uint64_t seen = lowest_failure.load();
    while (chunk < seen && !lowest_failure.compare_exchange_weak(seen, chunk)) {
    }
  };
  auto worker = [&] {
    try {
      State state = make_state();
      for (;;) {
        const std::uint64_t chunk = next.fetch_add(1);
        if (chunk >= count || chunk > lowest_failure.load()) break;
        try {
          process(state, chunk);
        } catch (...) {
          record(chunk, std::current_exception());
          break;
        }
        chunks_done.fetch_add(1, std::memory_order_relaxed);
      }
    } catch (...) {
      record(UINT64_MAX - 1, std::current_exception());
    }
    running.fetch_sub(1);
  };
  {
    std::vector<std::jthread> pool;
    for (int i = 0; i < threads; ++i) pool.emplace_back(worker);
    while (bar.enabled() && running.load() > 0) {  // this thread only draws the progress bar
      bar.update(std::min(plaintext_bytes, chunks_done.load() * chunk_size));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  bar.update(plaintext_bytes);
  bar.finish();
  if (failure) std::rethrow_exception(failure);
}

// Deletes a partly written file unless it is kept.
class RemoveOnFailure {
 public:
  explicit RemoveOnFailure(std::string path) : path_(std::move(path)) {}
  RemoveOnFailure(const RemoveOnFailure&) = delete;
  RemoveOnFailure& operator=(const RemoveOnFailure&) = delete;
  ~RemoveOnFailure() {
    if (!kept_) ::unlink(path_.c_str());
  }
  void keep() noexcept { kept_ = true; }

 private:
  std::string path_;
  bool kept_ = false;
};

[[noreturn]] void throw_io(const std::string& message) {
  throw CryptError(CryptFailure::io, message);
}

// detail::open_regular_file, its failure as CryptError(io).
detail::UniqueFd open_for_crypt(const std::string& path, std::uint64_t& size) {
  try {
    return detail::open_regular_file(path, size);
  } catch (const std::exception& e) {
    throw_io(e.what());
  }
}

// Parses, checks the key and authenticates the header of an encrypted file, then compares its size with the
// header's promise. What is left to do is the chunks.
struct OpenedEncrypted {
  detail::UniqueFd fd;
  EncryptedHeader header;
  Header80 header_bytes{};
  std::unique_ptr<FileKey> file_key;
};

OpenedEncrypted open_encrypted(const std::string& path, const ModelKey& key) {
  OpenedEncrypted opened;
  std::uint64_t size = 0;
  opened.fd = open_for_crypt(path, size);
  opened.header = read_encrypted_header(path);
  opened.header_bytes = encode_header(opened.header);
  const EncryptedHeader& header = opened.header;
  if (header.key_id != key.id()) {
    throw CryptError(CryptFailure::wrong_key, "wrong key for '" + path + "': it was encrypted with key id " +
                                                  to_hex(header.key_id) + ", but " + key.source +
                                                  " has key id " + key.id_hex() +
                                                  " (no decryption was tried)");
  }
  opened.file_key = std::make_unique<FileKey>(key, header.salt);
  ChunkCipher cipher(*opened.file_key, false);
  std::uint8_t nothing[1] = {};
  if (!cipher.open(header_nonce(), std::span(opened.header_bytes.data(), 64), nothing, nothing, 0,
                   header.tag.data())) {
    throw CryptError(
        CryptFailure::header_tampered,
        "the header of '" + path +
            "' failed authentication: it was changed or damaged (the key is right: its id matches)");
  }
  const std::uint64_t expected = header.encrypted_size();
  const std::uint64_t stride = std::uint64_t{header.chunk_size} + encrypted_tag_bytes;
  if (size < expected) {
    const std::uint64_t body = size - encrypted_header_bytes;
    const std::uint64_t whole = body / stride;
    std::string where = body % stride == 0
                            ? "it ends at a chunk boundary after " + std::to_string(whole) + " of " +
                                  std::to_string(header.chunk_count()) + " chunks (the last " +
                                  std::to_string(header.chunk_count() - whole) + " missing)"
                            : "it ends inside chunk " + std::to_string(whole) + " of " +
                                  std::to_string(header.chunk_count()) + " (numbered from 0)";
    throw CryptError(CryptFailure::truncated, "'" + path + "' is truncated: " + std::to_string(size) +
                                                  " bytes of the " + std::to_string(expected) +
                                                  " its header promises; " + where +
                                                  ". An interrupted copy? Copy the encrypted file again.");
  }
  if (size > expected) {
    throw CryptError(CryptFailure::trailing_data,
                     "'" + path + "' has " + std::to_string(size - expected) +
                         " bytes after its last chunk (appended data, or files joined together)");
  }
  return opened;
}

// Called with each decrypted chunk (its plaintext offset and bytes) when decrypting without a destination.
using ChunkCheck = std::function<void(std::uint64_t offset, std::span<const std::uint8_t> plain)>;

// Decrypts every chunk of an opened file into `out` (plaintext_size bytes), or, when `out` is null, hands
// each chunk to `check` instead.
CryptStats decrypt_chunks(OpenedEncrypted& opened, const std::string& path, std::uint8_t* out,
                          int threads_wanted, bool progress, const ChunkCheck& check = {}) {
  const EncryptedHeader& header = opened.header;
  const std::uint64_t count = header.chunk_count();
  const std::uint64_t stride = std::uint64_t{header.chunk_size} + encrypted_tag_bytes;
  const int threads = thread_count(threads_wanted, count);
  detail::ProgressBar bar("decrypt " + fs::path(path).filename().string(), header.plaintext_size, progress);
  struct State {
    ChunkCipher cipher;
    std::vector<std::uint8_t> buffer;
    std::vector<std::uint8_t> plain;  // without `out`: where a chunk is decrypted for `check`
  };
  std::uint8_t scratch[1] = {};
  for_each_chunk<State>(
      count, threads, header.plaintext_size, header.chunk_size, bar,
      [&] {
        return State{ChunkCipher(*opened.file_key, false), std::vector<std::uint8_t>(stride),
                     std::vector<std::uint8_t>(out == nullptr ? header.chunk_size : 0)};
      },
      [&](State& state, std::uint64_t chunk) {
        const std::uint64_t plain_offset = chunk * header.chunk_size;
        const std::size_t length = static_cast<std::size_t>(
            std::min<std::uint64_t>(header.chunk_size, header.plaintext_size - plain_offset));
        const std::size_t got = detail::pread_full(
            opened.fd.get(), std::as_writable_bytes(std::span(state.buffer.data(), length + 16)),
            encrypted_header_bytes + chunk * stride, path);
        if (got != length + encrypted_tag_bytes) throw_io("'" + path + "' shrank while it was read");
        std::uint8_t* dest = length == 0 ? scratch : out != nullptr ? out + plain_offset : state.plain.data();
        const auto aad = std::span<const std::uint8_t>(opened.header_bytes);
        if (state.cipher.open(chunk_nonce(chunk, chunk + 1 == count), aad, state.buffer.data(), dest, length,
                              state.buffer.data() + length)) {
          if (out == nullptr && check) check(plain_offset, std::span<const std::uint8_t>(dest, length));
          return;
        }
        // Would it authenticate at another position? Then the chunks were moved, not changed.
        constexpr std::uint64_t window = 1024;
        const std::uint64_t first = chunk > window ? chunk - window : 0;
        const std::uint64_t last = std::min(count, chunk + window + 1);
        for (std::uint64_t other = first; other < last; ++other) {
          if (other == chunk) continue;
          if (state.cipher.open(chunk_nonce(other, other + 1 == count), aad, state.buffer.data(), dest,
                                length, state.buffer.data() + length)) {
            throw CryptError(CryptFailure::chunks_reordered,
                             "chunk " + std::to_string(chunk) + " of '" + path + "' (of " +
                                 std::to_string(count) + ", numbered from 0) is chunk " +
                                 std::to_string(other) +
                                 ": the chunks were reordered; the file cannot be trusted");
          }
        }
        throw CryptError(CryptFailure::chunk_tampered,
                         "chunk " + std::to_string(chunk) + " of '" + path + "' (of " +
                             std::to_string(count) + ", numbered from 0: bytes " +
                             std::to_string(encrypted_header_bytes + chunk * stride) + " to " +
                             std::to_string(encrypted_header_bytes + chunk * stride + length + 16) +
                             ") failed authentication: it was changed or damaged");
      });
  return CryptStats{header.plaintext_size, bar.elapsed_s(), threads};
}

}  // namespace

// ---------------------------------------------------------------------------------------------- keys

ModelKey::ModelKey(std::span<const std::uint8_t, size> bytes) {
  std::copy(bytes.begin(), bytes.end(), bytes_.begin());
}

ModelKey::~ModelKey() {
  OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

std::array<std::uint8_t, 8> ModelKey::id() const {
  openssl::Digest sha("SHA256");
  static constexpr std::string_view domain = "clawbot model key id v1";
  sha.update(std::as_bytes(std::span(domain.data(), domain.size())));
  sha.update(std::as_bytes(std::span(bytes_)));
  const std::vector<std::uint8_t> digest = sha.finish();
  std::array<std::uint8_t, 8> id{};
  std::copy_n(digest.begin(), id.size(), id.begin());
  return id;
}

std::string ModelKey::id_hex() const {
  return to_hex(id());
}

ModelKey parse_key(std::span<const std::uint8_t> text, const std::string& where) {
  std::array<std::uint8_t, ModelKey::size> bytes{};
  struct Wipe {
    std::array<std::uint8_t, ModelKey::size>& b;
    ~Wipe() { OPENSSL_cleanse(b.data(), b.size()); }
  } wipe{bytes};
  if (text.size() == ModelKey::size) {
    std::copy(text.begin(), text.end(), bytes.begin());
    ModelKey key{std::span<const std::uint8_t, ModelKey::size>(bytes)};
    key.source = where;
    return key;
  }
  auto is_space = [](std::uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  std::size_t first = 0, last = text.size();
  while (first < last && is_space(text[first])) ++first;
  while (last > first && is_space(text[last - 1])) --last;
  const auto hex = text.subspan(first, last - first);
  auto nibble = [](std::uint8_t c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  bool ok = hex.size() == 2 * ModelKey::size;
  for (std::size_t i = 0; ok && i < ModelKey::size; ++i) {
    const int high = nibble(hex[2 * i]), low = nibble(hex[2 * i + 1]);
    ok = high >= 0 && low >= 0;
    if (ok) bytes[i] = static_cast<std::uint8_t>(high << 4 | low);
  }
  if (!ok) {
    throw CryptError(
        CryptFailure::bad_key,
        where + " does not hold a key (" + std::to_string(text.size()) +
            " bytes): a key is 64 hex characters (what `clawbot encrypt --gen-key FILE` writes) or, "
            "in a file, 32 raw bytes");
  }
  ModelKey key{std::span<const std::uint8_t, ModelKey::size>(bytes)};
  key.source = where;
  return key;
}

ModelKey load_key_file(const std::string& path) {
  const std::string where = "key file '" + path + "'";
  detail::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw CryptError(CryptFailure::bad_key, "cannot open " + where + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 4096) {
    throw CryptError(CryptFailure::bad_key, where + " is not a key (not a small regular file)");
  }
  std::array<std::uint8_t, 4096> text{};
  const std::size_t length = detail::pread_full(fd.get(), std::as_writable_bytes(std::span(text)), 0, path);
  struct Wipe {
    std::array<std::uint8_t, 4096>& t;
    ~Wipe() { OPENSSL_cleanse(t.data(), t.size()); }
  } wipe{text};
  ModelKey key = parse_key(std::span(text.data(), length), where);
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    key.warning = where + " can be read by other users (mode " + mode + "): chmod 600 '" + path + "'";
  }
  return key;
}

ModelKey load_key_env(const std::string& variable) {
  const char* value = std::getenv(variable.c_str());
  if (!value || !*value) {
    throw CryptError(CryptFailure::bad_key, "environment variable " + variable +
                                                " is not set (it should hold the key as 64 hex characters)");
  }
  const std::string_view text(value);
  if (text.size() == ModelKey::size) {  // raw bytes cannot travel in an environment variable
    throw CryptError(CryptFailure::bad_key, "environment variable " + variable +
                                                " does not hold a key: it must be 64 hex characters");
  }
  return parse_key(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()),
                   "environment variable " + variable);
}

ModelKey load_key(const std::string& key_file, const std::string& key_env) {
  if (!key_file.empty() && !key_env.empty()) {
    throw CryptError(CryptFailure::bad_key, "give the key with --key-file or --key-env, not both");
  }
  if (!key_file.empty()) return load_key_file(key_file);
  if (!key_env.empty()) return load_key_env(key_env);
  throw CryptError(
      CryptFailure::bad_key,
      "no key: pass --key-file FILE or --key-env NAME (make a key with `clawbot encrypt --gen-key "
      "FILE`; keys are never taken from the command line)");
}

ModelKey generate_key_file(const std::string& path) {
  std::array<std::uint8_t, ModelKey::size> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    openssl::throw_openssl("cannot draw random bytes for a key");
  ModelKey key{std::span<const std::uint8_t, ModelKey::size>(bytes)};
  OPENSSL_cleanse(bytes.data(), bytes.size());
  key.source = "key file '" + path + "'";
  detail::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) {
    throw CryptError(CryptFailure::io,
                     errno == EEXIST ? "'" + path +
                                           "' exists: a key is never overwritten (the files "
                                           "encrypted with it could not be decrypted any more)"
                                     : "cannot create key file '" + path + "': " + std::strerror(errno));
  }
  RemoveOnFailure cleanup(path);
  std::string text = to_hex(key.bytes()) + "\n";
  try {
    detail::pwrite_full(fd.get(), std::as_bytes(std::span(text)), 0, path);
  } catch (const std::exception& e) {
    OPENSSL_cleanse(text.data(), text.size());
    throw_io(e.what());
  }
  OPENSSL_cleanse(text.data(), text.size());
  if (::fchmod(fd.get(), 0600) != 0 || ::fsync(fd.get()) != 0) {
    throw_io("cannot finish key file '" + path + "': " + std::strerror(errno));
  }
  cleanup.keep();
  return key;
}

// ---------------------------------------------------------------------------------------------- format

std::uint64_t EncryptedHeader::chunk_count() const noexcept {
  if (plaintext_size == 0)
    return 1;  // one empty chunk still carries a tag: an empty file is authenticated too
  return (plaintext_size + chunk_size - 1) / chunk_size;
}

std::uint64_t EncryptedHeader::encrypted_size() const noexcept {
  return encrypted_header_bytes + plaintext_size + chunk_count() * encrypted_tag_bytes;
}

bool is_encrypted_file(const std::string& path) {
  detail::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  std::array<std::byte, 8> magic{};
  try {
    return detail::pread_full(fd.get(), magic, 0, path) == magic.size() &&
           std::memcmp(magic.data(), encrypted_magic.data(), magic.size()) == 0;
  } catch (const std::exception&) {
    return false;
  }
}

EncryptedHeader read_encrypted_header(const std::string& path) {
  std::uint64_t size = 0;
  detail::UniqueFd fd = open_for_crypt(path, size);
  Header80 bytes{};
  std::size_t got = 0;
  try {
    got = detail::pread_full(fd.get(), std::as_writable_bytes(std::span(bytes)), 0, path);
  } catch (const std::exception& e) {
    throw_io(e.what());
  }
  if (got < encrypted_magic.size() ||
      std::memcmp(bytes.data(), encrypted_magic.data(), encrypted_magic.size()) != 0) {
    throw CryptError(CryptFailure::not_encrypted, "'" + path +
                                                      "' is not a clawbot encrypted file (it does not start "
                                                      "with the bytes 'CLAWENC')");
  }
  if (got < encrypted_header_bytes) {
    throw CryptError(CryptFailure::truncated, "'" + path + "' is truncated inside its header (" +
                                                  std::to_string(got) + " of " +
                                                  std::to_string(encrypted_header_bytes) + " bytes)");
  }
  return decode_header(bytes, path);
}

// ---------------------------------------------------------------------------------------------- encrypt

CryptStats encrypt_file(const std::string& input, const std::string& output, const ModelKey& key,
                        const CryptOptions& options) {
  if (options.chunk_size < encrypted_chunk_min || options.chunk_size > encrypted_chunk_max) {
    throw CryptError(CryptFailure::bad_header, "chunk size " + std::to_string(options.chunk_size) +
                                                   " is out of range (" +
                                                   std::to_string(encrypted_chunk_min) + " to " +
                                                   std::to_string(encrypted_chunk_max) + " bytes)");
  }
  std::uint64_t size = 0;
  detail::UniqueFd in = open_for_crypt(input, size);
  if (is_encrypted_file(input)) {
    throw CryptError(CryptFailure::io, "'" + input + "' is already encrypted (it starts with 'CLAWENC')");
  }
  std::error_code ec;
  if (fs::equivalent(input, output, ec)) throw_io("the output '" + output + "' is the input");
  if (!options.force && fs::exists(output, ec)) {
    throw_io("'" + output + "' exists; pass --force to replace it");
  }

  EncryptedHeader header;
  header.chunk_size = options.chunk_size;
  header.plaintext_size = size;
  header.key_id = key.id();
  if (RAND_bytes(header.salt.data(), static_cast<int>(header.salt.size())) != 1)
    openssl::throw_openssl("cannot draw a random salt");
  const FileKey file_key(key, header.salt);
  Header80 header_bytes = encode_header(header);
  {
    ChunkCipher cipher(file_key, true);
    std::uint8_t nothing[1] = {};
    cipher.seal(header_nonce(), std::span(header_bytes.data(), 64), nothing, nothing, 0, header.tag.data());
  }
  header_bytes = encode_header(header);

  const std::string partial = output + ".partial";
  detail::UniqueFd out(::open(partial.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out) throw_io("cannot create '" + partial + "': " + std::strerror(errno));
  RemoveOnFailure cleanup(partial);
  const std::uint64_t total = header.encrypted_size();
  std::unique_ptr<detail::WritableMapping> mapping;
  try {
    mapping = std::make_unique<detail::WritableMapping>(out.get(), total, "'" + partial + "'");
  } catch (const std::exception& e) {
    throw_io(e.what());
  }
  auto* dest = reinterpret_cast<std::uint8_t*>(mapping->data());
  std::memcpy(dest, header_bytes.data(), header_bytes.size());

  const std::uint64_t count = header.chunk_count();
  const std::uint64_t stride = std::uint64_t{header.chunk_size} + encrypted_tag_bytes;
  const int threads = thread_count(options.threads, count);
  detail::ProgressBar bar("encrypt " + fs::path(input).filename().string(), size, options.progress);
  struct State {
    ChunkCipher cipher;
    std::vector<std::uint8_t> buffer;
  };
  for_each_chunk<State>(
      count, threads, size, header.chunk_size, bar,
      [&] {
        return State{ChunkCipher(file_key, true), std::vector<std::uint8_t>(header.chunk_size)};
      },
      [&](State& state, std::uint64_t chunk) {
        const std::uint64_t offset = chunk * header.chunk_size;
        const std::size_t length =
            static_cast<std::size_t>(std::min<std::uint64_t>(header.chunk_size, size - offset));
        if (detail::pread_full(in.get(), std::as_writable_bytes(std::span(state.buffer.data(), length)),
                               offset, input) != length) {
          throw_io("'" + input + "' shrank while it was encrypted");
        }
        std::uint8_t* at = dest + encrypted_header_bytes + chunk * stride;
        state.cipher.seal(chunk_nonce(chunk, chunk + 1 == count), header_bytes, state.buffer.data(), at,
                          length, at + length);
      });
  const double seconds = bar.elapsed_s();
  mapping.reset();
  if (::fsync(out.get()) != 0) throw_io("cannot write '" + partial + "': " + std::strerror(errno));
  if (::rename(partial.c_str(), output.c_str()) != 0) {
    throw_io("cannot rename '" + partial + "' to '" + output + "': " + std::strerror(errno));
  }
  cleanup.keep();
  return CryptStats{size, seconds, threads};
}

// ---------------------------------------------------------------------------------------------- decrypt

CryptStats decrypt_file(const std::string& input, const std::string& output, const ModelKey& key,
                        const CryptOptions& options) {
  std::error_code ec;
  if (fs::equivalent(input, output, ec)) throw_io("the output '" + output + "' is the input");
  if (!options.force && fs::exists(output, ec))
    throw_io("'" + output + "' exists; pass --force to replace it");
  OpenedEncrypted opened = open_encrypted(input, key);
  const std::string partial = output + ".partial";
  // The plaintext is the secret: only its owner may read it.
  detail::UniqueFd out(::open(partial.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out) throw_io("cannot create '" + partial + "': " + std::strerror(errno));
  RemoveOnFailure cleanup(partial);
  std::unique_ptr<detail::WritableMapping> mapping;
  try {
    mapping = std::make_unique<detail::WritableMapping>(out.get(), opened.header.plaintext_size,
                                                        "'" + partial + "'");
  } catch (const std::exception& e) {
    throw_io(e.what());
  }
  const CryptStats stats = decrypt_chunks(opened, input, reinterpret_cast<std::uint8_t*>(mapping->data()),
                                          options.threads, options.progress);
  mapping.reset();
  if (::fsync(out.get()) != 0) throw_io("cannot write '" + partial + "': " + std::strerror(errno));
  if (::rename(partial.c_str(), output.c_str()) != 0) {
    throw_io("cannot rename '" + partial + "' to '" + output + "': " + std::strerror(errno));
  }
  cleanup.keep();
  return stats;
}

CryptStats compare_decrypted(const std::string& encrypted, const ModelKey& key, const std::string& plaintext,
                             const CryptOptions& options) {
  OpenedEncrypted opened = open_encrypted(encrypted, key);
  std::uint64_t size = 0;
  detail::UniqueFd original = open_for_crypt(plaintext, size);
  if (size != opened.header.plaintext_size) {
    throw_io("'" + encrypted + "' holds " + std::to_string(opened.header.plaintext_size) + " bytes, but '" +
             plaintext + "' has " + std::to_string(size) + ": it is not this file's encryption");
  }
  const ChunkCheck same = [&](std::uint64_t offset, std::span<const std::uint8_t> plain) {
    std::vector<std::uint8_t> expected(plain.size());
    if (detail::pread_full(original.get(), std::as_writable_bytes(std::span(expected)), offset, plaintext) !=
            plain.size() ||
        !std::equal(plain.begin(), plain.end(), expected.begin())) {
      throw_io("the decrypted bytes at offset " + std::to_string(offset) + " of '" + encrypted +
               "' differ from '" + plaintext + "' (was it changed during the encryption?)");
    }
  };
  return decrypt_chunks(opened, encrypted, nullptr, options.threads, options.progress, same);
}

DecryptedModel::DecryptedModel(DecryptedModel&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), stats_(other.stats_) {}

DecryptedModel& DecryptedModel::operator=(DecryptedModel&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    stats_ = other.stats_;
  }
  return *this;
}

DecryptedModel::~DecryptedModel() {
  close();
}

void DecryptedModel::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string DecryptedModel::path() const {
  return "/proc/self/fd/" + std::to_string(fd_);
}

DecryptedModel decrypt_to_memory(const std::string& input, const ModelKey& key, const CryptOptions& options) {
  OpenedEncrypted opened = open_encrypted(input, key);
  // Anonymous memory with a file's interface: no name in any file system, gone with its last reference.
  detail::UniqueFd memfd(::memfd_create("clawbot-decrypted-model", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!memfd)
    throw_io(std::string("cannot create an in-memory file (memfd_create): ") + std::strerror(errno));
  CryptStats stats;
  {
    std::unique_ptr<detail::WritableMapping> mapping;
    try {
      mapping = std::make_unique<detail::WritableMapping>(memfd.get(), opened.header.plaintext_size,
                                                          "the decrypted model in memory");
    } catch (const std::exception& e) {
      throw_io(e.what());
    }
    stats = decrypt_chunks(opened, input, reinterpret_cast<std::uint8_t*>(mapping->data()), options.threads,
                           options.progress);
  }
  // Read-only from now on: nothing can change the weights libllama maps.
  if (::fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    throw_io(std::string("cannot seal the decrypted model: ") + std::strerror(errno));
  }
  DecryptedModel model;
  model.fd_ = memfd.release();
  model.stats_ = stats;
  return model;
}

}  // namespace clawbot::ops
