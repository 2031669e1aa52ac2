// Backups of everything clawbot keeps on a machine (sessions, the gateway's keys, secret and audit log,
// configs, models and their sums) into a restic repository that clawbot drives, and restores from it
// (`clawbot backup create|list|verify|prune|restore|schedule`, `clawbot restore`); a cold standby kept in
// step over SSH (`clawbot standby sync|check`); the systemd units (`clawbot install-service`).
#pragma once

#include <functional>
#include <optional>

namespace CLI {
class App;
}

namespace clawbot::backup {

// Registers `backup`, `restore`, `standby` and `install-service` on `app`; the returned function runs the one
// the command line named (nullopt when it named neither) and returns its exit status.
std::function<std::optional<int>()> add_backup_commands(CLI::App& app);

}  // namespace clawbot::backup
