// Internal to src/backup: the cold standby. `clawbot standby sync HOST` copies the models, configs and keys
// (the keys database as an online-backup snapshot) to the same paths on HOST (or under --remote-root) with
// rsync over SSH, only what changed, then has HOST hash every file and compares the sums; `standby check
// HOST` reports drift: files whose sums differ or that are missing there, config differences line by line,
// the version of clawbot there, and how long ago the last sync was.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "backup/state.h"

namespace clawbot::backup {

struct SshOptions {
  std::string host;  // [user@]host
  int port = 22;
  std::string identity;                    // -i
  std::string known_hosts;                 // UserKnownHostsFile (strict checking stays on)
  std::string remote_root;                 // files go to REMOTE_ROOT/<their path>; empty: the same paths
  std::string remote_clawbot = "clawbot";  // for the version check
};

struct StandbyOptions {
  SshOptions ssh;
  SourceOptions sources;  // items: configs, keys, models
  bool json = false;
  double stale_after_h = 26;  // check: a last sync older than this is drift (a daily sync missed)
};

int standby_sync(const StandbyOptions& options);
int standby_check(const StandbyOptions& options);

}  // namespace clawbot::backup
