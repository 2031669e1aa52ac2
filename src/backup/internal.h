// Internal to src/backup: what the commands share.
#pragma once

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

namespace clawbot::backup {

class Restic;

// Every clawbot snapshot carries this tag; list, prune and restore look at no other.
inline constexpr const char* backup_tag = "clawbot";

struct RestoreOptions {
  std::string snapshot = "latest";    // an id, its prefix, or "latest"
  std::filesystem::path target_root;  // empty: the files' own paths
  std::vector<std::string> items;     // empty: all (sessions, keys, audit, configs, models)
};

// Restores, verifies (SHA-256 of every file, SQLite's integrity check, the audit chain) and says so on `out`.
// 0 when everything verifies, 1 when the audit chain does not; throws ClawbotError for the rest (forbidden:
// a running process holds a destination open).
int restore_snapshot(const Restic& restic, const RestoreOptions& options, std::ostream& out);

}  // namespace clawbot::backup
