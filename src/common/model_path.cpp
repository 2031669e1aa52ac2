#include "common/model_path.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "common/edit_distance.h"
#include "common/error.h"
#include "common/user_dirs.h"

namespace clawbot {
namespace {

namespace fs = std::filesystem;

const char* models_env() {
  const char* env = std::getenv("CLAWBOT_MODELS");
  return env != nullptr && *env != '\0' ? env : nullptr;
}

// <user dir>/clawbot/models; empty when neither the XDG variable nor HOME is set.
std::string user_dir(user_dirs::Kind kind) {
  const auto base = user_dirs::find(kind);
  return base ? (*base / "clawbot" / "models").string() : std::string();
}

}  // namespace

std::optional<std::string> find_model_file(const std::string& name) {
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

std::string require_model_file(const std::string& name) {
  if (auto found = find_model_file(name)) return *found;
  throw ClawbotError(ErrorKind::not_found, model_not_found_message(name));
}

std::vector<std::string> model_dirs() {
  std::vector<std::string> out;
  if (const char* env = models_env()) {
    std::stringstream dirs{std::string(env)};
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
      if (!dir.empty()) out.push_back(dir);
    }
    return out;
  }
  for (auto dir : {user_dir(user_dirs::Kind::data), user_dir(user_dirs::Kind::cache)}) {
    if (!dir.empty()) out.push_back(std::move(dir));
  }
  return out;
}

std::string model_dirs_description() {
  if (const char* env = models_env()) return std::string("CLAWBOT_MODELS=") + env;
  std::string dirs;
  for (const auto& dir : model_dirs()) dirs += (dirs.empty() ? "" : " and ") + dir;
  return (dirs.empty() ? std::string("no directory (HOME is unset)") : dirs) + " (CLAWBOT_MODELS is unset)";
}

std::vector<std::string> similar_model_names(const std::string& name) {
  std::vector<std::string> names;
  for (const auto& dir : model_dirs()) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.path().extension() == ".gguf" || entry.path().extension() == ".enc")
        names.push_back(entry.path().filename().string());
    }
  }
  const std::string wanted = fs::path(name).filename().string();
  auto close = closest_names(wanted, names);
  // "stories260K" for "stories260K.gguf": the name without its extension is close too.
  if (close.empty() && !wanted.ends_with(".gguf")) close = closest_names(wanted + ".gguf", names);
  return close;
}

std::string model_not_found_message(const std::string& name) {
  std::string message =
      "no model file '" + name + "' in the current directory nor in " + model_dirs_description();
  if (name.find('/') != std::string::npos) message = "no such model file '" + name + "'";
  const auto close = similar_model_names(name);
  for (std::size_t k = 0; k < close.size(); ++k)
    message += (k == 0 ? "; did you mean '" : k + 1 == close.size() ? "' or '" : "', '") + close[k];
  if (!close.empty()) message += "'?";
  return message;
}

}  // namespace clawbot
