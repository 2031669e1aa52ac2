// Checks a model file before libllama sees it, so a bad file gets a message that says what is wrong.
#include <array>
#include <filesystem>
#include <fstream>
#include <memory>

#include <gguf.h>

#include "engine/engine.h"

namespace clawbot::engine {

void check_gguf_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw ModelFileError("model file '" + path + "' not found");
  if (fs::is_directory(status))
    throw ModelFileError("model file '" + path + "' is a directory, not a GGUF file");
  const std::uintmax_t file_size = fs::file_size(path, ec);
  if (ec) throw ModelFileError("model file '" + path + "' cannot be read: " + ec.message());

  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelFileError("model file '" + path + "' cannot be opened for reading");
  std::array<char, 4> magic{};
  in.read(magic.data(), magic.size());
  if (in.gcount() < 4 || std::string_view(magic.data(), 4) != "GGUF") {
    throw ModelFileError("model file '" + path +
                         "' is not a GGUF file (it does not start with the bytes 'GGUF')");
  }

  struct GgufDeleter {
    void operator()(gguf_context* c) const noexcept { gguf_free(c); }
  };
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  std::unique_ptr<gguf_context, GgufDeleter> gguf(gguf_init_from_file(path.c_str(), params));
  if (!gguf) {
    throw ModelFileError("model file '" + path + "' is a damaged or truncated GGUF file: its header (" +
                         std::to_string(file_size) + " bytes on disk) cannot be parsed");
  }
  const size_t data_offset = gguf_get_data_offset(gguf.get());
  std::uintmax_t needed = data_offset;
  const int64_t n_tensors = gguf_get_n_tensors(gguf.get());
  for (int64_t i = 0; i < n_tensors; ++i) {
    const std::uintmax_t end =
        data_offset + gguf_get_tensor_offset(gguf.get(), i) + gguf_get_tensor_size(gguf.get(), i);
    needed = std::max(needed, end);
  }
  if (n_tensors > 0 && file_size < needed) {
    throw ModelFileError("model file '" + path + "' is truncated: its tensors need " +
                         std::to_string(needed) + " bytes but the file has " + std::to_string(file_size) +
                         " (an interrupted download or copy? fetch it again and check its hash)");
  }
}

}  // namespace clawbot::engine
