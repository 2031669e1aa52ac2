// The encrypted-file format: byte-identical round trips at the sizes around chunk boundaries, and each kind
// of damage (a changed chunk or header, truncation, reordered chunks, extra bytes, a wrong key) refused with
// its own message. Small chunks (4 KiB) keep every file tiny.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ops/integrity.h"

#include "../support/temp_dir.h"

namespace clawbot::ops {
namespace {

namespace fs = std::filesystem;
constexpr std::uint32_t chunk = encrypted_chunk_min;  // 4096
constexpr std::size_t stride = chunk + encrypted_tag_bytes;

using TempDir = clawbot::testing::TempDir;

std::vector<char> random_bytes(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<char> data(size);
  for (auto& c : data) c = static_cast<char>(rng());
  return data;
}

void write_file(const std::string& path, const std::vector<char>& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

ModelKey test_key(std::uint8_t fill) {
  std::array<std::uint8_t, 32> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(fill + i);
  ModelKey key{std::span<const std::uint8_t, 32>(bytes)};
  key.source = "the test key";
  return key;
}

class CryptTest : public ::testing::Test {
 protected:
  // Encrypts `size` random bytes; returns the encrypted file's path.
  std::string encrypt(std::size_t size, int threads = 2) {
    plaintext_ = random_bytes(size, static_cast<unsigned>(size) + 1);
    write_file(dir_ / "model.gguf", plaintext_);
    CryptOptions options;
    options.chunk_size = chunk;
    options.threads = threads;
    options.force = true;
    encrypt_file(dir_ / "model.gguf", dir_ / "model.gguf.enc", key_, options);
    return dir_ / "model.gguf.enc";
  }

  // Decrypting must fail with this failure; returns the message. No output may be left behind.
  std::string refused(const std::string& encrypted, CryptFailure expected, const ModelKey& key) {
    const std::string output = dir_ / "out.gguf";
    fs::remove(output);
    try {
      decrypt_file(encrypted, output, key, CryptOptions{.threads = 3, .force = true});
    } catch (const CryptError& e) {
      EXPECT_EQ(static_cast<int>(e.failure()), static_cast<int>(expected)) << e.what();
      EXPECT_FALSE(fs::exists(output)) << "plaintext written despite: " << e.what();
      EXPECT_FALSE(fs::exists(output + ".partial")) << "partial plaintext left behind";
      return e.what();
    }
    ADD_FAILURE() << "decrypting " << encrypted << " succeeded";
    return {};
  }
  std::string refused(const std::string& encrypted, CryptFailure expected) {
    return refused(encrypted, expected, key_);
  }

  static void flip_byte(const std::string& path, std::uint64_t offset) {
    std::fstream file(path, std::ios::binary | std::ios::in | std::ios::out);
    file.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    file.read(&c, 1);
    c = static_cast<char>(c ^ 0x20);
    file.seekp(static_cast<std::streamoff>(offset));
    file.write(&c, 1);
  }

  TempDir dir_{"clawbot-crypt-test-"};
  ModelKey key_ = test_key(1);
  std::vector<char> plaintext_;
};

TEST_F(CryptTest, RoundTripIsByteIdenticalAroundChunkBoundaries) {
  for (const std::size_t size :
       {std::size_t{0}, std::size_t{1}, std::size_t{chunk - 1}, std::size_t{chunk}, std::size_t{chunk + 1},
        std::size_t{5 * chunk + 123}, std::size_t{8 * chunk}}) {
    SCOPED_TRACE("size " + std::to_string(size));
    const std::string encrypted = encrypt(size);
    const EncryptedHeader header = read_encrypted_header(encrypted);
    EXPECT_EQ(header.plaintext_size, size);
    EXPECT_EQ(header.chunk_size, chunk);
    const std::uint64_t chunks = size == 0 ? 1 : (size + chunk - 1) / chunk;
    EXPECT_EQ(header.chunk_count(), chunks);
    EXPECT_EQ(fs::file_size(encrypted), encrypted_header_bytes + size + chunks * encrypted_tag_bytes);
    EXPECT_TRUE(is_encrypted_file(encrypted));
    EXPECT_FALSE(is_encrypted_file(dir_ / "model.gguf"));

    const std::string output = dir_ / "decrypted.gguf";
    const CryptStats stats = decrypt_file(encrypted, output, key_, CryptOptions{.threads = 3, .force = true});
    EXPECT_EQ(stats.plaintext_bytes, size);
    EXPECT_EQ(read_file(output), plaintext_);
    EXPECT_EQ(fs::status(output).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write)
        << "the plaintext must be readable by its owner only";
  }
}

TEST_F(CryptTest, EncryptionIsFreshEachTimeAndTheSameWithAnyThreadCount) {
  encrypt(3 * chunk + 7, 1);
  const auto first = read_file(dir_ / "model.gguf.enc");
  encrypt(3 * chunk + 7, 4);
  const auto second = read_file(dir_ / "model.gguf.enc");
  ASSERT_EQ(first.size(), second.size());
  EXPECT_NE(first, second) << "a new salt (so a new file key) for every encryption";
  EXPECT_EQ(
      decrypt_to_memory(dir_ / "model.gguf.enc", key_, CryptOptions{.threads = 1}).stats().plaintext_bytes,
      plaintext_.size());
}

TEST_F(CryptTest, DecryptsIntoASealedMemoryFileThatOpensByPath) {
  const std::string encrypted = encrypt(6 * chunk + 99);
  DecryptedModel model = decrypt_to_memory(encrypted, key_, CryptOptions{.threads = 2});
  EXPECT_EQ(model.path(), "/proc/self/fd/" + std::to_string(model.fd()));
  EXPECT_EQ(read_file(model.path()), plaintext_) << "open() of /proc/self/fd/N reads the plaintext";
  char link[256] = {};
  ASSERT_GT(::readlink(model.path().c_str(), link, sizeof link - 1), 0);
  EXPECT_EQ(std::string(link).rfind("/memfd:", 0), 0u) << link << ": the plaintext lives in no file system";
  const int writable = ::open(model.path().c_str(), O_WRONLY);
  if (writable >= 0) {
    EXPECT_LT(::write(writable, "x", 1), 0) << "sealed against writes";
    ::close(writable);
  }
}

TEST_F(CryptTest, ChangedChunkIsRefusedNamingIt) {
  const std::string encrypted = encrypt(5 * chunk);
  flip_byte(encrypted, encrypted_header_bytes + 2 * stride + 100);
  const std::string message = refused(encrypted, CryptFailure::chunk_tampered);
  EXPECT_NE(message.find("chunk 2 of"), std::string::npos) << message;
  EXPECT_NE(message.find("failed authentication"), std::string::npos) << message;
}

TEST_F(CryptTest, ChangedTagIsRefusedLikeAChangedChunk) {
  const std::string encrypted = encrypt(2 * chunk + 5);
  flip_byte(encrypted, fs::file_size(encrypted) - 1);  // the last chunk's tag
  EXPECT_NE(refused(encrypted, CryptFailure::chunk_tampered).find("chunk 2 of"), std::string::npos);
}

TEST_F(CryptTest, ChangedHeaderIsRefusedBeforeAnyChunk) {
  const std::string encrypted = encrypt(3 * chunk);
  flip_byte(encrypted, 40);  // the salt
  EXPECT_NE(refused(encrypted, CryptFailure::header_tampered).find("header"), std::string::npos);
  encrypt(3 * chunk);
  flip_byte(encrypted, 16);  // the plaintext size: would otherwise pass off a truncation as complete
  refused(encrypted, CryptFailure::header_tampered);
  encrypt(3 * chunk);
  flip_byte(encrypted, 12);  // the chunk size, still in range
  refused(encrypted, CryptFailure::header_tampered);
  encrypt(3 * chunk);
  flip_byte(encrypted, 70);  // the header tag itself
  refused(encrypted, CryptFailure::header_tampered);
}

TEST_F(CryptTest, HeaderFieldsAreCheckedBeforeTheKey) {
  const std::string encrypted = encrypt(chunk);
  flip_byte(encrypted, 0);
  EXPECT_NE(refused(encrypted, CryptFailure::not_encrypted).find("not a clawbot encrypted file"),
            std::string::npos);
  encrypt(chunk);
  flip_byte(encrypted, 8);  // version 1 -> 33
  EXPECT_NE(refused(encrypted, CryptFailure::unsupported_version).find("version 33"), std::string::npos);
  encrypt(chunk);
  flip_byte(encrypted, 15);  // chunk size far out of range
  refused(encrypted, CryptFailure::bad_header);
}

TEST_F(CryptTest, TruncationAtAChunkBoundaryAndMidChunkAreNamed) {
  const std::string encrypted = encrypt(4 * chunk + 10);
  fs::resize_file(encrypted, encrypted_header_bytes + 3 * stride);
  const std::string boundary = refused(encrypted, CryptFailure::truncated);
  EXPECT_NE(boundary.find("chunk boundary after 3 of 5 chunks"), std::string::npos) << boundary;

  encrypt(4 * chunk + 10);
  fs::resize_file(encrypted, encrypted_header_bytes + 2 * stride + 1000);
  const std::string mid = refused(encrypted, CryptFailure::truncated);
  EXPECT_NE(mid.find("inside chunk 2 of 5"), std::string::npos) << mid;

  encrypt(4 * chunk + 10);
  fs::resize_file(encrypted, 50);
  EXPECT_NE(refused(encrypted, CryptFailure::truncated).find("inside its header"), std::string::npos);
}

TEST_F(CryptTest, SwappedChunksAreNamedAsReordered) {
  const std::string encrypted = encrypt(5 * chunk + 1);
  auto bytes = read_file(encrypted);
  std::swap_ranges(bytes.begin() + static_cast<long>(encrypted_header_bytes + 1 * stride),
                   bytes.begin() + static_cast<long>(encrypted_header_bytes + 2 * stride),
                   bytes.begin() + static_cast<long>(encrypted_header_bytes + 3 * stride));
  write_file(encrypted, bytes);
  const std::string message = refused(encrypted, CryptFailure::chunks_reordered);
  EXPECT_NE(message.find("chunk 1 of"), std::string::npos) << message;
  EXPECT_NE(message.find("is chunk 3"), std::string::npos) << message;
}

TEST_F(CryptTest, ADroppedMiddleChunkIsNotMistakenForTruncationOfTheEnd) {
  // Cut chunk 1 out and the file is one chunk short: the size says so before any chunk is read.
  const std::string encrypted = encrypt(4 * chunk);
  auto bytes = read_file(encrypted);
  bytes.erase(bytes.begin() + static_cast<long>(encrypted_header_bytes + stride),
              bytes.begin() + static_cast<long>(encrypted_header_bytes + 2 * stride));
  write_file(encrypted, bytes);
  refused(encrypted, CryptFailure::truncated);
}

TEST_F(CryptTest, AppendedBytesAreRefused) {
  const std::string encrypted = encrypt(chunk + 3);
  std::ofstream(encrypted, std::ios::binary | std::ios::app) << "more";
  EXPECT_NE(refused(encrypted, CryptFailure::trailing_data).find("4 bytes after its last chunk"),
            std::string::npos);
}

TEST_F(CryptTest, WrongKeyIsNamedBeforeAnyDecryption) {
  const std::string encrypted = encrypt(2 * chunk);
  const ModelKey other = test_key(77);
  const std::string message = refused(encrypted, CryptFailure::wrong_key, other);
  EXPECT_NE(message.find("wrong key"), std::string::npos) << message;
  EXPECT_NE(message.find(key_.id_hex()), std::string::npos) << "names the file's key id: " << message;
  EXPECT_NE(message.find(other.id_hex()), std::string::npos) << "and the given key's: " << message;
  EXPECT_THROW(decrypt_to_memory(encrypted, other, {}), CryptError);
}

TEST_F(CryptTest, EveryRefusalHasItsOwnMessage) {
  std::set<std::string> kinds;
  auto first_words = [](const std::string& message) {
    // The message without the path and numbers: what kind of refusal it is.
    std::string words;
    for (const char c : message) {
      if (!std::isdigit(static_cast<unsigned char>(c))) words.push_back(c);
    }
    const auto quote = words.find('\'');
    const auto unquote = words.find('\'', quote + 1);
    return quote == std::string::npos ? words : words.substr(0, quote) + words.substr(unquote + 1);
  };
  const std::string encrypted = encrypt(4 * chunk);
  flip_byte(encrypted, encrypted_header_bytes + 5);
  kinds.insert(first_words(refused(encrypted, CryptFailure::chunk_tampered)));
  encrypt(4 * chunk);
  flip_byte(encrypted, 33);
  kinds.insert(first_words(refused(encrypted, CryptFailure::header_tampered)));
  encrypt(4 * chunk);
  fs::resize_file(encrypted, fs::file_size(encrypted) - 1);
  kinds.insert(first_words(refused(encrypted, CryptFailure::truncated)));
  encrypt(4 * chunk);
  auto bytes = read_file(encrypted);
  std::swap_ranges(bytes.begin() + static_cast<long>(encrypted_header_bytes),
                   bytes.begin() + static_cast<long>(encrypted_header_bytes + stride),
                   bytes.begin() + static_cast<long>(encrypted_header_bytes + stride));
  write_file(encrypted, bytes);
  kinds.insert(first_words(refused(encrypted, CryptFailure::chunks_reordered)));
  encrypt(4 * chunk);
  kinds.insert(first_words(refused(encrypted, CryptFailure::wrong_key, test_key(9))));
  EXPECT_EQ(kinds.size(), 5u);
}

TEST_F(CryptTest, EncryptRefusesToEncryptTwiceOrOverwrite) {
  const std::string encrypted = encrypt(100);
  try {
    encrypt_file(encrypted, dir_ / "twice.enc", key_, {});
    ADD_FAILURE() << "encrypted an encrypted file";
  } catch (const CryptError& e) {
    EXPECT_NE(std::string(e.what()).find("already encrypted"), std::string::npos) << e.what();
  }
  try {
    encrypt_file(dir_ / "model.gguf", encrypted, key_, {});
    ADD_FAILURE() << "replaced an existing file without force";
  } catch (const CryptError& e) {
    EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos) << e.what();
  }
}

// ------------------------------------------------------------------------------------------------ keys

TEST_F(CryptTest, KeyFilesHoldHexOrRawBytes) {
  const std::string hex = dir_ / "hex.key";
  const ModelKey generated = generate_key_file(hex);
  EXPECT_EQ(fs::status(hex).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  const auto text = read_file(hex);
  ASSERT_EQ(text.size(), 65u) << "64 hex characters and a newline";
  EXPECT_EQ(text.back(), '\n');
  const ModelKey loaded = load_key_file(hex);
  EXPECT_EQ(loaded.id_hex(), generated.id_hex());
  EXPECT_TRUE(loaded.warning.empty()) << loaded.warning;
  EXPECT_EQ(loaded.id_hex().size(), 16u);

  // The same key as 32 raw bytes.
  std::vector<char> raw;
  for (const auto b : loaded.bytes()) raw.push_back(static_cast<char>(b));
  write_file(dir_ / "raw.key", raw);
  ::chmod((dir_ / "raw.key").c_str(), 0644);
  const ModelKey from_raw = load_key_file(dir_ / "raw.key");
  EXPECT_EQ(from_raw.id_hex(), generated.id_hex());
  EXPECT_NE(from_raw.warning.find("chmod 600"), std::string::npos) << "a key others can read is pointed out";

  EXPECT_THROW(generate_key_file(hex), CryptError) << "a key is never overwritten";
}

TEST_F(CryptTest, MalformedKeysAreRefusedSayingWhatAKeyIs) {
  write_file(dir_ / "short.key", std::vector<char>(63, 'a'));
  try {
    load_key_file(dir_ / "short.key");
    ADD_FAILURE() << "63 hex characters taken as a key";
  } catch (const CryptError& e) {
    EXPECT_EQ(e.failure(), CryptFailure::bad_key);
    EXPECT_NE(std::string(e.what()).find("64 hex characters"), std::string::npos) << e.what();
  }
  std::vector<char> not_hex(64, 'g');
  write_file(dir_ / "nothex.key", not_hex);
  EXPECT_THROW(load_key_file(dir_ / "nothex.key"), CryptError);
  EXPECT_THROW(load_key_file(dir_ / "missing.key"), CryptError);
  EXPECT_THROW(load_key("", ""), CryptError) << "no key given";
  EXPECT_THROW(load_key(dir_ / "x", "Y"), CryptError) << "two keys given";
}

TEST_F(CryptTest, KeysFromTheEnvironmentAreHex) {
  const ModelKey generated = generate_key_file(dir_ / "env.key");
  auto text = read_file(dir_ / "env.key");
  const std::string hex(text.begin(), text.begin() + 64);
  ::setenv("CLAWBOT_TEST_MODEL_KEY", hex.c_str(), 1);
  EXPECT_EQ(load_key_env("CLAWBOT_TEST_MODEL_KEY").id_hex(), generated.id_hex());
  EXPECT_EQ(load_key("", "CLAWBOT_TEST_MODEL_KEY").source, "environment variable CLAWBOT_TEST_MODEL_KEY");
  ::unsetenv("CLAWBOT_TEST_MODEL_KEY");
  try {
    load_key_env("CLAWBOT_TEST_MODEL_KEY");
    ADD_FAILURE() << "an unset variable gave a key";
  } catch (const CryptError& e) {
    EXPECT_NE(std::string(e.what()).find("is not set"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace clawbot::ops
