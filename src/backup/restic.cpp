#include "backup/restic.h"

#include <sstream>

#include "common/error.h"
#include "common/json_read.h"

namespace clawbot::backup {

namespace {

using nlohmann::json;

constexpr std::string_view wrong_password_text = "wrong password or no key found";

bool no_repository(const std::string& err) {
  return err.find("Is there a repository at the following location?") != std::string::npos ||
         err.find("repository does not exist") != std::string::npos;
}

json parse_json(std::string_view text, std::string_view what) {
  json_read::Limits limits;
  limits.max_bytes = std::size_t{256} << 20;
  auto parsed = json_read::parse(text, limits);
  if (!parsed)
    throw ClawbotError(
        ErrorKind::internal,
        "restic " + std::string(what) + ": output is not the JSON expected: " + parsed.failure.message);
  return std::move(*parsed.value);
}

std::vector<std::string> strings_at(const json& object, const char* key) {
  std::vector<std::string> out;
  if (const auto it = object.find(key); it != object.end() && it->is_array())
    for (const auto& v : *it)
      if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

std::string string_at(const json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::uint64_t count_at(const json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

Snapshot snapshot_from(const json& object) {
  Snapshot s;
  s.id = string_at(object, "id");
  s.short_id = string_at(object, "short_id");
  if (s.short_id.empty()) s.short_id = s.id.substr(0, 8);
  s.time = string_at(object, "time");
  s.hostname = string_at(object, "hostname");
  s.paths = strings_at(object, "paths");
  s.tags = strings_at(object, "tags");
  return s;
}

std::vector<Snapshot> snapshots_at(const json& object, const char* key) {
  std::vector<Snapshot> out;
  if (const auto it = object.find(key); it != object.end() && it->is_array())
    for (const auto& s : *it)
      if (s.is_object()) out.push_back(snapshot_from(s));
  return out;
}

}  // namespace

nlohmann::json BackupSummary::to_json() const {
  return {{"snapshot_id", snapshot_id},
          {"files_new", files_new},
          {"files_changed", files_changed},
          {"files_unmodified", files_unmodified},
          {"data_added", data_added},
          {"total_bytes_processed", total_bytes_processed},
          {"seconds", seconds}};
}

Restic::Restic(Repository repository) : repository_(std::move(repository)) {}

ChildResult Restic::run(std::vector<std::string> args, bool json_output) const {
  std::vector<std::string> argv{"restic", "--repo", repository_.location, "--no-lock"};
  // --no-lock only for reading commands; the others take restic's own lock.
  const std::string& verb = args.front();
  if (verb != "snapshots" && verb != "cat") argv.pop_back();
  if (json_output) argv.push_back("--json");
  if (!repository_.sftp_command.empty())
    argv.insert(argv.end(), {"-o", "sftp.command=" + repository_.sftp_command});
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<EnvVar> env{{"RESTIC_PASSWORD_FILE", repository_.password_file.string()},
                          {"RESTIC_PROGRESS_FPS", "0.2"}};
  if (!repository_.cache_dir.empty()) env.emplace_back("RESTIC_CACHE_DIR", repository_.cache_dir.string());
  return run_child(argv, env);
}

void Restic::fail(const std::vector<std::string>& args, const ChildResult& result) const {
  const std::string& err = result.err;
  if (err.find(wrong_password_text) != std::string::npos)
    throw ClawbotError(ErrorKind::unauthorized,
                       "wrong password for the backup repository " + repository_.location +
                           ": the password file " + repository_.password_file.string() +
                           " does not open it (use the file the repository was made with: --password-file or "
                           "CLAWBOT_BACKUP_PASSWORD_FILE)");
  if (no_repository(err))
    throw ClawbotError(ErrorKind::not_found, "no backup repository at " + repository_.location +
                                                 " (`clawbot backup create` makes one)");
  throw ClawbotError(ErrorKind::internal, "restic " + args.front() + " failed (exit status " +
                                              std::to_string(result.status) +
                                              "): " + last_lines(err.empty() ? result.out : err));
}

bool Restic::exists() const {
  const std::vector<std::string> args{"cat", "config"};
  const ChildResult result = run(args, false);
  if (result.ok()) return true;
  if (no_repository(result.err)) return false;
  fail(args, result);
}

void Restic::init() const {
  const std::vector<std::string> args{"init"};
  if (const ChildResult result = run(args, false); !result.ok()) fail(args, result);
}

BackupSummary Restic::backup(const std::vector<std::filesystem::path>& paths, const std::string& tag,
                             const std::string& time) const {
  std::vector<std::string> args{"backup", "--tag", tag};
  if (!time.empty()) args.insert(args.end(), {"--time", time});
  for (const auto& p : paths) args.push_back(p.string());
  const ChildResult result = run(args, true);
  // Exit status 3: some source could not be read; the snapshot would be incomplete, so it counts as failed.
  if (!result.ok()) fail(args, result);
  std::istringstream lines(result.out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find("\"summary\"") == std::string::npos) continue;
    const json summary = parse_json(line, "backup");
    if (!summary.is_object() || string_at(summary, "message_type") != "summary") continue;
    BackupSummary s;
    s.snapshot_id = string_at(summary, "snapshot_id");
    s.files_new = count_at(summary, "files_new");
    s.files_changed = count_at(summary, "files_changed");
    s.files_unmodified = count_at(summary, "files_unmodified");
    s.data_added = count_at(summary, "data_added");
    s.total_bytes_processed = count_at(summary, "total_bytes_processed");
    if (const auto it = summary.find("total_duration"); it != summary.end() && it->is_number())
      s.seconds = it->get<double>();
    return s;
  }
  throw ClawbotError(ErrorKind::internal, "restic backup printed no summary: " + last_lines(result.out));
}

std::vector<Snapshot> Restic::snapshots(const std::string& tag) const {
  const std::vector<std::string> args{"snapshots", "--tag", tag};
  const ChildResult result = run(args, true);
  if (!result.ok()) fail(args, result);
  const json list = parse_json(result.out, "snapshots");
  std::vector<Snapshot> out;
  if (list.is_array())
    for (const auto& s : list)
      if (s.is_object()) out.push_back(snapshot_from(s));
  return out;
}

Restic::CheckResult Restic::check(bool read_data, const std::string& subset) const {
  std::vector<std::string> args{"check"};
  if (!subset.empty())
    args.push_back("--read-data-subset=" + subset);
  else if (read_data)
    args.push_back("--read-data");
  const ChildResult result = run(args, false);
  if (!result.ok() &&
      (result.err.find(wrong_password_text) != std::string::npos || no_repository(result.err)))
    fail(args, result);
  CheckResult check;
  check.ok = result.ok();
  check.report = last_lines(result.out + "\n" + result.err, 12);
  return check;
}

ForgetResult Restic::forget(const std::string& tag, const Retention& retention) const {
  const std::vector<std::string> args{"forget",
                                      "--tag",
                                      tag,
                                      "--group-by",
                                      "host,tags",
                                      "--keep-daily",
                                      std::to_string(retention.daily),
                                      "--keep-weekly",
                                      std::to_string(retention.weekly),
                                      "--keep-monthly",
                                      std::to_string(retention.monthly)};
  const ChildResult result = run(args, true);
  if (!result.ok()) fail(args, result);
  ForgetResult forgot;
  // The JSON is the last line (restic may print notes before it).
  const json groups = parse_json(last_lines(result.out, 1), "forget");
  if (groups.is_array())
    for (const auto& group : groups) {
      if (!group.is_object()) continue;
      for (auto& s : snapshots_at(group, "keep")) forgot.kept.push_back(std::move(s));
      for (auto& s : snapshots_at(group, "remove")) forgot.removed.push_back(std::move(s));
    }
  return forgot;
}

void Restic::prune() const {
  const std::vector<std::string> args{"prune"};
  if (const ChildResult result = run(args, false); !result.ok()) fail(args, result);
}

void Restic::restore(const std::string& snapshot, const std::filesystem::path& target,
                     const std::vector<std::filesystem::path>& includes, const std::string& tag) const {
  std::vector<std::string> args{"restore", snapshot, "--target", target.string()};
  if (snapshot == "latest") args.insert(args.end(), {"--tag", tag});
  for (const auto& p : includes) args.insert(args.end(), {"--include", p.string()});
  if (const ChildResult result = run(args, false); !result.ok()) fail(args, result);
}

}  // namespace clawbot::backup
