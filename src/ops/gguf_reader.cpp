#include "ops/gguf_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "common/text.h"
#include "ops/http_fetch.h"

namespace clawbot::ops {
namespace {

// ggml's type_traits (ggml/src/ggml.c, checked against libllama's in the engine build's unit test).
const std::vector<GgmlType> types = {
    {0, "f32", 1, 4},         {1, "f16", 1, 2},         {2, "q4_0", 32, 18},      {3, "q4_1", 32, 20},
    {6, "q5_0", 32, 22},      {7, "q5_1", 32, 24},      {8, "q8_0", 32, 34},      {9, "q8_1", 32, 36},
    {10, "q2_K", 256, 84},    {11, "q3_K", 256, 110},   {12, "q4_K", 256, 144},   {13, "q5_K", 256, 176},
    {14, "q6_K", 256, 210},   {15, "q8_K", 256, 292},   {16, "iq2_xxs", 256, 66}, {17, "iq2_xs", 256, 74},
    {18, "iq3_xxs", 256, 98}, {19, "iq1_s", 256, 50},   {20, "iq4_nl", 32, 18},   {21, "iq3_s", 256, 110},
    {22, "iq2_s", 256, 82},   {23, "iq4_xs", 256, 136}, {24, "i8", 1, 1},         {25, "i16", 1, 2},
    {26, "i32", 1, 4},        {27, "i64", 1, 8},        {28, "f64", 1, 8},        {29, "iq1_m", 256, 56},
    {30, "bf16", 1, 2},       {34, "tq1_0", 256, 54},   {35, "tq2_0", 256, 66},   {39, "mxfp4", 32, 17},
    {40, "nvfp4", 64, 36},    {41, "q1_0", 128, 18},    {42, "q2_0", 64, 18},
};

// Sanity limits: a damaged count must not make us allocate gigabytes.
constexpr std::uint64_t max_string_bytes = 256u << 20;
constexpr std::uint64_t max_array_items = 1u << 28;
constexpr std::uint64_t max_tensors = 1u << 24;
constexpr std::uint64_t max_metadata = 1u << 20;
constexpr std::uint32_t max_dims = 4;  // GGML_MAX_DIMS

// Thrown when the bytes read so far end inside the header: read more and parse again.
struct NeedMore {
  std::uint64_t at_least;
};

class Cursor {
 public:
  Cursor(std::string_view data, bool at_eof, const std::string& source)
      : data_(data), at_eof_(at_eof), source_(source) {}

  std::uint64_t pos() const noexcept { return pos_; }

  void need(std::uint64_t n) {
    if (n <= data_.size() - pos_) return;
    if (at_eof_) {
      throw GgufError(source_ + ": the file ends inside its GGUF header (at byte " +
                      std::to_string(data_.size()) + "); it is truncated or not a complete download");
    }
    throw NeedMore{pos_ + n};
  }
  template <class T>
  T get() {
    need(sizeof(T));
    T value;
    std::memcpy(&value, data_.data() + pos_, sizeof(T));  // GGUF is little-endian, as are our targets
    pos_ += sizeof(T);
    return value;
  }
  std::string get_string(std::string_view what) {
    const auto length = get<std::uint64_t>();
    if (length > max_string_bytes) {
      throw GgufError(source_ + ": " + std::string(what) + " claims " + std::to_string(length) +
                      " bytes; the header is damaged");
    }
    need(length);
    std::string out(data_.substr(pos_, length));
    pos_ += length;
    return out;
  }

 private:
  std::string_view data_;
  std::uint64_t pos_ = 0;
  bool at_eof_;
  const std::string& source_;
};

GgufValue read_value(Cursor& in, GgufType type, const std::string& key, const std::string& source,
                     int depth) {
  GgufValue value;
  value.type = type;
  switch (type) {
    case GgufType::u8:
      value.scalar = std::uint64_t{in.get<std::uint8_t>()};
      break;
    case GgufType::i8:
      value.scalar = std::int64_t{in.get<std::int8_t>()};
      break;
    case GgufType::u16:
      value.scalar = std::uint64_t{in.get<std::uint16_t>()};
      break;
    case GgufType::i16:
      value.scalar = std::int64_t{in.get<std::int16_t>()};
      break;
    case GgufType::u32:
      value.scalar = std::uint64_t{in.get<std::uint32_t>()};
      break;
    case GgufType::i32:
      value.scalar = std::int64_t{in.get<std::int32_t>()};
      break;
    case GgufType::u64:
      value.scalar = in.get<std::uint64_t>();
      break;
    case GgufType::i64:
      value.scalar = in.get<std::int64_t>();
      break;
    case GgufType::f32:
      value.scalar = double{in.get<float>()};
      break;
    case GgufType::f64:
      value.scalar = in.get<double>();
      break;
    case GgufType::boolean:
      value.scalar = in.get<std::uint8_t>() != 0;
      break;
    case GgufType::string:
      value.scalar = in.get_string("the value of '" + key + "'");
      break;
    case GgufType::array: {
      if (depth > 0)
        throw GgufError(source + ": '" + key + "' is an array of arrays, which GGUF does not allow");
      const auto element = in.get<std::uint32_t>();
      if (element > static_cast<std::uint32_t>(GgufType::f64) ||
          element == static_cast<std::uint32_t>(GgufType::array)) {
        throw GgufError(source + ": '" + key + "' has arrays of unknown type " + std::to_string(element));
      }
      value.element_type = static_cast<GgufType>(element);
      const auto count = in.get<std::uint64_t>();
      if (count > max_array_items) {
        throw GgufError(source + ": '" + key + "' claims " + std::to_string(count) +
                        " items; the header is damaged");
      }
      value.items.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(count, 1u << 16)));
      for (std::uint64_t i = 0; i < count; ++i) {
        value.items.push_back(read_value(in, value.element_type, key, source, depth + 1));
      }
      break;
    }
    default:
      throw GgufError(source + ": the value of '" + key + "' has unknown type " +
                      std::to_string(static_cast<std::uint32_t>(type)) + "; the header is damaged");
  }
  return value;
}

// Parses what `data` holds; throws NeedMore when it ends inside the header.
GgufFile parse(std::string_view data, bool at_eof, const std::string& source) {
  Cursor in(data, at_eof, source);
  GgufFile file;
  file.source = source;
  in.need(4);
  if (data.substr(0, 4) != "GGUF") {
    throw GgufError(source + ": not a GGUF file (it starts with other bytes than \"GGUF\")");
  }
  in.get<std::uint32_t>();
  file.version = in.get<std::uint32_t>();
  if (file.version < 2 || file.version > 3) {
    throw GgufError(source + ": GGUF version " + std::to_string(file.version) +
                    " is not supported (versions 2 and 3 are)");
  }
  const auto n_tensors = in.get<std::uint64_t>();
  const auto n_kv = in.get<std::uint64_t>();
  if (n_tensors > max_tensors || n_kv > max_metadata) {
    throw GgufError(source + ": the header claims " + std::to_string(n_tensors) + " tensors and " +
                    std::to_string(n_kv) + " metadata keys; it is damaged");
  }
  for (std::uint64_t i = 0; i < n_kv; ++i) {
    std::string key = in.get_string("a metadata key");
    const auto type = in.get<std::uint32_t>();
    GgufValue value = read_value(in, static_cast<GgufType>(type), key, source, 0);
    file.metadata.emplace_back(std::move(key), std::move(value));
  }
  if (auto alignment = file.get_int("general.alignment")) {
    if (*alignment <= 0 || (*alignment & (*alignment - 1)) != 0) {
      throw GgufError(source + ": general.alignment " + std::to_string(*alignment) +
                      " is not a power of two");
    }
    file.alignment = static_cast<std::uint64_t>(*alignment);
  }
  file.tensors.reserve(static_cast<std::size_t>(n_tensors));
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor tensor;
    tensor.name = in.get_string("a tensor name");
    const auto n_dims = in.get<std::uint32_t>();
    if (n_dims == 0 || n_dims > max_dims) {
      throw GgufError(source + ": tensor '" + tensor.name + "' has " + std::to_string(n_dims) +
                      " dimensions (1 to 4 are possible); the header is damaged");
    }
    for (std::uint32_t d = 0; d < n_dims; ++d) tensor.dims.push_back(in.get<std::uint64_t>());
    tensor.type_id = in.get<std::uint32_t>();
    tensor.offset = in.get<std::uint64_t>();
    if (!ggml_type_by_id(tensor.type_id)) {
      throw GgufError(source + ": tensor '" + tensor.name + "' has ggml type " +
                      std::to_string(tensor.type_id) + ", which this version of clawbot does not know");
    }
    file.tensors.push_back(std::move(tensor));
  }
  const std::uint64_t end = in.pos();
  file.data_offset = (end + file.alignment - 1) / file.alignment * file.alignment;
  file.header_bytes_read = data.size();
  return file;
}

class FileSource : public ByteSource {
 public:
  explicit FileSource(std::string path) : path_(std::move(path)), in_(path_, std::ios::binary) {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) {
      throw GgufError(path_ + ": no such file (give a path, or a file name in CLAWBOT_MODELS)");
    }
    if (!S_ISREG(st.st_mode)) throw GgufError(path_ + ": not a regular file");
    if (!in_) throw GgufError(path_ + ": cannot open it for reading (" + std::strerror(errno) + ")");
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
  std::string read(std::uint64_t offset, std::uint64_t size) override {
    if (offset >= size_) return {};
    size = std::min(size, size_ - offset);
    std::string out(static_cast<std::size_t>(size), '\0');
    in_.clear();
    in_.seekg(static_cast<std::streamoff>(offset));
    in_.read(out.data(), static_cast<std::streamsize>(size));
    if (static_cast<std::uint64_t>(in_.gcount()) != size) throw GgufError(path_ + ": read error");
    return out;
  }
  std::uint64_t size() override { return size_; }
  std::string name() const override { return path_; }

 private:
  std::string path_;
  std::ifstream in_;
  std::uint64_t size_ = 0;
};

class UrlSource : public ByteSource {
 public:
  explicit UrlSource(std::string url) : url_(std::move(url)) {}
  std::string read(std::uint64_t offset, std::uint64_t size) override {
    if (size == 0) return {};
    RangeResponse response;
    try {
      response = http_get_range(url_, offset, offset + size - 1, size + 1024);
    } catch (const std::exception& e) {
      if (std::string_view(e.what()).find("is larger than") != std::string_view::npos) {
        throw GgufError(url_ +
                        ": the server sent more than the range asked for (it does not honour HTTP range " +
                        "requests); download the file (clawbot models pull) and plan the local copy");
      }
      throw GgufError(e.what());
    }
    if (response.status == 416) {
      size_ = response.total_size;
      return {};
    }
    size_ = response.total_size;
    if (response.status == 200) {
      // The server ignored the range and sent the whole file (it fitted the limit): take our part of it.
      if (offset >= response.body.size()) return {};
      return response.body.substr(static_cast<std::size_t>(offset), static_cast<std::size_t>(size));
    }
    return std::move(response.body);
  }
  std::uint64_t size() override {
    if (!size_) read(0, 1);
    return size_.value_or(0);
  }
  std::string name() const override { return url_; }

 private:
  std::string url_;
  std::optional<std::uint64_t> size_;
};

}  // namespace

// ---------------------------------------------------------------- ggml types

const std::vector<GgmlType>& ggml_types() {
  return types;
}

const GgmlType* ggml_type_by_id(std::uint32_t id) {
  for (const auto& t : types) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

const GgmlType* ggml_type_by_name(std::string_view name) {
  for (const auto& t : types) {
    if (t.name.size() == name.size() &&
        std::equal(name.begin(), name.end(), t.name.begin(),
                   [](char a, char b) { return text::lower(a) == text::lower(b); })) {
      return &t;
    }
  }
  return nullptr;
}

std::uint64_t ggml_row_bytes(const GgmlType& type, std::uint64_t n) {
  if (n % type.block_size != 0) {
    throw GgufError("a row of " + std::to_string(n) + " elements is not a whole number of " +
                    std::string(type.name) + " blocks (" + std::to_string(type.block_size) +
                    " elements each)");
  }
  return n / type.block_size * type.type_size;
}

// ---------------------------------------------------------------- values

std::string_view gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::u8:
      return "u8";
    case GgufType::i8:
      return "i8";
    case GgufType::u16:
      return "u16";
    case GgufType::i16:
      return "i16";
    case GgufType::u32:
      return "u32";
    case GgufType::i32:
      return "i32";
    case GgufType::f32:
      return "f32";
    case GgufType::boolean:
      return "bool";
    case GgufType::string:
      return "string";
    case GgufType::array:
      return "array";
    case GgufType::u64:
      return "u64";
    case GgufType::i64:
      return "i64";
    case GgufType::f64:
      return "f64";
  }
  return "?";
}

bool GgufValue::is_number() const noexcept {
  return !is_array() && !is_string();
}

std::optional<double> GgufValue::as_double() const {
  if (!is_number()) return std::nullopt;
  if (auto* u = std::get_if<std::uint64_t>(&scalar)) return static_cast<double>(*u);
  if (auto* i = std::get_if<std::int64_t>(&scalar)) return static_cast<double>(*i);
  if (auto* d = std::get_if<double>(&scalar)) return *d;
  if (auto* b = std::get_if<bool>(&scalar)) return *b ? 1.0 : 0.0;
  return std::nullopt;
}

std::optional<std::int64_t> GgufValue::as_int() const {
  if (!is_number()) return std::nullopt;
  if (auto* u = std::get_if<std::uint64_t>(&scalar)) return static_cast<std::int64_t>(*u);
  if (auto* i = std::get_if<std::int64_t>(&scalar)) return *i;
  if (auto* d = std::get_if<double>(&scalar)) {
    // A float a file says is a count: only one an int64 holds is one (NaN, +-1e31: no integer; casting them
    // is undefined behaviour). 2^63 is the first double out of range.
    if (!(*d >= -9223372036854775808.0 && *d < 9223372036854775808.0)) return std::nullopt;
    return static_cast<std::int64_t>(*d);
  }
  if (auto* b = std::get_if<bool>(&scalar)) return *b ? 1 : 0;
  return std::nullopt;
}

const std::string* GgufValue::as_string() const {
  return std::get_if<std::string>(&scalar);
}

std::string GgufValue::to_text(std::size_t max_items) const {
  if (is_array()) {
    std::string out = "[";
    const std::size_t shown = std::min(items.size(), max_items);
    for (std::size_t i = 0; i < shown; ++i) out += (i ? ", " : "") + items[i].to_text(max_items);
    if (items.size() > shown)
      out += ", ... (" + std::to_string(items.size()) + " " + std::string(gguf_type_name(element_type)) +
             " items)";
    return out + "]";
  }
  if (const auto* s = as_string()) {
    std::string shown = s->size() > 120 ? s->substr(0, 120) + "..." : *s;
    std::string escaped;
    for (char c : shown) {
      if (c == '\n')
        escaped += "\\n";
      else if (c == '"')
        escaped += "\\\"";
      else if (static_cast<unsigned char>(c) < 0x20)
        escaped += ' ';
      else
        escaped += c;
    }
    return "\"" + escaped + "\"" + (s->size() > 120 ? " (" + std::to_string(s->size()) + " bytes)" : "");
  }
  if (auto* b = std::get_if<bool>(&scalar)) return *b ? "true" : "false";
  if (auto* d = std::get_if<double>(&scalar)) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%g", *d);
    return buf;
  }
  if (auto* u = std::get_if<std::uint64_t>(&scalar)) return std::to_string(*u);
  if (auto* i = std::get_if<std::int64_t>(&scalar)) return std::to_string(*i);
  return "?";
}

// ---------------------------------------------------------------- tensors and file

std::uint64_t GgufTensor::elements() const noexcept {
  std::uint64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

std::uint64_t GgufTensor::bytes() const {
  const GgmlType* type = ggml_type_by_id(type_id);
  if (!type) throw GgufError("tensor '" + name + "' has unknown ggml type " + std::to_string(type_id));
  std::uint64_t rows = 1;
  for (std::size_t d = 1; d < dims.size(); ++d) rows *= dims[d];
  try {
    return ggml_row_bytes(*type, dims.empty() ? 0 : dims[0]) * rows;
  } catch (const GgufError& e) {
    throw GgufError("tensor '" + name + "': " + e.what());
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return &v;
  }
  return nullptr;
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const auto* v = find(key);
  if (!v || !v->as_string()) return std::nullopt;
  return *v->as_string();
}

std::optional<std::int64_t> GgufFile::get_int(std::string_view key) const {
  const auto* v = find(key);
  return v ? v->as_int() : std::nullopt;
}

std::optional<double> GgufFile::get_double(std::string_view key) const {
  const auto* v = find(key);
  return v ? v->as_double() : std::nullopt;
}

std::string GgufFile::architecture() const {
  return get_string("general.architecture").value_or("");
}

std::string GgufFile::arch_key(std::string_view suffix) const {
  return architecture() + "." + std::string(suffix);
}

std::uint64_t GgufFile::tensor_bytes() const {
  std::uint64_t total = 0;
  for (const auto& t : tensors) total += t.bytes();
  return total;
}

std::uint64_t GgufFile::data_end() const {
  std::uint64_t end = data_offset;
  for (const auto& t : tensors) end = std::max(end, data_offset + t.offset + t.bytes());
  return end;
}

// ---------------------------------------------------------------- reading

GgufFile read_gguf(ByteSource& source, std::uint64_t first_read) {
  // The first read comes before size(): over HTTP its answer (Content-Range) carries the size.
  std::string data = source.read(0, first_read);
  const std::uint64_t total = source.size();
  for (;;) {
    try {
      GgufFile file = parse(data, data.size() >= total, source.name());
      file.file_size = total;
      return file;
    } catch (const NeedMore& more) {
      // Double what we have (at least what the parser asked for): few round trips for a long tokenizer.
      const std::uint64_t want = std::min(total, std::max<std::uint64_t>(more.at_least, data.size() * 2));
      std::string next = source.read(data.size(), want - data.size());
      if (next.empty()) {
        throw GgufError(source.name() + ": the file ends inside its GGUF header (at byte " +
                        std::to_string(data.size()) + "); it is truncated or not a complete download");
      }
      data += next;
    }
  }
}

bool is_url(std::string_view location) {
  return location.starts_with("http://") || location.starts_with("https://");
}

std::unique_ptr<ByteSource> open_url_source(const std::string& url) {
  return std::make_unique<UrlSource>(url);
}

GgufFile read_gguf(const std::string& location) {
  if (is_url(location)) {
    UrlSource source(location);
    // Most headers fit in 1 MiB (one round trip); a 150k-token tokenizer takes a few MiB (one or two more).
    return read_gguf(source, 1u << 20);
  }
  FileSource source(location);
  return read_gguf(source, 4u << 20);
}

}  // namespace clawbot::ops
