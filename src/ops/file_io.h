// File descriptors, whole reads and writes, and a progress bar: what verify and crypt share. Internal to
// src/ops; every failure throws ClawbotError naming the file and the system's reason.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace clawbot::ops::detail {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// Opens for reading a regular file (not a directory or a device); throws naming the file.
UniqueFd open_regular_file(const std::string& path, std::uint64_t& size_bytes);

// Reads exactly data.size() bytes at offset; returns fewer only at the end of the file.
std::size_t pread_full(int fd, std::span<std::byte> data, std::uint64_t offset, const std::string& path);
void pwrite_full(int fd, std::span<const std::byte> data, std::uint64_t offset, const std::string& path);

// A private writable mapping of the first `size` bytes of fd (after posix_fallocate, so a full disk or
// memory limit is an error here rather than a SIGBUS later); unmapped on destruction.
class WritableMapping {
 public:
  WritableMapping(int fd, std::uint64_t size, const std::string& what);
  WritableMapping(const WritableMapping&) = delete;
  WritableMapping& operator=(const WritableMapping&) = delete;
  ~WritableMapping();
  std::byte* data() const noexcept { return data_; }
  // Unmaps now (a write seal needs no writable mapping left).
  void unmap() noexcept;

 private:
  std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
};

// "1.23 GB/s" (decimal units, as disks and networks are rated).
std::string format_rate(std::uint64_t bytes, double seconds);
std::string format_bytes(std::uint64_t bytes);
// "1.12 MiB", "42.52 GiB" (binary units, as memory is counted).
std::string format_binary_size(double bytes);
// "292.8K", "1.24B": parameter and token counts.
std::string format_count(std::uint64_t n);

// A one-line progress bar with throughput on stderr, drawn only when stderr is a terminal.
class ProgressBar {
 public:
  ProgressBar(std::string label, std::uint64_t total_bytes, bool enabled);
  void update(std::uint64_t done_bytes);
  // Clears the line (what follows is the result).
  void finish();
  double elapsed_s() const;
  bool enabled() const noexcept { return enabled_; }

 private:
  std::string label_;
  std::uint64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace clawbot::ops::detail
