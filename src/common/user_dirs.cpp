#include "common/user_dirs.h"

#include <cstdlib>

#include "common/error.h"

namespace clawbot::user_dirs {
namespace {

struct KindInfo {
  const char* variable;
  const char* under_home;
};

KindInfo info(Kind kind) noexcept {
  switch (kind) {
    case Kind::config:
      return {"XDG_CONFIG_HOME", ".config"};
    case Kind::data:
      return {"XDG_DATA_HOME", ".local/share"};
    case Kind::cache:
      return {"XDG_CACHE_HOME", ".cache"};
    case Kind::state:
      break;
  }
  return {"XDG_STATE_HOME", ".local/state"};
}

}  // namespace

std::optional<std::filesystem::path> home() {
  const char* value = std::getenv("HOME");
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::filesystem::path(value);
}

std::optional<std::filesystem::path> find(Kind kind) {
  const KindInfo k = info(kind);
  if (const char* xdg = std::getenv(k.variable); xdg != nullptr && xdg[0] == '/')
    return std::filesystem::path(xdg);
  if (auto base = home()) return *base / k.under_home;
  return std::nullopt;
}

std::string missing(Kind kind) {
  return std::string("neither ") + info(kind).variable + " nor HOME is set";
}

std::filesystem::path require(Kind kind, std::string_view hint) {
  if (auto dir = find(kind)) return *dir;
  std::string message = missing(kind);
  if (!hint.empty()) message += std::string("; ") + std::string(hint);
  throw ClawbotError(ErrorKind::internal, message);
}

}  // namespace clawbot::user_dirs
