// The CLAWENC reader (src/ops/crypt.cpp): an encrypted model file's header and chunks as `serve` decrypts
// them into memory, and key files (parse_key). Any bytes are a model or a CryptError naming why not; never a
// crash or an allocation the header merely claims. The key is fixed, so inputs mutated from the seeds (files
// encrypted under it) reach the chunk checks.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ops/integrity.h"
#include "seed_writer.h"

namespace {

using namespace clawbot::ops;

const ModelKey& fuzz_key() {
  static const ModelKey key = [] {
    std::array<std::uint8_t, ModelKey::size> bytes{};
    bytes.fill(0x42);
    ModelKey k{std::span<const std::uint8_t, ModelKey::size>(bytes)};
    k.source = "the fuzz key";
    return k;
  }();
  return key;
}

void write_seeds(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  const fs::path plain = clawbot::fuzz::scratch_dir() / "plain";
  int n = 0;
  for (const std::size_t size : {std::size_t{0}, std::size_t{100}, std::size_t{4096}, std::size_t{5000}}) {
    std::string bytes(size, '\0');
    for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(i * 31 + 7);
    clawbot::fuzz::write_file(plain, bytes);
    CryptOptions options;
    options.chunk_size = encrypted_chunk_min;
    options.threads = 1;
    options.force = true;
    encrypt_file(plain.string(), (dir / ("encrypted-" + std::to_string(n++))).string(), fuzz_key(), options);
  }
  clawbot::fuzz::write_file(dir / "key-hex", std::string(64, 'a') + "\n");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  clawbot::fuzz::write_seeds_if_asked(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = (clawbot::fuzz::scratch_dir() / "input").string();
  clawbot::fuzz::write_file(path, std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    (void)parse_key(std::span(data, size), "fuzz key file");
  } catch (const CryptError& e) {
    if (e.failure() != CryptFailure::bad_key) __builtin_trap();
  }
  (void)is_encrypted_file(path);
  try {
    const EncryptedHeader header = read_encrypted_header(path);
    (void)header.encrypted_size();
    CryptOptions options;
    options.threads = 1;
    const DecryptedModel model = decrypt_to_memory(path, fuzz_key(), options);
    if (model.stats().plaintext_bytes != header.plaintext_size) __builtin_trap();
  } catch (const CryptError&) {
  }
  return 0;
}
