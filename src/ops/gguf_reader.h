// A GGUF header and tensor-table reader of our own: no libllama, so `clawbot plan` and `clawbot models` work
// in the front-end build, on header-only files (a tensor table and no weights) and on files not downloaded
// yet (read over HTTP with range requests, fetching only the header).
//
// Format (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): magic "GGUF", version, tensor count,
// metadata count, the metadata key/value pairs, the tensor infos (name, dims, ggml type, offset), padding to
// general.alignment, then the tensor data. All little-endian.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/error.h"

namespace clawbot::ops {

// A GGUF file we cannot read: the message names the file and the problem.
class GgufError : public ClawbotError {
 public:
  explicit GgufError(const std::string& message) : ClawbotError(ErrorKind::internal, message) {}
};

// One ggml tensor type: elements per block and bytes per block (ggml's type_traits).
struct GgmlType {
  std::uint32_t id = 0;
  std::string_view name;  // as ggml_type_name spells it: f32, q4_K, ...
  std::uint32_t block_size = 0;
  std::uint32_t type_size = 0;
};

// The type of that id, or nullptr for an id ggml does not (or no longer) define.
const GgmlType* ggml_type_by_id(std::uint32_t id);
// By name, case-insensitive ("q8_0", "Q4_K"); nullptr when unknown.
const GgmlType* ggml_type_by_name(std::string_view name);
const std::vector<GgmlType>& ggml_types();
// Bytes of one row of n elements (n must be a whole number of blocks); throws GgufError otherwise.
std::uint64_t ggml_row_bytes(const GgmlType& type, std::uint64_t n);

// GGUF metadata value types (gguf_type).
enum class GgufType : std::uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};
std::string_view gguf_type_name(GgufType type);

// A metadata value. Arrays keep their element type; numbers are held widened (integers as int64 or uint64).
struct GgufValue {
  GgufType type = GgufType::u32;
  GgufType element_type = GgufType::u32;  // arrays only
  std::variant<std::uint64_t, std::int64_t, double, bool, std::string> scalar{};
  std::vector<GgufValue> items{};  // arrays only (element_type items)

  bool is_array() const noexcept { return type == GgufType::array; }
  bool is_string() const noexcept { return type == GgufType::string; }
  bool is_number() const noexcept;
  // The value as a number (bool as 0/1); nullopt for strings and arrays.
  std::optional<double> as_double() const;
  std::optional<std::int64_t> as_int() const;
  const std::string* as_string() const;
  // For people: numbers, quoted strings, arrays abbreviated to their first `max_items` items and a count.
  std::string to_text(std::size_t max_items = 8) const;
};

struct GgufTensor {
  std::string name;
  std::uint32_t type_id = 0;
  std::vector<std::uint64_t> dims;  // ne[0] first (the row length)
  std::uint64_t offset = 0;         // from the start of the data section

  std::uint64_t elements() const noexcept;
  // Bytes of the tensor's data; throws GgufError for an unknown type or a row that is not whole blocks.
  std::uint64_t bytes() const;
};

struct GgufFile {
  std::string source;  // path or URL, for messages
  std::uint32_t version = 0;
  std::uint64_t alignment = 32;
  std::uint64_t data_offset = 0;  // where the tensor data starts
  std::uint64_t file_size = 0;    // bytes of the whole file (local size, or the server's Content-Length)
  std::uint64_t header_bytes_read = 0;                      // how much of the file was read to parse this
  std::vector<std::pair<std::string, GgufValue>> metadata;  // in file order
  std::vector<GgufTensor> tensors;                          // in file order

  const GgufValue* find(std::string_view key) const;
  // Typed lookups; nullopt when the key is missing or of another kind.
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<std::int64_t> get_int(std::string_view key) const;
  std::optional<double> get_double(std::string_view key) const;
  // "<general.architecture>.<suffix>", e.g. arch_key("block_count") == "llama.block_count".
  std::string arch_key(std::string_view suffix) const;
  std::string architecture() const;  // general.architecture, empty when missing

  // Sum of every tensor's bytes (the weights), and the end of the last tensor's data in the file.
  std::uint64_t tensor_bytes() const;
  std::uint64_t data_end() const;
  // True when the file holds the tensor data its table describes; false for a header-only file.
  bool has_tensor_data() const { return file_size >= data_end(); }
};

// Where the header bytes come from. read(offset, size) returns up to `size` bytes at `offset` (fewer only at
// the end of the file); size() the whole file's length. Throws GgufError on failure.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual std::string read(std::uint64_t offset, std::uint64_t size) = 0;
  virtual std::uint64_t size() = 0;
  virtual std::string name() const = 0;
};

// Parses the header from any source, reading a first chunk of `first_read` bytes and doubling as the header
// turns out longer (a large tokenizer takes several MiB). Throws GgufError naming the problem: not GGUF, an
// unsupported version, truncated, an impossible count or length.
GgufFile read_gguf(ByteSource& source, std::uint64_t first_read = 1u << 20);

// A local file, or an http(s):// URL read with range requests. `location` is used as given (no model
// directory lookup); throws GgufError.
GgufFile read_gguf(const std::string& location);

bool is_url(std::string_view location);

// The http(s) source used by read_gguf(location), exposed for tests and `models pull`.
std::unique_ptr<ByteSource> open_url_source(const std::string& url);

}  // namespace clawbot::ops
