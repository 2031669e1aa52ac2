// Model-file integrity and encryption at rest: `clawbot verify`, `clawbot encrypt`/`decrypt`, and what
// `clawbot serve` uses to check (--verify) or decrypt (an encrypted --model) a file before libllama loads it.
// No libllama here: this part builds in the front-end-only build too.
//
// Encrypted file format (version 1), all integers little-endian:
//   header, 80 bytes:
//     0  magic "CLAWENC\0" (8)        16  plaintext size (u64)
//     8  format version = 1 (u16)     24  key id (8): SHA-256("clawbot model key id v1" || key)[0..8)
//    10  cipher = 1 (u16)             32  salt (32): random per file
//    12  chunk size (u32)             64  header tag (16): AES-256-GCM over bytes 0..64, no plaintext
//   then the chunks: AES-256-GCM ciphertext of each chunk_size bytes of plaintext (the last one shorter, and
//   an empty file has one empty chunk), each followed by its 16-byte tag.
// The AES key of a file is HKDF-SHA256(key, salt, "clawbot model encryption v1"), so nonces never repeat
// across files under one key. Chunk i's nonce is i (u64, big-endian) followed by 1 for the last chunk and 0
// for the others (u32); the header tag's nonce is twelve 0xff bytes. Every chunk's additional data is the
// whole 80-byte header. So a changed chunk, a chunk moved to another position, a dropped last chunk and a
// changed header each fail authentication, and the key id names a wrong key before any decryption.
//
// Key: 32 bytes, stored in a file as 64 hex characters and a newline (what --gen-key writes, mode 0600), or
// as 32 raw bytes; in an environment variable as 64 hex characters. Never on the command line.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
namespace CLI {
class App;
}

namespace clawbot::ops {

// ---------------------------------------------------------------------------------------------- integrity

struct FileDigests {
  std::string sha256;  // lower-case hex
  std::string md5;     // empty unless asked for
  std::uint64_t size_bytes = 0;
  double seconds = 0.0;
};

// Streams the file through SHA-256 (and MD5). progress: a bar on stderr when it is a terminal.
// Throws ClawbotError naming the file when it cannot be read.
FileDigests hash_file(const std::string& path, bool with_md5, bool progress);

// One line of a SHA256SUMS manifest: "<hex>  <name>", "<hex> *<name>" or "SHA256 (<name>) = <hex>".
struct ManifestEntry {
  std::string sha256;
  std::string name;
  int line = 0;
};
// Throws ClawbotError naming the file and line of anything that is not a sum line, comment or blank.
std::vector<ManifestEntry> read_manifest(const std::string& manifest_path);
// The entry for this file: its path relative to the manifest's directory, else its file name. nullopt when
// none; throws when the file name alone matches several entries.
std::optional<ManifestEntry> find_in_manifest(const std::vector<ManifestEntry>& entries,
                                              const std::string& manifest_path, const std::string& file_path);

// The sum a file is checked against, and where it came from (for messages).
struct ExpectedSum {
  std::string sha256;
  std::string source;        // "--sha256", "sidecar m.gguf.sha256", "manifest SHA256SUMS (line 3)"
  std::string sidecar_name;  // a sidecar in sha256sum format may name a file; empty when it names none
};

struct VerifyOptions {
  std::string model;
  std::string sha256;    // an expected sum given on the command line
  std::string manifest;  // a SHA256SUMS file; empty: SHA256SUMS beside the model, if any
  bool md5 = false;      // also compute MD5 (compared with expect_md5 or MODEL.md5 when present)
  std::string expect_md5;
  bool write = false;  // record the sum in MODEL.sha256 (and MODEL.md5 with --md5)
  bool progress = true;
};

enum class VerifyStatus { match, mismatch, no_reference };

struct VerifyReport {
  VerifyStatus status = VerifyStatus::no_reference;
  FileDigests digests;
  std::optional<ExpectedSum> expected;  // the SHA-256 reference used
  std::string md5_expected;             // and the MD5 one, when there was one
  std::string md5_source;
  bool md5_mismatch = false;
  std::string explanation;           // for a mismatch: what probably happened and what to do
  std::vector<std::string> written;  // sidecars written by --write
};

// The expected SHA-256: --sha256, else --manifest, else MODEL.sha256, else SHA256SUMS beside the model.
// Throws ClawbotError for a malformed value or sidecar, or a manifest that does not list the model.
std::optional<ExpectedSum> find_expected_sha256(const VerifyOptions& options);

// Hashes and compares; throws ClawbotError for unreadable files and bad options.
VerifyReport verify_model_file(const VerifyOptions& options);

// `clawbot verify`: 0 when the sums match (or --write recorded them), 1 on a mismatch, 2 when there is no
// sum to compare with or the command cannot run.
int run_verify(const VerifyOptions& options);

// ---------------------------------------------------------------------------------------------- crypt

inline constexpr std::string_view encrypted_magic{"CLAWENC\0", 8};
inline constexpr std::size_t encrypted_header_bytes = 80;
inline constexpr std::size_t encrypted_tag_bytes = 16;
inline constexpr std::uint32_t encrypted_chunk_default = 1u << 20;
inline constexpr std::uint32_t encrypted_chunk_min = 4096;
inline constexpr std::uint32_t encrypted_chunk_max = 64u << 20;

// Why an encrypted file was refused; each has its own message too.
enum class CryptFailure {
  not_encrypted,        // no magic
  unsupported_version,  // a newer format or cipher
  bad_header,           // impossible field values
  wrong_key,            // the key id differs
  header_tampered,      // the header tag does not authenticate
  chunk_tampered,       // a chunk does not authenticate at its position
  chunks_reordered,     // a chunk authenticates at another position
  truncated,            // shorter than the header says
  trailing_data,        // longer than the header says
  bad_key,              // a key file or variable that holds no key
  io,                   // a file cannot be read or written
};

class CryptError : public ClawbotError {
 public:
  CryptError(CryptFailure failure, const std::string& message)
      : ClawbotError(ErrorKind::internal, message), failure_(failure) {}
  CryptFailure failure() const noexcept { return failure_; }

 private:
  CryptFailure failure_;
};

// A 32-byte key, wiped from memory when destroyed.
class ModelKey {
 public:
  static constexpr std::size_t size = 32;
  explicit ModelKey(std::span<const std::uint8_t, size> bytes);
  ModelKey(const ModelKey&) = default;
  ModelKey& operator=(const ModelKey&) = default;
  ~ModelKey();

  std::span<const std::uint8_t, size> bytes() const noexcept { return bytes_; }
  // First 8 bytes of SHA-256("clawbot model key id v1" || key): names the key without revealing it.
  std::array<std::uint8_t, 8> id() const;
  std::string id_hex() const;

  std::string source;   // "key file k.key", "environment variable CLAWBOT_MODEL_KEY"
  std::string warning;  // e.g. a key file that others can read; empty when none

 private:
  std::array<std::uint8_t, size> bytes_{};
};

// A key from its text: 32 raw bytes or 64 hex characters (surrounding white space ignored).
// Throws CryptError(bad_key) naming `where` and what was found.
ModelKey parse_key(std::span<const std::uint8_t> text, const std::string& where);
ModelKey load_key_file(const std::string& path);
ModelKey load_key_env(const std::string& variable);
// --key-file or --key-env (exactly one); throws CryptError(bad_key) otherwise.
ModelKey load_key(const std::string& key_file, const std::string& key_env);
// Writes a new random key as 64 hex characters, mode 0600; refuses to replace an existing file.
ModelKey generate_key_file(const std::string& path);

struct EncryptedHeader {
  std::uint16_t version = 1;
  std::uint16_t cipher = 1;
  std::uint32_t chunk_size = encrypted_chunk_default;
  std::uint64_t plaintext_size = 0;
  std::array<std::uint8_t, 8> key_id{};
  std::array<std::uint8_t, 32> salt{};
  std::array<std::uint8_t, 16> tag{};

  std::uint64_t chunk_count() const noexcept;
  std::uint64_t encrypted_size() const noexcept;
};

// Whether the file starts with the magic (false for a missing or short file).
bool is_encrypted_file(const std::string& path);
// Parses and checks the fields (not the tag: that needs the key). Throws CryptError.
EncryptedHeader read_encrypted_header(const std::string& path);

struct CryptOptions {
  std::uint32_t chunk_size = encrypted_chunk_default;  // encrypt only: the reader takes it from the header
  int threads = 0;                                     // 0: all cores
  bool progress = false;                               // a bar on stderr when it is a terminal
  bool force = false;                                  // replace an existing output file
};

struct CryptStats {
  std::uint64_t plaintext_bytes = 0;
  double seconds = 0.0;
  int threads = 1;
};

// Writes `output` (through output.partial, renamed when complete). Throws CryptError.
CryptStats encrypt_file(const std::string& input, const std::string& output, const ModelKey& key,
                        const CryptOptions& options);
// Writes the plaintext (mode 0600) only when every chunk authenticated; nothing is left behind otherwise.
CryptStats decrypt_file(const std::string& input, const std::string& output, const ModelKey& key,
                        const CryptOptions& options);

// Decrypts `encrypted` chunk by chunk, in memory, and compares each chunk with the same bytes of `plaintext`:
// the round trip that must hold before the plaintext may go. Throws CryptError (a chunk that differs is
// `io`, naming it; anything the decryption refuses, as decrypt_file would).
CryptStats compare_decrypted(const std::string& encrypted, const ModelKey& key, const std::string& plaintext,
                             const CryptOptions& options);

// The plaintext of an encrypted model in an anonymous, sealed memory file (memfd): never on disk.
class DecryptedModel {
 public:
  DecryptedModel(DecryptedModel&&) noexcept;
  DecryptedModel& operator=(DecryptedModel&&) noexcept;
  DecryptedModel(const DecryptedModel&) = delete;
  DecryptedModel& operator=(const DecryptedModel&) = delete;
  ~DecryptedModel();

  // /proc/self/fd/N: a path that open() and mmap() (so libllama) accept, valid while this object lives.
  std::string path() const;
  int fd() const noexcept { return fd_; }
  const CryptStats& stats() const noexcept { return stats_; }
  // Closes the memfd: a mapping made from it (libllama's mmap) keeps the pages; nothing else does.
  void close() noexcept;

 private:
  friend DecryptedModel decrypt_to_memory(const std::string&, const ModelKey&, const CryptOptions&);
  DecryptedModel() = default;
  int fd_ = -1;
  CryptStats stats_;
};

DecryptedModel decrypt_to_memory(const std::string& input, const ModelKey& key, const CryptOptions& options);

struct EncryptCommand {
  std::string input;
  std::string output;  // default: INPUT.enc
  std::string key_file;
  std::string key_env;
  std::string gen_key;  // --gen-key FILE: only write a new key
  std::uint32_t chunk_size = encrypted_chunk_default;
  int threads = 0;
  bool force = false;
  bool progress = true;
  bool remove_plaintext = false;  // delete INPUT once the .enc decrypts back to exactly its bytes
};
struct DecryptCommand {
  std::string input;
  std::string output;  // default: INPUT without ".enc"
  std::string key_file;
  std::string key_env;
  int threads = 0;
  bool force = false;
  bool progress = true;
};
int run_encrypt(const EncryptCommand& command);
int run_decrypt(const DecryptCommand& command);

// `clawbot encrypt` and `clawbot decrypt` (crypt_cmd.cpp), `clawbot verify` (verify_cmd.cpp) on `app`. After
// parsing, the returned function runs the one given and returns its exit status, or nullopt when the command
// line named another.
std::function<std::optional<int>()> add_crypt_commands(CLI::App& app);
std::function<std::optional<int>()> add_verify_command(CLI::App& app);

// ---------------------------------------------------------------------------------------------- serve

struct ModelLoadChecks {
  bool verify = false;     // serve --verify: refuse unless the file's SHA-256 matches a recorded one
  std::string key_file{};  // for an encrypted model
  std::string key_env{};
  int threads = 0;
};

// What serve hands libllama: the file itself, or its decrypted copy in memory.
struct PreparedModel {
  std::string path;
  std::string name;  // for a decrypted model the encrypted file's name without .enc/.gguf; else empty
  std::optional<DecryptedModel> decrypted;
  std::vector<std::string> log;  // what was checked or decrypted, and what it cost, for the log
};

// Checks (--verify) and decrypts (a file with the magic) before loading. A path that does not exist is passed
// through unchanged (the model check names it). Throws ClawbotError with the refusal.
PreparedModel prepare_model_file(const std::string& path, const ModelLoadChecks& checks);

}  // namespace clawbot::ops
