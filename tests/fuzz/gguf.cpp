// The GGUF header reader (src/ops/gguf_reader.cpp), whose input may come from any URL `clawbot plan` is
// given, and the plan's arithmetic on what it read (model_dims, plan_memory): a GgufError or
// invalid_argument naming the problem, or a plan; never a crash, a hang or an allocation the header
// merely claims.
//
// Input: byte 0 = the first read's size (as the HTTP source starts with a small range), then the file.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "ops/gguf_reader.h"
#include "ops/plan.h"
#include "seed_writer.h"
#include "unit/ops/gguf_test_writer.h"

namespace {

class MemorySource : public clawbot::ops::ByteSource {
 public:
  explicit MemorySource(std::string_view bytes) : bytes_(bytes) {}
  std::string read(std::uint64_t offset, std::uint64_t size) override {
    if (offset >= bytes_.size()) return {};
    return std::string(bytes_.substr(offset, size));
  }
  std::uint64_t size() override { return bytes_.size(); }
  std::string name() const override { return "fuzz.gguf"; }

 private:
  std::string_view bytes_;
};

// Headers as the tests write them (tests/unit/ops/gguf_test_writer.h): a small llama with every metadata
// type and a tensor table, header-only and with data (the first byte is the fuzzer's first-read size).
void write_seeds(const std::filesystem::path& dir) {
  clawbot::ops::test::GgufWriter w;
  w.str("general.architecture", "llama");
  w.str("general.name", "tiny");
  w.u32("llama.block_count", 2);
  w.u32("llama.context_length", 128);
  w.u32("llama.embedding_length", 64);
  w.u32("llama.feed_forward_length", 128);
  w.u32("llama.attention.head_count", 4);
  w.f32("llama.rope.freq_base", 10000.0f);
  w.boolean("clawbot.flag", true);
  w.i32("some.signed", -5);
  w.u64("some.big", 1ull << 40);
  w.i32_array("llama.attention.head_count_kv", {2, 2});
  w.bool_array("some.bools", {true, false});
  w.str_array("tokenizer.ggml.tokens", {"<s>", "</s>", "a", "b"});
  w.tensor("token_embd.weight", {64, 4}, 8, 64 / 32 * 34 * 4);  // q8_0
  w.tensor("output_norm.weight", {64}, 0, 64 * 4);              // f32
  clawbot::fuzz::write_file(dir / "llama-header-only", std::string(1, '\x02') + w.bytes(false));
  clawbot::fuzz::write_file(dir / "llama-with-data", std::string(1, '\x10') + w.bytes(true));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  clawbot::fuzz::write_seeds_if_asked(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace clawbot::ops;
  if (size < 1) return 0;
  const std::uint64_t first_read = std::uint64_t{16} << (data[0] % 17);  // 16 B .. 1 MiB
  MemorySource source(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  try {
    const GgufFile file = read_gguf(source, first_read);
    for (const auto& [key, value] : file.metadata) (void)value.to_text();
    (void)file.architecture();
    try {
      (void)file.tensor_bytes();
      (void)file.has_tensor_data();
    } catch (const GgufError&) {
    }
    const ModelDims dims = model_dims(file);
    for (const int ctx : {0, 4096}) {
      const MemoryPlan plan = plan_memory(file, dims, ctx, 4, "f16", false);
      (void)plan.total();
    }
  } catch (const GgufError&) {
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
