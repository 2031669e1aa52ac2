// `clawbot verify`: sums of known content, sidecars, manifests (the real ../shared/models/SHA256SUMS among
// them), and the explanation of a mismatch; serve --verify's refusals.
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include "ops/integrity.h"

#include "../support/temp_dir.h"

namespace clawbot::ops {
namespace {

namespace fs = std::filesystem;

using TempDir = clawbot::testing::TempDir;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Sets a file's modification time `seconds` into the past, so "modified after" can be tested.
void age(const std::string& path, int seconds) {
  fs::last_write_time(path, fs::file_time_type::clock::now() - std::chrono::seconds(seconds));
}

std::string models_dir() {
  const char* env = std::getenv("CLAWBOT_MODELS");
  std::string dirs = env && *env ? env : CLAWBOT_DEFAULT_MODELS;
  return dirs.substr(0, dirs.find(':'));
}

constexpr const char* abc_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr const char* abc_md5 = "900150983cd24fb0d6963f7d28e17f72";

class VerifyTest : public ::testing::Test {
 protected:
  VerifyOptions options_for(const std::string& path) {
    VerifyOptions options;
    options.model = path;
    options.progress = false;
    return options;
  }
  TempDir dir_{"clawbot-verify-test-"};
};

TEST_F(VerifyTest, HashesKnownContent) {
  write_text(dir_ / "abc", "abc");
  const FileDigests digests = hash_file(dir_ / "abc", true, false);
  EXPECT_EQ(digests.sha256, abc_sha256);
  EXPECT_EQ(digests.md5, abc_md5);
  EXPECT_EQ(digests.size_bytes, 3u);
  EXPECT_TRUE(hash_file(dir_ / "abc", false, false).md5.empty());
  write_text(dir_ / "empty", "");
  EXPECT_EQ(hash_file(dir_ / "empty", false, false).sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_THROW(hash_file(dir_ / "missing", false, false), std::runtime_error);
  EXPECT_THROW(hash_file(dir_.operator/(""), false, false), std::runtime_error) << "a directory";
}

TEST_F(VerifyTest, LargeFileSpansManyReadBuffers) {
  // Several of the reader's 4 MiB buffers, checked against OpenSSL hashing the same bytes in one piece.
  std::string big(9 * 1024 * 1024 + 1, 'x');
  for (std::size_t i = 0; i < big.size(); i += 4099) big[i] = static_cast<char>(i % 251);
  write_text(dir_ / "big", big);
  unsigned char digest[32];
  std::size_t length = 0;
  ASSERT_EQ(EVP_Q_digest(nullptr, "SHA256", nullptr, big.data(), big.size(), digest, &length), 1);
  std::string hex;
  for (const unsigned char b : digest) {
    static constexpr char digits[] = "0123456789abcdef";
    hex += digits[b >> 4];
    hex += digits[b & 0xf];
  }
  const FileDigests digests = hash_file(dir_ / "big", false, false);
  EXPECT_EQ(digests.size_bytes, big.size());
  EXPECT_EQ(digests.sha256, hex);
}

TEST_F(VerifyTest, GoodFileMatchesItsSidecar) {
  write_text(dir_ / "m.gguf", "abc");
  write_text(dir_ / "m.gguf.sha256", std::string(abc_sha256) + "  m.gguf\n");
  const VerifyReport report = verify_model_file(options_for(dir_ / "m.gguf"));
  EXPECT_EQ(report.status, VerifyStatus::match);
  ASSERT_TRUE(report.expected);
  EXPECT_EQ(report.expected->source, "sidecar " + (dir_ / "m.gguf.sha256"));
  // A bare sum (no file name) is a sidecar too, in upper case as some publishers write it.
  std::string upper = abc_sha256;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  write_text(dir_ / "m.gguf.sha256", upper + "\n");
  EXPECT_EQ(verify_model_file(options_for(dir_ / "m.gguf")).status, VerifyStatus::match);
}

TEST_F(VerifyTest, FlippedByteIsAMismatchExplainedByTheLaterChange) {
  write_text(dir_ / "m.gguf", "abc");
  write_text(dir_ / "m.gguf.sha256", std::string(abc_sha256) + "  m.gguf\n");
  age(dir_ / "m.gguf.sha256", 60);
  write_text(dir_ / "m.gguf", "abd");
  const VerifyReport report = verify_model_file(options_for(dir_ / "m.gguf"));
  EXPECT_EQ(report.status, VerifyStatus::mismatch);
  EXPECT_NE(report.digests.sha256, abc_sha256);
  EXPECT_NE(report.explanation.find("modified"), std::string::npos) << report.explanation;
  EXPECT_NE(report.explanation.find("after its sum was recorded"), std::string::npos) << report.explanation;
}

TEST_F(VerifyTest, TruncatedFileIsAMismatchThatGivesItsSize) {
  write_text(dir_ / "m.gguf", "ab");
  write_text(dir_ / "m.gguf.sha256", std::string(abc_sha256) + "\n");
  age(dir_ / "m.gguf", 120);  // older than the sum: nothing points at a later change
  const VerifyReport report = verify_model_file(options_for(dir_ / "m.gguf"));
  EXPECT_EQ(report.status, VerifyStatus::mismatch);
  EXPECT_NE(report.explanation.find("incomplete"), std::string::npos) << report.explanation;
  EXPECT_NE(report.explanation.find("2 bytes"), std::string::npos) << report.explanation;
}

TEST_F(VerifyTest, WrongSidecarNamesTheOtherFile) {
  write_text(dir_ / "m.gguf", "abc");
  write_text(dir_ / "m.gguf.sha256",
             "0000000000000000000000000000000000000000000000000000000000000000  other-model.gguf\n");
  age(dir_ / "m.gguf", 120);
  const VerifyReport report = verify_model_file(options_for(dir_ / "m.gguf"));
  EXPECT_EQ(report.status, VerifyStatus::mismatch);
  EXPECT_NE(report.explanation.find("names another file, 'other-model.gguf'"), std::string::npos)
      << report.explanation;
}

TEST_F(VerifyTest, MismatchNamesTheManifestEntryWhoseContentItHas) {
  write_text(dir_ / "a.gguf", "abc");
  write_text(dir_ / "SHA256SUMS",
             "1111111111111111111111111111111111111111111111111111111111111111  a.gguf\n" +
                 std::string(abc_sha256) + "  b.gguf\n");
  const VerifyReport report = verify_model_file(options_for(dir_ / "a.gguf"));
  EXPECT_EQ(report.status, VerifyStatus::mismatch);
  ASSERT_TRUE(report.expected);
  EXPECT_NE(report.expected->source.find("(line 1)"), std::string::npos) << report.expected->source;
  EXPECT_NE(report.explanation.find("content is that of 'b.gguf'"), std::string::npos) << report.explanation;
}

TEST_F(VerifyTest, TheRealManifestOfTheTestModels) {
  const std::string dir = models_dir();
  const std::string model = dir + "/stories260K.gguf";
  ASSERT_TRUE(fs::exists(model)) << model << " missing: set CLAWBOT_MODELS";
  const auto entries = read_manifest(dir + "/SHA256SUMS");
  EXPECT_GE(entries.size(), 3u);
  const auto entry = find_in_manifest(entries, dir + "/SHA256SUMS", model);
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->name, "stories260K.gguf");

  // Found beside the model without being named, and named explicitly from elsewhere.
  VerifyReport report = verify_model_file(options_for(model));
  EXPECT_EQ(report.status, VerifyStatus::match) << report.explanation;
  ASSERT_TRUE(report.expected);
  EXPECT_NE(report.expected->source.find("SHA256SUMS"), std::string::npos);
  EXPECT_EQ(report.digests.sha256, entry->sha256);

  fs::copy_file(model, dir_ / "stories260K.gguf");
  VerifyOptions options = options_for(dir_ / "stories260K.gguf");
  options.manifest = dir + "/SHA256SUMS";
  EXPECT_EQ(verify_model_file(options).status, VerifyStatus::match) << "matched by file name";
  options.model = dir_ / "renamed.gguf";
  fs::copy_file(model, options.model);
  try {
    verify_model_file(options);
    ADD_FAILURE() << "a file the manifest does not list passed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("does not list 'renamed.gguf'"), std::string::npos) << e.what();
  }
}

TEST_F(VerifyTest, ManifestFormats) {
  write_text(dir_ / "SUMS", "# comment\n\n" + std::string(abc_sha256) + " *bin.gguf\nSHA256 (bsd.gguf) = " +
                                abc_sha256 + "\n" + std::string(abc_sha256) + "  sub/dir/deep.gguf\n");
  const auto entries = read_manifest(dir_ / "SUMS");
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].name, "bin.gguf");
  EXPECT_EQ(entries[0].line, 3);
  EXPECT_EQ(entries[1].name, "bsd.gguf");
  EXPECT_EQ(entries[1].sha256, abc_sha256);
  fs::create_directories(dir_ / "sub/dir");
  write_text(dir_ / "sub/dir/deep.gguf", "abc");
  const auto deep = find_in_manifest(entries, dir_ / "SUMS", dir_ / "sub/dir/deep.gguf");
  ASSERT_TRUE(deep);
  EXPECT_EQ(deep->line, 5);

  write_text(dir_ / "DUP", std::string(abc_sha256) + "  a/x.gguf\n" + abc_sha256 + "  b/x.gguf\n");
  EXPECT_THROW(find_in_manifest(read_manifest(dir_ / "DUP"), dir_ / "DUP", dir_ / "x.gguf"),
               std::runtime_error)
      << "two entries with the file's name and neither at its path";

  write_text(dir_ / "BAD", std::string(abc_sha256) + "  ok.gguf\nnot a sum line\n");
  try {
    read_manifest(dir_ / "BAD");
    ADD_FAILURE() << "a malformed manifest was read";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

TEST_F(VerifyTest, ExplicitSumsAreCheckedForForm) {
  write_text(dir_ / "m.gguf", "abc");
  VerifyOptions options = options_for(dir_ / "m.gguf");
  options.sha256 = abc_sha256;
  EXPECT_EQ(verify_model_file(options).status, VerifyStatus::match);
  options.sha256 = "abc123";
  try {
    verify_model_file(options);
    ADD_FAILURE() << "a 6-character sum was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("expected 64 hex characters, found 6"), std::string::npos)
        << e.what();
  }
  options.sha256.clear();
  options.expect_md5 = abc_md5;
  VerifyReport report = verify_model_file(options);
  EXPECT_EQ(report.status, VerifyStatus::match);
  EXPECT_EQ(report.digests.md5, abc_md5);
  options.expect_md5 = "00000000000000000000000000000000";
  report = verify_model_file(options);
  EXPECT_EQ(report.status, VerifyStatus::mismatch);
  EXPECT_TRUE(report.md5_mismatch);
}

TEST_F(VerifyTest, WriteRecordsSidecarsButNeverOverAContradiction) {
  write_text(dir_ / "m.gguf", "abc");
  VerifyOptions options = options_for(dir_ / "m.gguf");
  EXPECT_EQ(verify_model_file(options).status, VerifyStatus::no_reference);
  options.write = true;
  options.md5 = true;
  const VerifyReport report = verify_model_file(options);
  EXPECT_EQ(report.written.size(), 2u);
  EXPECT_EQ(read_text(dir_ / "m.gguf.sha256"), std::string(abc_sha256) + "  m.gguf\n")
      << "sha256sum -c format";
  EXPECT_EQ(read_text(dir_ / "m.gguf.md5"), std::string(abc_md5) + "  m.gguf\n");
  options.write = false;
  EXPECT_EQ(verify_model_file(options).status, VerifyStatus::match) << "both sidecars are read back";

  write_text(dir_ / "m.gguf", "abd");
  options.write = true;
  EXPECT_EQ(verify_model_file(options).status, VerifyStatus::mismatch);
  EXPECT_EQ(read_text(dir_ / "m.gguf.sha256"), std::string(abc_sha256) + "  m.gguf\n") << "left as it was";
}

TEST_F(VerifyTest, ServeVerifyRefusesAMismatchAndAFileWithNoSum) {
  write_text(dir_ / "m.gguf", "abc");
  try {
    prepare_model_file(dir_ / "m.gguf", {.verify = true});
    ADD_FAILURE() << "--verify passed a file with no sum";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no sum to check"), std::string::npos) << e.what();
  }
  write_text(dir_ / "m.gguf.sha256", "2222222222222222222222222222222222222222222222222222222222222222\n");
  try {
    prepare_model_file(dir_ / "m.gguf", {.verify = true});
    ADD_FAILURE() << "--verify passed a mismatch";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("expected 2222"), std::string::npos) << message;
    EXPECT_NE(message.find(std::string("actual   ") + abc_sha256), std::string::npos) << message;
  }
  write_text(dir_ / "m.gguf.sha256", std::string(abc_sha256) + "\n");
  const PreparedModel prepared = prepare_model_file(dir_ / "m.gguf", {.verify = true});
  EXPECT_EQ(prepared.path, dir_ / "m.gguf");
  EXPECT_FALSE(prepared.decrypted);
  ASSERT_FALSE(prepared.log.empty());
  EXPECT_NE(prepared.log[0].find("verified"), std::string::npos);
  // Without --verify nothing is read; a missing file is left for the model check to name.
  EXPECT_EQ(prepare_model_file(dir_ / "missing.gguf", {.verify = true}).path, dir_ / "missing.gguf");
}

TEST_F(VerifyTest, ServeAsksForTheKeyOfAnEncryptedModel) {
  write_text(dir_ / "m.gguf", std::string(5000, 'w'));
  const ModelKey key = generate_key_file(dir_ / "k");
  encrypt_file(dir_ / "m.gguf", dir_ / "m.gguf.enc", key, {});
  try {
    prepare_model_file(dir_ / "m.gguf.enc", {});
    ADD_FAILURE() << "an encrypted model was passed on without a key";
  } catch (const CryptError& e) {
    EXPECT_NE(std::string(e.what()).find("--key-file"), std::string::npos) << e.what();
  }
  const PreparedModel prepared = prepare_model_file(dir_ / "m.gguf.enc", {.key_file = dir_ / "k"});
  ASSERT_TRUE(prepared.decrypted);
  EXPECT_EQ(prepared.name, "m");
  EXPECT_EQ(read_text(prepared.path), std::string(5000, 'w'));
  EXPECT_NE(prepared.log.back().find("GB/s"), std::string::npos) << prepared.log.back();
}

// Issue 17 bug 7: a tampered .enc whose own sum was recorded (verify --write on the .enc) is explained as
// what it is, not as "a sum recorded for the plaintext"; times within one second show milliseconds, with
// dates.
TEST_F(VerifyTest, TamperedEncryptedFileIsExplainedByItsOwnSum) {
  write_text(dir_ / "m.gguf", std::string(5000, 'w'));
  const ModelKey key = generate_key_file(dir_ / "k");
  encrypt_file(dir_ / "m.gguf", dir_ / "m.gguf.enc", key, {});
  VerifyOptions record = options_for(dir_ / "m.gguf.enc");
  record.write = true;
  ASSERT_EQ(verify_model_file(record).written.size(), 1u);
  // One byte of a chunk changed a moment after the sum was written (the same second, as in the report).
  {
    std::fstream file(dir_ / "m.gguf.enc", std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(200);
    file.put('X');
  }
  // The sum's time at .100 of its second, so that 250 ms later is still the same second (the message shows
  // milliseconds only then; from .750 on the test would see whole seconds).
  const auto written = fs::last_write_time(dir_ / "m.gguf.enc.sha256");
  const auto sidecar_time =
      std::chrono::floor<std::chrono::seconds>(written) + std::chrono::milliseconds(100);
  fs::last_write_time(dir_ / "m.gguf.enc.sha256", sidecar_time);
  fs::last_write_time(dir_ / "m.gguf.enc", sidecar_time + std::chrono::milliseconds(250));
  const VerifyReport report = verify_model_file(options_for(dir_ / "m.gguf.enc"));
  ASSERT_EQ(report.status, VerifyStatus::mismatch);
  const std::string& why = report.explanation;
  EXPECT_EQ(why.find("plaintext"), std::string::npos) << why;
  EXPECT_NE(why.find("the sum recorded for this encrypted file does not match its content"),
            std::string::npos)
      << why;
  // "modified (YYYY-MM-DD HH:MM:SS.mmm) after its sum was recorded (YYYY-MM-DD HH:MM:SS.mmm)": two different
  // times, each with its date.
  const auto at = why.find("modified (");
  ASSERT_NE(at, std::string::npos) << why;
  const std::string modified = why.substr(at + 10, 23);
  const auto rec = why.find("recorded (");
  ASSERT_NE(rec, std::string::npos) << why;
  const std::string recorded = why.substr(rec + 10, 23);
  EXPECT_NE(modified, recorded) << why;
  EXPECT_EQ(modified[4], '-') << why;
  EXPECT_EQ(modified[19], '.') << why;

  // Not newer than its sum (a copy that kept the times): no claim of "after" at all.
  fs::last_write_time(dir_ / "m.gguf.enc", sidecar_time);
  const VerifyReport same = verify_model_file(options_for(dir_ / "m.gguf.enc"));
  EXPECT_EQ(same.explanation.find("after its sum"), std::string::npos) << same.explanation;
}

}  // namespace
}  // namespace clawbot::ops
