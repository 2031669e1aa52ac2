// Writes GGUF files for the reader and plan tests: metadata of every type, a tensor table, and tensor data
// or none (a header-only file, as for the reference-deployment plans).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace clawbot::ops::test {

class GgufWriter {
 public:
  void u32(const std::string& key, std::uint32_t v) { scalar(key, 4, &v, sizeof v); }
  void i32(const std::string& key, std::int32_t v) { scalar(key, 5, &v, sizeof v); }
  void f32(const std::string& key, float v) { scalar(key, 6, &v, sizeof v); }
  void boolean(const std::string& key, bool v) {
    const std::uint8_t b = v ? 1 : 0;
    scalar(key, 7, &b, 1);
  }
  void u64(const std::string& key, std::uint64_t v) { scalar(key, 10, &v, sizeof v); }
  void str(const std::string& key, const std::string& v) {
    key_(key);
    pod(std::uint32_t{8});
    string(v);
    ++n_kv_;
  }
  void i32_array(const std::string& key, const std::vector<std::int32_t>& values) {
    key_(key);
    pod(std::uint32_t{9});
    pod(std::uint32_t{5});
    pod(static_cast<std::uint64_t>(values.size()));
    for (auto v : values) pod(v);
    ++n_kv_;
  }
  void bool_array(const std::string& key, const std::vector<bool>& values) {
    key_(key);
    pod(std::uint32_t{9});
    pod(std::uint32_t{7});
    pod(static_cast<std::uint64_t>(values.size()));
    for (bool v : values) pod(std::uint8_t{v ? std::uint8_t{1} : std::uint8_t{0}});
    ++n_kv_;
  }
  void str_array(const std::string& key, const std::vector<std::string>& values) {
    key_(key);
    pod(std::uint32_t{9});
    pod(std::uint32_t{8});
    pod(static_cast<std::uint64_t>(values.size()));
    for (const auto& v : values) string(v);
    ++n_kv_;
  }
  // A tensor of `bytes` bytes of data (the caller computes them from the type); offsets are aligned to 32.
  void tensor(const std::string& name, std::vector<std::uint64_t> dims, std::uint32_t type,
              std::uint64_t bytes) {
    tensors_.push_back({name, std::move(dims), type, data_size_});
    data_size_ += (bytes + 31) / 32 * 32;
  }

  // The whole file: header, tensor table, padding and (with_data) zeroed tensor data.
  std::string bytes(bool with_data) const {
    std::string out = "GGUF";
    append(out, std::uint32_t{3});
    append(out, static_cast<std::uint64_t>(tensors_.size()));
    append(out, n_kv_);
    out += kv_;
    for (const auto& t : tensors_) {
      append(out, static_cast<std::uint64_t>(t.name.size()));
      out += t.name;
      append(out, static_cast<std::uint32_t>(t.dims.size()));
      for (auto d : t.dims) append(out, d);
      append(out, t.type);
      append(out, t.offset);
    }
    out.resize((out.size() + 31) / 32 * 32, '\0');
    if (with_data) out.resize(out.size() + data_size_, '\0');
    return out;
  }
  void write(const std::string& path, bool with_data) const {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    const std::string b = bytes(with_data);
    f.write(b.data(), static_cast<std::streamsize>(b.size()));
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<std::uint64_t> dims;
    std::uint32_t type;
    std::uint64_t offset;
  };
  template <class T>
  static void append(std::string& out, T v) {
    char buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));
    out.append(buf, sizeof(T));
  }
  template <class T>
  void pod(T v) {
    append(kv_, v);
  }
  void string(const std::string& s) {
    pod(static_cast<std::uint64_t>(s.size()));
    kv_ += s;
  }
  void key_(const std::string& key) { string(key); }
  void scalar(const std::string& key, std::uint32_t type, const void* v, std::size_t n) {
    key_(key);
    pod(type);
    kv_.append(static_cast<const char*>(v), n);
    ++n_kv_;
  }

  std::string kv_;
  std::uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
  std::uint64_t data_size_ = 0;
};

}  // namespace clawbot::ops::test
