// Shared by the fuzz targets whose seeds are binary files made by our own writers (an encrypted file, a
// GGUF header): with CLAWBOT_FUZZ_WRITE_SEEDS=<dir> in the environment, the target writes its seeds there
// and exits instead of fuzzing (tests/fuzz/README: how the corpora were made).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>

namespace clawbot::fuzz {

// Calls `write(dir)` and exits when CLAWBOT_FUZZ_WRITE_SEEDS is set.
inline void write_seeds_if_asked(const std::function<void(const std::filesystem::path&)>& write) {
  const char* dir = std::getenv("CLAWBOT_FUZZ_WRITE_SEEDS");
  if (!dir || !*dir) return;
  std::filesystem::create_directories(dir);
  write(dir);
  std::exit(0);
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A scratch directory for targets that read files (removed at exit).
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path base =
        std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    std::string name = "clawbot-fuzz-XXXXXX";
    std::string path = (base / name).string();
    if (!::mkdtemp(path.data())) std::abort();
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return std::filesystem::path(path);
  }();
  return dir;
}

}  // namespace clawbot::fuzz
