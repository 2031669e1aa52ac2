// The test model files: found in CLAWBOT_MODELS (colon-separated), else the directory CMake names
// (CLAWBOT_DEFAULT_MODELS, ../shared/models).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace clawbot::test {

inline std::string model_path(const std::string& name) {
  namespace fs = std::filesystem;
  const char* env = std::getenv("CLAWBOT_MODELS");
  std::stringstream dirs(env && *env ? env : CLAWBOT_DEFAULT_MODELS);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && fs::exists(fs::path(dir) / name)) return (fs::path(dir) / name).string();
  }
  ADD_FAILURE() << "test model " << name
                << " not found in CLAWBOT_MODELS=" << (env ? env : CLAWBOT_DEFAULT_MODELS)
                << " (a set-up error: point CLAWBOT_MODELS at shared/models)";
  return name;
}

}  // namespace clawbot::test
