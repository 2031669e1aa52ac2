// restic, driven as a child process: the user never calls it. The repository's password reaches restic
// through RESTIC_PASSWORD_FILE (a file, mode 0600), never the command line; every answer is read from its
// --json output through json_read. Failures throw ClawbotError with a message that says what to do: a wrong
// password and a missing repository each have their own.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backup/child.h"

namespace clawbot::backup {

struct Repository {
  std::string location;                 // a directory, or sftp:host:/path, or any restic location
  std::filesystem::path password_file;  // 0600
  std::filesystem::path cache_dir;      // restic's cache (RESTIC_CACHE_DIR); empty: restic's default
  std::string sftp_command;  // an sftp: repository's ssh command (restic -o sftp.command); empty: restic's
};

struct BackupSummary {
  std::string snapshot_id;
  std::uint64_t files_new = 0, files_changed = 0, files_unmodified = 0;
  std::uint64_t data_added = 0;             // bytes the repository grew by (after deduplication, compressed)
  std::uint64_t total_bytes_processed = 0;  // bytes read from the sources
  double seconds = 0;
  nlohmann::json to_json() const;
};

struct Snapshot {
  std::string id, short_id, time, hostname;
  std::vector<std::string> paths, tags;
};

struct Retention {
  int daily = 7, weekly = 4, monthly = 6;
};

struct ForgetResult {
  std::vector<Snapshot> kept, removed;
};

class Restic {
 public:
  explicit Restic(Repository repository);

  // True when a repository is at the location and the password opens it; false when there is none there;
  // throws for a wrong password or any other failure.
  bool exists() const;
  void init() const;
  BackupSummary backup(const std::vector<std::filesystem::path>& paths, const std::string& tag,
                       const std::string& time = {}) const;
  std::vector<Snapshot> snapshots(const std::string& tag) const;
  // restic check (with --read-data, every pack is read back and its hash checked). The report's text.
  struct CheckResult {
    bool ok = false;
    std::string report;
  };
  CheckResult check(bool read_data, const std::string& subset = {}) const;
  ForgetResult forget(const std::string& tag, const Retention& retention) const;
  void prune() const;
  // Restores `snapshot` (an id or "latest") under `target`, each path at target/<its absolute path>; only the
  // paths under `includes` when given.
  void restore(const std::string& snapshot, const std::filesystem::path& target,
               const std::vector<std::filesystem::path>& includes, const std::string& tag) const;

  const Repository& repository() const noexcept { return repository_; }

 private:
  ChildResult run(std::vector<std::string> args, bool json) const;
  [[noreturn]] void fail(const std::vector<std::string>& args, const ChildResult& result) const;
  Repository repository_;
};

}  // namespace clawbot::backup
