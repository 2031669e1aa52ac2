#include "backup/standby.h"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include "backup/child.h"
#include "common/error.h"
#include "common/json_read.h"

namespace clawbot::backup {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::vector<std::string> ssh_command(const SshOptions& ssh) {
  std::vector<std::string> argv{
      "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-p", std::to_string(ssh.port)};
  if (!ssh.identity.empty()) argv.insert(argv.end(), {"-i", ssh.identity});
  if (!ssh.known_hosts.empty()) argv.insert(argv.end(), {"-o", "UserKnownHostsFile=" + ssh.known_hosts});
  return argv;
}

// rsync's -e: the ssh command as one string (rsync splits it on spaces; no shell).
std::string rsync_shell(const SshOptions& ssh) {
  std::string joined;
  for (const auto& word : ssh_command(ssh)) {
    if (word.find(' ') != std::string::npos)
      throw_invalid("'" + word + "': a path with a space cannot go through rsync's -e", "--identity");
    joined += (joined.empty() ? "" : " ") + word;
  }
  return joined;
}

fs::path remote_path(const SshOptions& ssh, const fs::path& path) {
  return ssh.remote_root.empty() ? path : fs::path(ssh.remote_root) / path.relative_path();
}

// A word for the remote shell (ssh hands the command line to the login shell there): single-quoted.
std::string quoted(const std::string& word) {
  std::string out = "'";
  for (const char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

ChildResult run_remote(const SshOptions& ssh, const std::vector<std::string>& command) {
  std::vector<std::string> argv = ssh_command(ssh);
  argv.push_back(ssh.host);
  std::string line;
  for (const auto& word : command) line += (line.empty() ? "" : " ") + quoted(word);
  argv.push_back(line);
  return run_child(argv);
}

[[noreturn]] void ssh_failed(const SshOptions& ssh, const std::string& doing, const ChildResult& result) {
  throw ClawbotError(ErrorKind::unavailable, "standby " + ssh.host + ": " + doing + " failed (exit status " +
                                                 std::to_string(result.status) +
                                                 "): " + last_lines(result.err));
}

// The far end's SHA-256 of each path (sha256sum there); a missing file has none.
std::map<std::string, std::string> remote_sums(const SshOptions& ssh, const std::vector<fs::path>& paths) {
  std::vector<std::string> command{"sha256sum", "--"};
  for (const auto& p : paths) command.push_back(p.string());
  const ChildResult result = run_remote(ssh, command);
  if (result.status == 255) ssh_failed(ssh, "ssh", result);  // ssh's own failure; 1 is a missing file
  std::map<std::string, std::string> sums;
  std::istringstream lines(result.out);
  for (std::string line; std::getline(lines, line);)
    if (line.size() > 66 && line[64] == ' ') sums[line.substr(66)] = line.substr(0, 64);
  return sums;
}

StagedState stage_for_standby(const StandbyOptions& options, const fs::path& staging) {
  SourceOptions sources = options.sources;
  if (sources.items.empty()) sources.items = {"configs", "keys", "models"};
  return stage_state(sources, staging, state_dir() / "model-sums.json");
}

fs::path sync_record(const SshOptions& ssh) {
  std::string name = ssh.host;
  for (char& c : name)
    if (c == '/' || c == '@') c = '_';
  return state_dir() / ("standby-" + name + ".json");
}

}  // namespace

int standby_sync(const StandbyOptions& options) {
  const SshOptions& ssh = options.ssh;
  const fs::path staging = state_dir() / "standby-staging";
  const StagedState staged = stage_for_standby(options, staging);
  const std::string shell = rsync_shell(ssh);
  std::uint64_t files_sent = 0;
  // Each file to its own path there: --mkpath makes the folders, --checksum would reread every model each
  // time, so rsync's size and time check picks what changed and the sums below prove the result.
  for (const auto& f : staged.files) {
    const std::vector<std::string> argv{
        "rsync", "-a",  "--mkpath",        "--stats",
        "-e",    shell, f.stored.string(), ssh.host + ":" + remote_path(ssh, f.path).string()};
    const ChildResult result = run_child(argv);
    if (!result.ok()) ssh_failed(ssh, "rsync of " + f.path.string(), result);
    if (result.out.find("Number of regular files transferred: 0") == std::string::npos) ++files_sent;
  }
  std::vector<fs::path> remote;
  for (const auto& f : staged.files) remote.push_back(remote_path(ssh, f.path));
  // The far end hashes what it holds. A file that differs there with the same size and time (rsync's quick
  // check let it pass: a disk error, a change by hand) is sent again, compared by content this time.
  const auto differing = [&] {
    const auto sums = remote_sums(ssh, remote);
    std::vector<std::size_t> bad;
    for (std::size_t i = 0; i < staged.files.size(); ++i) {
      const auto it = sums.find(remote[i].string());
      if (it == sums.end() || it->second != staged.files[i].sha256) bad.push_back(i);
    }
    return bad;
  };
  std::vector<std::size_t> bad = differing();
  const std::size_t resent = bad.size();
  for (const std::size_t i : bad) {
    const std::vector<std::string> argv{"rsync",
                                        "-a",
                                        "--mkpath",
                                        "--checksum",
                                        "--ignore-times",
                                        "-e",
                                        shell,
                                        staged.files[i].stored.string(),
                                        ssh.host + ":" + remote[i].string()};
    if (const ChildResult result = run_child(argv); !result.ok())
      ssh_failed(ssh, "rsync of " + staged.files[i].path.string(), result);
  }
  if (resent > 0) bad = differing();
  if (!bad.empty()) {
    std::string message = "standby " + ssh.host + ": after the copy, these files' SHA-256 there differs:";
    for (const std::size_t i : bad) message += "\n  " + remote[i].string();
    throw ClawbotError(ErrorKind::internal, message);
  }
  json record{{"host", ssh.host}, {"time_unix", now_unix()}, {"files", json::array()}};
  for (const auto& f : staged.files)
    record["files"].push_back({{"path", f.path.string()}, {"sha256", f.sha256}});
  std::ofstream(sync_record(ssh), std::ios::trunc) << record.dump(1) << "\n";
  if (resent > 0)
    std::cout << "standby " << ssh.host << ": sent again " << resent << " file" << (resent == 1 ? "" : "s")
              << " whose SHA-256 differed there\n";
  std::cout << "standby " << ssh.host << ": " << staged.files.size() << " files in step (" << files_sent
            << " sent), every SHA-256 checked there\n";
  return 0;
}

int standby_check(const StandbyOptions& options) {
  const SshOptions& ssh = options.ssh;
  const fs::path staging = state_dir() / "standby-check";
  const StagedState staged = stage_for_standby(options, staging);
  std::vector<fs::path> remote;
  for (const auto& f : staged.files) remote.push_back(remote_path(ssh, f.path));
  const auto sums = remote_sums(ssh, remote);
  json report{{"host", ssh.host},
              {"differ", json::array()},
              {"missing", json::array()},
              {"config_diffs", json::object()}};
  std::size_t same = 0;
  for (std::size_t i = 0; i < staged.files.size(); ++i) {
    const StateFile& f = staged.files[i];
    const auto it = sums.find(remote[i].string());
    if (it == sums.end()) {
      report["missing"].push_back(f.path.string());
    } else if (it->second != f.sha256) {
      report["differ"].push_back(f.path.string());
      if (f.item == "configs") {
        const ChildResult theirs = run_remote(ssh, {"cat", "--", remote[i].string()});
        const fs::path copy = staging / "remote-config";
        std::ofstream(copy, std::ios::trunc) << theirs.out;
        const ChildResult diff = run_child(
            std::vector<std::string>{"diff", "-u", "--label", "here:" + f.path.string(), "--label",
                                     ssh.host + ":" + remote[i].string(), f.stored.string(), copy.string()});
        report["config_diffs"][f.path.string()] = diff.out;
      }
    } else {
      ++same;
    }
  }
  const ChildResult version = run_remote(ssh, {ssh.remote_clawbot, "--version"});
  const std::string theirs = version.ok() ? last_lines(version.out, 1) : "";
  const std::string ours = std::string("clawbot ") + CLAWBOT_VERSION;
  report["version_here"] = ours;
  report["version_there"] = theirs.empty() ? json(nullptr) : json(theirs);
  std::optional<std::int64_t> last_sync;
  if (std::ifstream in(sync_record(ssh)); in) {
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (auto parsed = json_read::parse(text); parsed && parsed.value->is_object())
      if (const auto it = parsed.value->find("time_unix");
          it != parsed.value->end() && it->is_number_integer())
        last_sync = it->get<std::int64_t>();
  }
  const double age_h = last_sync ? static_cast<double>(now_unix() - *last_sync) / 3600.0 : -1;
  report["last_sync_unix"] = last_sync ? json(*last_sync) : json(nullptr);
  const bool stale = !last_sync || age_h > options.stale_after_h;
  const bool drift = !report["differ"].empty() || !report["missing"].empty() || theirs != ours || stale;
  report["in_step"] = !drift;
  if (options.json) {
    std::cout << report.dump(1) << "\n";
    return drift ? 1 : 0;
  }
  std::cout << "standby " << ssh.host << ": " << same << " of " << staged.files.size() << " files the same\n";
  for (const auto& p : report["missing"]) std::cout << "  missing there: " << p.get<std::string>() << "\n";
  for (const auto& p : report["differ"]) std::cout << "  differs: " << p.get<std::string>() << "\n";
  for (const auto& diff : report["config_diffs"]) std::cout << diff.get<std::string>();
  if (theirs != ours)
    std::cout << "  version skew: " << ours << " here, " << (theirs.empty() ? "no clawbot found" : theirs)
              << " there\n";
  if (!last_sync)
    std::cout << "  never synced from here (clawbot standby sync " << ssh.host << ")\n";
  else if (stale)
    std::cout << "  stale: last sync " << static_cast<long long>(age_h) << " h ago (more than "
              << options.stale_after_h << " h)\n";
  std::cout << (drift ? "drift: the standby is not in step\n" : "in step\n");
  return drift ? 1 : 0;
}

}  // namespace clawbot::backup
