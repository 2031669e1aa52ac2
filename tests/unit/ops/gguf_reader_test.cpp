// The GGUF header reader: every metadata type, the tensor table, header-only files, and a clear refusal of
// damaged headers. No libllama: this test runs in both builds.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "gguf_test_writer.h"
#include "ops/gguf_reader.h"

namespace clawbot::ops {
namespace {

namespace fs = std::filesystem;

// A source over bytes in memory that counts what was read.
class MemorySource : public ByteSource {
 public:
  explicit MemorySource(std::string data) : data_(std::move(data)) {}
  std::string read(std::uint64_t offset, std::uint64_t size) override {
    ++reads;
    if (offset >= data_.size()) return {};
    const auto n = std::min<std::uint64_t>(size, data_.size() - offset);
    bytes_read += n;
    return data_.substr(offset, n);
  }
  std::uint64_t size() override { return data_.size(); }
  std::string name() const override { return "memory.gguf"; }
  int reads = 0;
  std::uint64_t bytes_read = 0;

 private:
  std::string data_;
};

test::GgufWriter small_model() {
  test::GgufWriter w;
  w.str("general.architecture", "llama");
  w.str("general.name", "tiny");
  w.u32("llama.block_count", 2);
  w.u32("llama.embedding_length", 64);
  w.f32("llama.rope.freq_base", 10000.0f);
  w.boolean("clawbot.flag", true);
  w.i32("some.signed", -5);
  w.u64("some.big", 1ull << 40);
  w.i32_array("llama.attention.head_count_kv", {2, 0});
  std::vector<std::string> tokens;
  for (int i = 0; i < 1000; ++i) tokens.push_back("token" + std::to_string(i));
  w.str_array("tokenizer.ggml.tokens", tokens);
  w.tensor("token_embd.weight", {64, 1000}, 8, 64 / 32 * 34 * 1000);  // q8_0
  w.tensor("output_norm.weight", {64}, 0, 64 * 4);                    // f32
  return w;
}

TEST(GgufReader, ReadsEveryTypeAndTheTensorTable) {
  MemorySource source(small_model().bytes(true));
  const GgufFile file = read_gguf(source);
  EXPECT_EQ(file.version, 3u);
  EXPECT_EQ(file.architecture(), "llama");
  EXPECT_EQ(file.get_string("general.name"), "tiny");
  EXPECT_EQ(file.get_int("llama.block_count"), 2);
  EXPECT_DOUBLE_EQ(*file.get_double("llama.rope.freq_base"), 10000.0);
  EXPECT_EQ(file.get_int("clawbot.flag"), 1);
  EXPECT_EQ(file.get_int("some.signed"), -5);
  EXPECT_EQ(file.get_int("some.big"), std::int64_t{1} << 40);
  const GgufValue* kv = file.find("llama.attention.head_count_kv");
  ASSERT_NE(kv, nullptr);
  ASSERT_TRUE(kv->is_array());
  ASSERT_EQ(kv->items.size(), 2u);
  EXPECT_EQ(kv->items[0].as_int(), 2);
  EXPECT_EQ(kv->items[1].as_int(), 0);
  EXPECT_EQ(file.find("tokenizer.ggml.tokens")->items.size(), 1000u);
  EXPECT_EQ(file.find("tokenizer.ggml.tokens")->to_text(3),
            "[\"token0\", \"token1\", \"token2\", ... (1000 string items)]");
  ASSERT_EQ(file.tensors.size(), 2u);
  EXPECT_EQ(file.tensors[0].name, "token_embd.weight");
  EXPECT_EQ(file.tensors[0].bytes(), 64u / 32 * 34 * 1000);
  EXPECT_EQ(file.tensors[1].bytes(), 256u);
  EXPECT_EQ(file.tensor_bytes(), 64u / 32 * 34 * 1000 + 256);
  EXPECT_EQ(file.data_offset % 32, 0u);
  EXPECT_TRUE(file.has_tensor_data());
}

TEST(GgufReader, HeaderOnlyFileIsReadAndKnownAsSuch) {
  MemorySource source(small_model().bytes(false));
  const GgufFile file = read_gguf(source);
  EXPECT_FALSE(file.has_tensor_data());
  EXPECT_EQ(file.tensors.size(), 2u);
  EXPECT_GT(file.data_end(), file.file_size);
}

TEST(GgufReader, ReadsOnlyThePrefixItNeeds) {
  // A header of ~20 KB followed by 8 MB of data: reading starts with 4 KiB and doubles, never reads the data.
  test::GgufWriter w = small_model();
  w.tensor("big.weight", {1024, 8192}, 0, 1024ull * 8192 * 4);
  MemorySource source(w.bytes(true));
  const GgufFile file = read_gguf(source, 4096);
  EXPECT_EQ(file.tensors.size(), 3u);
  EXPECT_GT(source.reads, 1);                // it had to extend
  EXPECT_LT(source.bytes_read, 64u * 1024);  // and stopped soon after the header
  EXPECT_GE(source.bytes_read, file.data_offset - 32);
}

TEST(GgufReader, RefusesWhatIsNotGguf) {
  MemorySource not_gguf(std::string("PK\x03\x04 this is a zip file", 24));
  try {
    read_gguf(not_gguf);
    FAIL() << "accepted a zip file";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("not a GGUF file"), std::string::npos) << e.what();
  }
}

TEST(GgufReader, RefusesAnUnsupportedVersion) {
  std::string bytes = small_model().bytes(true);
  bytes[4] = 9;
  MemorySource source(bytes);
  try {
    read_gguf(source);
    FAIL() << "accepted version 9";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("GGUF version 9 is not supported"), std::string::npos) << e.what();
  }
}

TEST(GgufReader, RefusesATruncatedHeader) {
  const std::string bytes = small_model().bytes(true);
  MemorySource source(bytes.substr(0, 300));
  try {
    read_gguf(source);
    FAIL() << "accepted a truncated header";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("ends inside its GGUF header"), std::string::npos) << e.what();
  }
}

TEST(GgufReader, RefusesImpossibleCountsWithoutAllocating) {
  std::string bytes = small_model().bytes(true);
  const std::uint64_t huge = 1ull << 50;
  std::memcpy(bytes.data() + 8, &huge, sizeof huge);  // the tensor count
  MemorySource source(bytes);
  try {
    read_gguf(source);
    FAIL() << "accepted 2^50 tensors";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("damaged"), std::string::npos) << e.what();
  }
}

TEST(GgufReader, RefusesAnUnknownTensorType) {
  test::GgufWriter w;
  w.str("general.architecture", "llama");
  w.tensor("x.weight", {32}, 4, 32);  // type 4 was Q4_2, removed from ggml
  MemorySource source(w.bytes(true));
  try {
    read_gguf(source);
    FAIL() << "accepted ggml type 4";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("has ggml type 4"), std::string::npos) << e.what();
  }
}

TEST(GgufReader, MissingFileIsNamed) {
  try {
    read_gguf(std::string("/nonexistent/model.gguf"));
    FAIL();
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf: no such file"), std::string::npos)
        << e.what();
  }
}

TEST(GgufReader, ReadsALocalFile) {
  const fs::path path =
      fs::temp_directory_path() / ("clawbot-gguf-reader-" + std::to_string(::getpid()) + ".gguf");
  small_model().write(path.string(), true);
  const GgufFile file = read_gguf(path.string());
  fs::remove(path);
  EXPECT_EQ(file.tensors.size(), 2u);
  EXPECT_EQ(file.file_size, file.data_end() + (file.file_size - file.data_end()));
  EXPECT_TRUE(file.has_tensor_data());
}

TEST(GgmlTypes, RowBytes) {
  EXPECT_EQ(ggml_row_bytes(*ggml_type_by_name("q4_K"), 8192), 8192u / 256 * 144);
  EXPECT_EQ(ggml_row_bytes(*ggml_type_by_name("Q8_0"), 128), 128u / 32 * 34);
  EXPECT_EQ(ggml_row_bytes(*ggml_type_by_name("f16"), 100), 200u);
  EXPECT_THROW(ggml_row_bytes(*ggml_type_by_name("q4_K"), 100), GgufError);
  EXPECT_EQ(ggml_type_by_name("nope"), nullptr);
  EXPECT_EQ(ggml_type_by_id(4), nullptr);
}

}  // namespace
}  // namespace clawbot::ops
