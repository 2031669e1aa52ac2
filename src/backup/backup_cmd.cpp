// `clawbot backup create|list|verify|prune|restore` and `clawbot restore`: the command lines over restic.
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "backup/backup.h"
#include "backup/drill.h"
#include "backup/internal.h"
#include "backup/restic.h"
#include "backup/services.h"
#include "backup/standby.h"
#include "backup/state.h"
#include "common/backup_metrics.h"
#include "common/cli_error.h"
#include "common/error.h"
#include "common/json_read.h"
#include "common/text.h"
#include "common/user_dirs.h"
#include "gateway/config.h"
#include "monitor/alerts.h"

namespace clawbot::backup {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Options {
  std::string repo, password_file, sftp_command;
  SourceOptions sources;
  std::string time;
  std::string alerts;  // a rules file whose webhooks hear of a failed backup
  bool json = false;
  std::string subset;
  bool quick = false;
  Retention retention;
  RestoreOptions restore;
  std::string restore_root;
  InstallOptions install;
  StandbyOptions standby;
  std::string install_dir, install_bin;
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? value : fallback;
}

// --repo, else $CLAWBOT_BACKUP_REPO, else ${XDG_DATA_HOME:-~/.local/share}/clawbot/backup-repo; the password
// file likewise from --password-file, $CLAWBOT_BACKUP_PASSWORD_FILE, ${XDG_CONFIG_HOME:-~/.config}/clawbot/
// backup-password.
Repository repository(const Options& options) {
  Repository repo;
  repo.location = !options.repo.empty() ? options.repo : env_or("CLAWBOT_BACKUP_REPO", "");
  if (repo.location.empty())
    repo.location =
        (user_dirs::require(user_dirs::Kind::data, "pass --repo") / "clawbot" / "backup-repo").string();
  const std::string password =
      !options.password_file.empty() ? options.password_file : env_or("CLAWBOT_BACKUP_PASSWORD_FILE", "");
  repo.password_file = !password.empty()
                           ? fs::path(password)
                           : user_dirs::require(user_dirs::Kind::config, "pass --password-file") / "clawbot" /
                                 "backup-password";
  if (const auto cache = user_dirs::find(user_dirs::Kind::cache))
    repo.cache_dir = *cache / "clawbot" / "restic";
  repo.sftp_command =
      !options.sftp_command.empty() ? options.sftp_command : env_or("CLAWBOT_BACKUP_SFTP_COMMAND", "");
  return repo;
}

void require_password_file(const Repository& repo) {
  if (!fs::exists(repo.password_file))
    throw ClawbotError(ErrorKind::not_found,
                       "no password file " + repo.password_file.string() +
                           " (the file the repository was made with: --password-file or "
                           "CLAWBOT_BACKUP_PASSWORD_FILE)");
}

// 32 random bytes as hex, in a new file only its owner reads.
void make_password_file(const fs::path& file) {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    throw ClawbotError(ErrorKind::internal, "no random bytes for the password");
  fs::create_directories(file.parent_path());
  const mode_t old = ::umask(077);
  std::ofstream out(file, std::ios::trunc);
  ::umask(old);
  out << text::to_hex(std::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes)) << "\n";
  out.close();
  if (!out) throw ClawbotError(ErrorKind::internal, file.string() + ": cannot write the password file");
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
}

std::string human_bytes(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  std::ostringstream out;
  out << std::fixed << std::setprecision(unit == 0 ? 0 : 1) << value << " " << units[unit];
  return out.str();
}

// The outcome for monitoring: last.json (for people and `doctor`) and metrics.prom (serve's and the gateway's
// /metrics append it: common/backup_metrics.h).
void record_outcome(const Repository& repo, const BackupSummary* summary, const std::string& error) {
  try {
    const fs::path file = state_dir() / "last.json";
    json last = json::object();
    if (std::ifstream in(file); in) {
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (auto parsed = json_read::parse(text); parsed && parsed.value->is_object()) last = *parsed.value;
    }
    last["repository"] = repo.location;
    if (summary != nullptr) {
      last["last_success_unix"] = now_unix();
      last["last_snapshot"] = summary->snapshot_id;
      last["last_data_added"] = summary->data_added;
      last["last_error"] = "";
    } else {
      last["last_failure_unix"] = now_unix();
      last["last_error"] = error;
    }
    const auto number = [&](const char* key) {
      const auto it = last.find(key);
      return it != last.end() && it->is_number_integer() ? it->get<std::int64_t>() : std::int64_t{0};
    };
    std::ostringstream metrics;
    metrics
        << "# HELP clawbot_backup_last_success_timestamp_seconds Unix time of the last backup that "
           "succeeded.\n"
        << "# TYPE clawbot_backup_last_success_timestamp_seconds gauge\n"
        << "clawbot_backup_last_success_timestamp_seconds " << number("last_success_unix") << "\n"
        << "# HELP clawbot_backup_last_failure_timestamp_seconds Unix time of the last backup that failed.\n"
        << "# TYPE clawbot_backup_last_failure_timestamp_seconds gauge\n"
        << "clawbot_backup_last_failure_timestamp_seconds " << number("last_failure_unix") << "\n"
        << "# HELP clawbot_backup_last_added_bytes Bytes the last successful backup added to the "
           "repository.\n"
        << "# TYPE clawbot_backup_last_added_bytes gauge\n"
        << "clawbot_backup_last_added_bytes " << number("last_data_added") << "\n"
        << "# HELP clawbot_backup_last_ok 1 when the last backup succeeded, 0 when it failed.\n"
        << "# TYPE clawbot_backup_last_ok gauge\n"
        << "clawbot_backup_last_ok " << (summary != nullptr ? 1 : 0) << "\n";
    const auto write = [](const fs::path& target, const std::string& text) {
      fs::create_directories(target.parent_path());
      const fs::path temp = target.string() + ".tmp";
      std::ofstream(temp, std::ios::trunc) << text;
      fs::rename(temp, target);
    };
    write(file, last.dump(1) + "\n");
    write(backup_metrics_path(), metrics.str());
  } catch (const std::exception& e) {
    // The record is for monitoring: the backup's own outcome is what the command reports.
    std::cerr << "warning: cannot record the backup's outcome: " << e.what() << "\n";
  }
}

// A failed backup is an alert (Alertmanager's webhook payload, as serve's and the gateway's alerts are): to
// the webhooks of --alerts FILE, else those of gateway.json's "alerts". Waits for the delivery (at most 30
// s): the process ends right after.
void alert_failure(const Options& options, const std::string& error) {
  try {
    std::vector<monitor::Webhook> webhooks;
    std::vector<std::string> warnings;
    if (!options.alerts.empty()) {
      webhooks = monitor::load_alert_config(options.alerts, "serve", warnings).webhooks;
    } else if (const auto gateway_file = find_gateway_config(options.sources.gateway_config)) {
      webhooks = gateway::load_config(*gateway_file).alerts.webhooks;
    }
    if (webhooks.empty()) return;
    monitor::Alert alert;
    alert.name = "backup_failed";
    alert.severity = "critical";
    alert.state = monitor::AlertState::firing;
    alert.summary = "clawbot backup failed: " + error;
    alert.series = "backup_last_ok";
    alert.op = monitor::AlertOp::less;
    alert.threshold = 1;
    alert.since = static_cast<double>(now_unix());
    alert.fired_at = alert.since;
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    const std::size_t count = webhooks.size();
    monitor::WebhookSender sender(std::move(webhooks));
    sender.notify(alert, monitor::AlertSource{"backup", host, ""});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      const auto stats = sender.stats();
      if (stats.delivered + stats.failed + stats.dropped >= count) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  } catch (const std::exception& e) {
    std::cerr << "warning: cannot send the failure alert: " << e.what() << "\n";
  }
}

int run_create(const Options& options) {
  const Repository repo = repository(options);
  try {
    Restic restic(repo);
    std::vector<std::string> notes;
    if (!fs::exists(repo.password_file)) {
      make_password_file(repo.password_file);
      notes.push_back("made the repository's password file " + repo.password_file.string() +
                      ": keep a copy elsewhere, without it the backups cannot be read");
    }
    if (!restic.exists()) {
      restic.init();
      notes.push_back("made the backup repository " + repo.location);
    }
    const fs::path dir = state_dir();
    const StagedState staged = stage_state(options.sources, dir / "staging", dir / "model-sums.json");
    notes.insert(notes.end(), staged.notes.begin(), staged.notes.end());
    const BackupSummary summary = restic.backup(staged.backup_paths, backup_tag, options.time);
    record_outcome(repo, &summary, {});
    if (options.json) {
      json out = summary.to_json();
      out["repository"] = repo.location;
      out["files"] = json::array();
      for (const auto& f : staged.files) out["files"].push_back(f.to_json());
      out["notes"] = notes;
      std::cout << out.dump(1) << "\n";
    } else {
      for (const auto& note : notes) std::cerr << "note: " << note << "\n";
      std::cout << "snapshot " << summary.snapshot_id.substr(0, 8) << " in " << repo.location << ": "
                << staged.files.size() << " files (" << summary.files_new << " new, " << summary.files_changed
                << " changed, " << summary.files_unmodified << " unmodified), "
                << human_bytes(summary.total_bytes_processed) << " read, " << human_bytes(summary.data_added)
                << " added\n";
    }
    return 0;
  } catch (const std::exception& e) {
    record_outcome(repo, nullptr, e.what());
    alert_failure(options, e.what());
    throw;
  }
}

int run_list(const Options& options) {
  const Repository repo = repository(options);
  require_password_file(repo);
  const auto snapshots = Restic(repo).snapshots(backup_tag);
  if (options.json) {
    json out = json::array();
    for (const auto& s : snapshots)
      out.push_back({{"id", s.id},
                     {"short_id", s.short_id},
                     {"time", s.time},
                     {"host", s.hostname},
                     {"paths", s.paths}});
    std::cout << out.dump(1) << "\n";
    return 0;
  }
  if (snapshots.empty()) std::cout << "no clawbot backup in " << repo.location << "\n";
  for (const auto& s : snapshots)
    std::cout << s.short_id << "  " << s.time.substr(0, 19) << "  " << s.hostname << "\n";
  return 0;
}

int run_verify(const Options& options) {
  const Repository repo = repository(options);
  require_password_file(repo);
  const auto result = Restic(repo).check(!options.quick, options.subset);
  std::cout << result.report << "\n";
  std::cout << (result.ok ? "repository " + repo.location + ": intact"
                          : "repository " + repo.location + ": DAMAGED (see above)")
            << "\n";
  return result.ok ? 0 : 1;
}

int run_prune(const Options& options) {
  const Repository repo = repository(options);
  require_password_file(repo);
  const Restic restic(repo);
  const ForgetResult result = restic.forget(backup_tag, options.retention);
  if (!result.removed.empty()) restic.prune();
  if (options.json) {
    json out{{"kept", json::array()}, {"removed", json::array()}};
    for (const auto& s : result.kept) out["kept"].push_back({{"id", s.id}, {"time", s.time}});
    for (const auto& s : result.removed) out["removed"].push_back({{"id", s.id}, {"time", s.time}});
    std::cout << out.dump(1) << "\n";
  } else {
    std::cout << "kept " << result.kept.size() << " snapshots (" << options.retention.daily << " daily, "
              << options.retention.weekly << " weekly, " << options.retention.monthly << " monthly), removed "
              << result.removed.size() << "\n";
  }
  return 0;
}

int run_restore(Options options) {
  const Repository repo = repository(options);
  require_password_file(repo);
  options.restore.target_root =
      options.restore_root.empty() ? fs::path() : fs::absolute(options.restore_root);
  return restore_snapshot(Restic(repo), options.restore, std::cout);
}

void add_repository_options(CLI::App& command, Options& options) {
  command.add_option("--repo", options.repo,
                     "restic repository: a directory, sftp:HOST:/path, ... (default: $CLAWBOT_BACKUP_REPO, "
                     "else ${XDG_DATA_HOME:-~/.local/share}/clawbot/backup-repo)");
  command.add_option("--password-file", options.password_file,
                     "The repository's password file (default: $CLAWBOT_BACKUP_PASSWORD_FILE, else "
                     "${XDG_CONFIG_HOME:-~/.config}/clawbot/backup-password, made 0600 by the first create)");
  command.add_option(
      "--sftp-command", options.sftp_command,
      "For an sftp: repository, the ssh command restic runs, e.g. \"ssh -p 2222 -i KEY user@host "
      "-s sftp\" (default: $CLAWBOT_BACKUP_SFTP_COMMAND, else restic's ssh HOST -s sftp)");
}

void add_restore_options(CLI::App& command, Options& options) {
  add_repository_options(command, options);
  command.add_option("snapshot", options.restore.snapshot, "Snapshot id (or its prefix), or latest")
      ->capture_default_str();
  command.add_option("--target", options.restore_root,
                     "Restore under this directory (each file at DIR/<its path>) instead of over the files");
  command.add_option(
      "--item", options.restore.items,
      "Only these: sessions, keys, audit, configs, models, kb (every knowledge base) or kb:NAME");
}

int run_install(Options options, bool schedule) {
  if (!options.install_dir.empty()) options.install.unit_dir = options.install_dir;
  if (!options.install_bin.empty()) options.install.binary = options.install_bin;
  if (schedule) options.install.only = {"backup"};
  return install_services(options.install);
}

void add_install_options(CLI::App& command, Options& options) {
  command.add_option("--unit-dir", options.install_dir, "Where the units go")
      ->default_str("/etc/systemd/system");
  command.add_option("--bin", options.install_bin, "The clawbot the units run (default: this one)");
  command.add_flag(
      "--verify", options.install.verify,
      "Check the units with systemd-analyze verify and print systemd-analyze security's exposure");
}

}  // namespace

std::function<std::optional<int>()> add_backup_commands(CLI::App& app) {
  auto options = std::make_shared<Options>();
  auto* backup =
      app.add_subcommand("backup", "Backups of sessions, keys, audit log, configs and models (restic)");
  backup->require_subcommand(1);
  auto* create = backup->add_subcommand("create", "Snapshot everything clawbot keeps on this machine");
  add_repository_options(*create, *options);
  create->add_option("--config", options->sources.client_config, "clawbot.json (default: its usual search)");
  create->add_option("--gateway-config", options->sources.gateway_config,
                     "gateway.json (default: $CLAWBOT_GATEWAY_CONFIG, ${XDG_CONFIG_HOME:-~/.config}/clawbot/"
                     "gateway.json, ./gateway.json)");
  create->add_option("--sessions-db", options->sources.session_db,
                     "Session database (default: session_db of clawbot.json, else the default)");
  create->add_option("--models-dir", options->sources.model_dirs,
                     "Model directory (repeatable; default: those of CLAWBOT_MODELS or the user's)");
  create->add_option("--time", options->time,
                     "Record the snapshot at this time (\"YYYY-MM-DD HH:MM:SS\", local): imports, tests");
  create->add_flag("--json", options->json, "Print restic's summary (bytes added, files) as JSON");
  create->add_option(
      "--alerts", options->alerts,
      "Rules file (serve --alerts) whose webhooks hear of a failed backup (default: gateway.json's "
      "\"alerts\" webhooks)");
  auto* list = backup->add_subcommand("list", "The snapshots in the repository, oldest first");
  add_repository_options(*list, *options);
  list->add_flag("--json", options->json, "JSON array");
  auto* verify = backup->add_subcommand("verify", "Check the repository, reading back every pack");
  add_repository_options(*verify, *options);
  verify->add_flag("--quick", options->quick, "Check the structure only, not the data");
  verify->add_option("--read-data-subset", options->subset, "Read back only this part (\"10%\", \"1/7\")");
  auto* prune = backup->add_subcommand("prune", "Forget snapshots outside the retention, free their data");
  add_repository_options(*prune, *options);
  prune->add_option("--keep-daily", options->retention.daily, "Days to keep the last snapshot of")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  prune->add_option("--keep-weekly", options->retention.weekly, "Weeks to keep the last snapshot of")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  prune->add_option("--keep-monthly", options->retention.monthly, "Months to keep the last snapshot of")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  prune->add_flag("--json", options->json, "Print the kept and removed snapshots as JSON");
  auto* backup_restore = backup->add_subcommand("restore", "Same as `clawbot restore`");
  add_restore_options(*backup_restore, *options);
  auto* schedule = backup->add_subcommand("schedule", "Write the systemd timer that runs the backup daily");
  schedule->add_option("--daily", options->install.daily, "HH:MM (local time)")->required();
  add_install_options(*schedule, *options);
  auto* install = app.add_subcommand(
      "install-service", "Write the systemd units: serve, gateway, and the daily backup with its timer");
  add_install_options(*install, *options);
  install->add_option("--only", options->install.only, "Only these: serve, gateway, backup")
      ->check(CLI::IsMember({"serve", "gateway", "backup"}));
  install->add_option("--daily", options->install.daily, "The backup's time, HH:MM")->capture_default_str();
  auto* standby = app.add_subcommand("standby", "Keep a cold standby node in step over SSH (rsync)");
  standby->require_subcommand(1);
  auto* standby_sync_cmd = standby->add_subcommand(
      "sync", "Copy models, configs and keys to HOST (only what changed), then check every SHA-256 there");
  auto* standby_check_cmd =
      standby->add_subcommand("check", "Report drift: sums, config differences, version skew, last sync");
  for (CLI::App* command : {standby_sync_cmd, standby_check_cmd}) {
    StandbyOptions& o = options->standby;
    command->add_option("host", o.ssh.host, "[user@]host of the standby")->required();
    command->add_option("--port", o.ssh.port, "SSH port")->capture_default_str();
    command->add_option("--identity", o.ssh.identity, "SSH private key (ssh -i)");
    command->add_option("--known-hosts", o.ssh.known_hosts,
                        "known_hosts file for HOST (checking stays strict)");
    command->add_option("--remote-root", o.ssh.remote_root, "Put the files under this folder there");
    command->add_option("--remote-clawbot", o.ssh.remote_clawbot, "clawbot there (the version check)")
        ->capture_default_str();
    command->add_option("--config", o.sources.client_config, "clawbot.json (default: its usual search)");
    command->add_option("--gateway-config", o.sources.gateway_config,
                        "gateway.json (as backup create finds it)");
    command->add_option("--models-dir", o.sources.model_dirs, "Model directory (repeatable)");
  }
  standby_check_cmd->add_flag("--json", options->standby.json, "Print the report as JSON");
  standby_check_cmd
      ->add_option("--stale-after-h", options->standby.stale_after_h,
                   "A last sync older than this many hours is drift")
      ->capture_default_str();
  auto* restore = app.add_subcommand(
      "restore", "Restore a backup (all of it, or --item), verifying sums, databases and the audit chain");
  add_restore_options(*restore, *options);
  auto drill_options = std::make_shared<DrillOptions>();
  auto* drill = app.add_subcommand(
      "drill",
      "The failover drill in network namespaces: drain, kill, cut and hang a primary under load, then "
      "restore it from the backup (needs root or user namespaces, and node)");
  drill->add_option("--script", drill_options->script, "The drill's test file (default: the source tree's)");

  return [=]() -> std::optional<int> {
    const std::string command =
        drill->parsed()     ? "clawbot drill"
        : restore->parsed() ? "clawbot restore"
        : install->parsed() ? "clawbot install-service"
        : standby->parsed() ? "clawbot standby " + standby->get_subcommands().at(0)->get_name()
        : backup->parsed()  ? "clawbot backup " + backup->get_subcommands().at(0)->get_name()
                            : "";
    if (command.empty()) return std::nullopt;
    try {
      if (create->parsed()) return run_create(*options);
      if (list->parsed()) return run_list(*options);
      if (verify->parsed()) return run_verify(*options);
      if (prune->parsed()) return run_prune(*options);
      if (schedule->parsed() || install->parsed()) return run_install(*options, schedule->parsed());
      if (standby_sync_cmd->parsed()) return standby_sync(options->standby);
      if (standby_check_cmd->parsed()) return standby_check(options->standby);
      if (drill->parsed()) return run_drill(*drill_options);
      return run_restore(*options);
    } catch (const ClawbotError& e) {
      const ErrorKind kind = e.error().kind;
      return cli_error(command, e.what(),
                       kind == ErrorKind::unauthorized      ? 3
                       : kind == ErrorKind::invalid_request ? 2
                                                            : 1);
    } catch (const std::exception& e) {
      return cli_error(command, e.what(), 1);
    }
  };
}

}  // namespace clawbot::backup
