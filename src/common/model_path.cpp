#include "common/model_path.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>

namespace clawbot {
namespace {

std::string model_dirs_text() {
  const char* env = std::getenv("CLAWBOT_MODELS");
  return env && *env ? env : "../shared/models";
}

}  // namespace

std::optional<std::string> find_model_file(const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (name.find('/') != std::string::npos || fs::exists(name, ec)) {
    if (fs::is_regular_file(name, ec)) return name;
    return std::nullopt;
  }
  for (const auto& dir : model_dirs()) {
    const fs::path candidate = fs::path(dir) / name;
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
  }
  return std::nullopt;
}

std::vector<std::string> model_dirs() {
  std::vector<std::string> out;
  std::stringstream dirs(model_dirs_text());
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty()) out.push_back(dir);
  }
  return out;
}

std::string model_dirs_description() {
  const char* env = std::getenv("CLAWBOT_MODELS");
  return "CLAWBOT_MODELS=" + model_dirs_text() + (env && *env ? "" : " (the default)");
}

}  // namespace clawbot
