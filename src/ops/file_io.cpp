#include "ops/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "common/error.h"

namespace clawbot::ops::detail {

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

UniqueFd open_regular_file(const std::string& path, std::uint64_t& size_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw ClawbotError(ErrorKind::internal, "cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    throw ClawbotError(ErrorKind::internal, "cannot stat '" + path + "': " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw ClawbotError(ErrorKind::internal, "'" + path + "' is not a regular file");
  size_bytes = static_cast<std::uint64_t>(st.st_size);
  return fd;
}

std::size_t pread_full(int fd, std::span<std::byte> data, std::uint64_t offset, const std::string& path) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pread(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw ClawbotError(ErrorKind::internal, "cannot read '" + path + "': " + std::strerror(errno));
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

void pwrite_full(int fd, std::span<const std::byte> data, std::uint64_t offset, const std::string& path) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw ClawbotError(ErrorKind::internal, "cannot write '" + path + "': " + std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
}

WritableMapping::WritableMapping(int fd, std::uint64_t size, const std::string& what) : size_(size) {
  if (size == 0) return;
  if (const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size)); rc != 0) {
    throw ClawbotError(ErrorKind::internal, "cannot reserve " + format_bytes(size) + " for " + what + ": " +
                                                std::strerror(rc) +
                                                (rc == ENOSPC ? " (not enough disk space or memory)" : ""));
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    throw ClawbotError(ErrorKind::internal, "cannot map " + what + ": " + std::strerror(errno));
  data_ = static_cast<std::byte*>(p);
}

WritableMapping::~WritableMapping() {
  unmap();
}

void WritableMapping::unmap() noexcept {
  if (data_) ::munmap(data_, size_);
  data_ = nullptr;
}

std::string format_rate(std::uint64_t bytes, double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f GB/s",
                seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0.0);
  return text;
}

std::string format_bytes(std::uint64_t bytes) {
  char text[32];
  const double b = static_cast<double>(bytes);
  if (bytes >= 1'000'000'000ULL) {
    std::snprintf(text, sizeof text, "%.2f GB", b / 1e9);
  } else if (bytes >= 1'000'000ULL) {
    std::snprintf(text, sizeof text, "%.1f MB", b / 1e6);
  } else {
    std::snprintf(text, sizeof text, "%llu bytes", static_cast<unsigned long long>(bytes));
  }
  return text;
}

std::string format_binary_size(double bytes) {
  constexpr double mib = 1024.0 * 1024.0;
  char text[32];
  if (bytes >= 1024.0 * mib) {
    std::snprintf(text, sizeof text, "%.2f GiB", bytes / (1024.0 * mib));
  } else if (bytes >= mib) {
    std::snprintf(text, sizeof text, "%.2f MiB", bytes / mib);
  } else {
    std::snprintf(text, sizeof text, "%.1f KiB", bytes / 1024.0);
  }
  return text;
}

std::string format_count(std::uint64_t n) {
  char text[32];
  const double v = static_cast<double>(n);
  if (n >= 1'000'000'000) {
    std::snprintf(text, sizeof text, "%.2fB", v / 1e9);
  } else if (n >= 1'000'000) {
    std::snprintf(text, sizeof text, "%.1fM", v / 1e6);
  } else if (n >= 1'000) {
    std::snprintf(text, sizeof text, "%.1fK", v / 1e3);
  } else {
    std::snprintf(text, sizeof text, "%llu", static_cast<unsigned long long>(n));
  }
  return text;
}

ProgressBar::ProgressBar(std::string label, std::uint64_t total_bytes, bool enabled)
    : label_(std::move(label)),
      total_(total_bytes),
      enabled_(enabled && ::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

double ProgressBar::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::update(std::uint64_t done_bytes) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;  // ten redraws a second
  last_draw_ = now;
  drawn_ = true;
  const double fraction =
      total_ > 0 ? std::clamp(static_cast<double>(done_bytes) / static_cast<double>(total_), 0.0, 1.0) : 1.0;
  constexpr int width = 30;
  const int filled = static_cast<int>(fraction * width);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.append(static_cast<std::size_t>(width - filled), '.');
  const double elapsed = elapsed_s();
  std::fprintf(stderr, "\r%s [%s] %3d%% %s of %s, %s ", label_.c_str(), bar.c_str(),
               static_cast<int>(fraction * 100), format_bytes(done_bytes).c_str(),
               format_bytes(total_).c_str(), format_rate(done_bytes, elapsed).c_str());
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (!enabled_ || !drawn_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

}  // namespace clawbot::ops::detail
