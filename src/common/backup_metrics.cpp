#include "common/backup_metrics.h"

#include <fstream>
#include <sstream>

#include "common/user_dirs.h"

namespace clawbot {

std::filesystem::path backup_metrics_path() {
  const auto state = user_dirs::find(user_dirs::Kind::state);
  return state ? *state / "clawbot" / "backup" / "metrics.prom" : std::filesystem::path();
}

std::string backup_metrics_text() {
  const auto file = backup_metrics_path();
  if (file.empty()) return {};
  std::ifstream in(file);
  std::string text, line;
  // Only the backup's own families: the file is on disk, and /metrics must stay well-formed whatever it
  // holds.
  while (text.size() < 16 * 1024 && std::getline(in, line)) {
    if (line.starts_with("clawbot_backup_") || line.starts_with("# HELP clawbot_backup_") ||
        line.starts_with("# TYPE clawbot_backup_"))
      text += line + "\n";
  }
  return text;
}

}  // namespace clawbot
