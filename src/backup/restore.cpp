// `clawbot restore`: a snapshot's files back to their paths, or under another root, per item or all; never
// over a file that a running process holds open; every file proved by its sum, every database by SQLite's
// integrity check, and the audit log's chain verified against the restored anchor.
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iostream>
#include <set>

#include "backup/internal.h"
#include "backup/restic.h"
#include "backup/state.h"
#include "common/error.h"
#include "common/json_read.h"
#include "gateway/door/door.h"

namespace clawbot::backup {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ClawbotError(ErrorKind::not_found, file.string() + ": cannot read");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string process_name(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/cmdline", std::ios::binary);
  std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
  while (!cmdline.empty() && cmdline.back() == ' ') cmdline.pop_back();
  return cmdline.substr(0, 80);
}

// "pid 123 (clawbot gateway --config ...)" for each process that has one of `files` open or mapped.
std::vector<std::string> holders(const std::set<std::string>& files) {
  std::vector<std::string> found;
  const std::string self = std::to_string(::getpid());
  std::error_code ec;
  for (const auto& proc : fs::directory_iterator("/proc", ec)) {
    const std::string pid = proc.path().filename().string();
    if (pid.empty() || !std::all_of(pid.begin(), pid.end(), ::isdigit) || pid == self) continue;
    std::set<std::string> held;
    std::error_code fd_ec;
    for (const auto& fd : fs::directory_iterator(proc.path() / "fd", fd_ec)) {
      std::error_code link_ec;
      const fs::path target = fs::read_symlink(fd.path(), link_ec);
      if (!link_ec && files.contains(target.string())) held.insert(target.string());
    }
    std::ifstream maps(proc.path() / "maps");
    for (std::string line; std::getline(maps, line);) {
      const auto slash = line.find('/');
      if (slash != std::string::npos && files.contains(line.substr(slash))) held.insert(line.substr(slash));
    }
    for (const auto& file : held) found.push_back(file + ": pid " + pid + " (" + process_name(pid) + ")");
  }
  return found;
}

std::string sqlite_check(const fs::path& db) {
  sqlite3* handle = nullptr;
  std::string result;
  if (sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    result = sqlite3_errmsg(handle);
  } else {
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(handle, "PRAGMA integrity_check", -1, &statement, nullptr) == SQLITE_OK &&
        sqlite3_step(statement) == SQLITE_ROW)
      result = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
    else
      result = sqlite3_errmsg(handle);
    sqlite3_finalize(statement);
  }
  sqlite3_close_v2(handle);
  return result;
}

// Copies next to the destination and renames over it, so that the file is either the old one or the whole
// new one. A database's -wal and -shm go first: an old WAL replayed onto the restored file would corrupt it.
void place(const StateFile& file, const fs::path& restored, const fs::path& dest) {
  fs::create_directories(dest.parent_path());
  if (file.kind == "sqlite") {
    fs::remove(fs::path(dest.string() + "-wal"));
    fs::remove(fs::path(dest.string() + "-shm"));
  }
  const fs::path temp = dest.parent_path() / ("." + dest.filename().string() + ".clawbot-restore");
  fs::copy_file(restored, temp, fs::copy_options::overwrite_existing);
  fs::permissions(temp, fs::status(restored).permissions());
  fs::rename(temp, dest);
}

fs::path destination(const fs::path& root, const fs::path& path) {
  return root.empty() ? path : root / path.relative_path();
}

const Snapshot& choose_snapshot(const std::vector<Snapshot>& snapshots, const std::string& wanted,
                                const std::string& repository) {
  if (snapshots.empty()) throw ClawbotError(ErrorKind::not_found, "no clawbot backup in " + repository);
  if (wanted == "latest") return snapshots.back();  // restic lists them oldest first
  const Snapshot* chosen = nullptr;
  for (const auto& s : snapshots)
    if (!wanted.empty() && s.id.starts_with(wanted)) chosen = &s;
  if (chosen == nullptr)
    throw ClawbotError(ErrorKind::not_found,
                       "no snapshot " + wanted + " in " + repository + " (`clawbot backup list`)");
  return *chosen;
}

// The snapshot's manifest (restored alone first: it says which stored paths make up the items).
json read_manifest(const Restic& restic, const Snapshot& snapshot, const fs::path& work) {
  std::vector<fs::path> paths;
  for (const auto& p : snapshot.paths) paths.push_back(fs::path(p) / manifest_name);
  restic.restore(snapshot.id, work, paths, backup_tag);
  json manifest;
  for (const auto& p : paths)
    if (fs::exists(destination(work, p)))
      manifest = json_read::parse_or_throw(read_text(destination(work, p)), "manifest");
  if (!manifest.is_object() || !manifest.contains("files") || !manifest["files"].is_array())
    throw ClawbotError(ErrorKind::internal, "snapshot " + snapshot.short_id + " holds no clawbot manifest");
  return manifest;
}

// Nothing is touched while a process holds any destination open (a live database, a loaded model).
void refuse_held(const std::vector<StateFile>& files, const fs::path& root) {
  std::set<std::string> watched;
  for (const auto& f : files) {
    const std::string dest = destination(root, f.path).string();
    watched.insert(dest);
    if (f.kind == "sqlite") watched.insert({dest + "-wal", dest + "-shm"});
  }
  if (const auto held = holders(watched); !held.empty()) {
    std::string message =
        "refusing to restore over files that running processes hold open (stop them first, "
        "e.g. systemctl stop clawbot-gateway clawbot-serve):";
    for (const auto& h : held) message += "\n  " + h;
    throw ClawbotError(ErrorKind::forbidden, message);
  }
}

// A file as restic gave it back, or as placed: SQLite's integrity check for a database, else its SHA-256
// against the manifest's. "" when it holds, else what is wrong.
std::string prove(const StateFile& f, const fs::path& file) {
  if (!fs::exists(file)) return "missing";
  if (f.kind == "sqlite") {
    const std::string check = sqlite_check(file);
    return check == "ok" ? "" : "fails SQLite's integrity check: " + check;
  }
  return file_sha256(file) == f.sha256 ? "" : "does not match its SHA-256 in the manifest";
}

// The audit chain, against the restored keys database's anchor and secret: 1 when it is broken.
int verify_audit(const StateFile& log, const json& manifest, const fs::path& root, std::ostream& out) {
  fs::path db, secret;
  for (const auto& entry : manifest["files"]) {
    const StateFile k = StateFile::from_json(entry);
    if (k.item == "keys" && k.kind == "sqlite") db = destination(root, k.path);
    if (k.item == "keys" && k.kind == "file") secret = destination(root, k.path);
  }
  if (db.empty() || !fs::exists(db)) {
    out << "audit log: not verified (no keys database with its anchor)\n";
    return 0;
  }
  const auto report = gateway::door::verify_audit_log(destination(root, log.path), db, secret);
  out << "audit log: " << report.summary() << "\n";
  for (const auto& problem : report.problems) out << "  " << problem.message << "\n";
  return report.intact() ? 0 : 1;
}

}  // namespace

int restore_snapshot(const Restic& restic, const RestoreOptions& options, std::ostream& out) {
  for (const auto& item : options.items)
    if (std::find_if(std::begin(item_names), std::end(item_names),
                     [&](const char* n) { return item == n; }) == std::end(item_names) &&
        !(item.starts_with(one_kb_prefix) && item.size() > one_kb_prefix.size()))
      throw_invalid("unknown item '" + item + "' (sessions, keys, audit, configs, models, kb, kb:NAME)",
                    "--item");
  const auto snapshots = restic.snapshots(backup_tag);
  const Snapshot& chosen = choose_snapshot(snapshots, options.snapshot, restic.repository().location);

  const fs::path work = state_dir() / ("restore-" + std::to_string(::getpid()));
  fs::remove_all(work);
  fs::create_directories(work);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{work};

  const json manifest = read_manifest(restic, chosen, work);
  std::vector<StateFile> files;
  for (const auto& entry : manifest["files"]) {
    StateFile f = StateFile::from_json(entry);
    const bool asked = std::any_of(options.items.begin(), options.items.end(), [&](const std::string& item) {
      return item == f.item || (f.item == "kb" && item.starts_with(one_kb_prefix) &&
                                f.path.filename() == item.substr(one_kb_prefix.size()) + ".kb");
    });
    if (options.items.empty() || asked) files.push_back(std::move(f));
  }
  if (files.empty())
    throw ClawbotError(ErrorKind::not_found,
                       "snapshot " + chosen.short_id + " holds none of the items asked for");
  refuse_held(files, options.target_root);

  std::vector<fs::path> includes;
  for (const auto& f : files) includes.push_back(f.stored);
  restic.restore(chosen.id, work, includes, backup_tag);
  // Every file proved before anything is replaced, and again where it was put.
  for (const auto& f : files)
    if (const std::string wrong = prove(f, destination(work, f.stored)); !wrong.empty())
      throw ClawbotError(ErrorKind::internal,
                         f.path.string() + ": the copy in snapshot " + chosen.short_id + " " + wrong);
  std::size_t models = 0;
  for (const auto& f : files) {
    const fs::path dest = destination(options.target_root, f.path);
    place(f, destination(work, f.stored), dest);
    if (const std::string wrong = prove(f, dest); !wrong.empty())
      throw ClawbotError(ErrorKind::internal, dest.string() + ": after the restore, " + wrong);
    if (f.item == "models")
      ++models;
    else
      out << "restored " << f.item << ": " << dest.string()
          << (f.kind == "sqlite" ? " (integrity check: ok)\n" : " (SHA-256 matches)\n");
  }
  if (models > 0) out << "restored models: " << models << " files, every SHA-256 matches the backup's\n";

  int status = 0;
  for (const auto& f : files)
    if (f.kind == "audit") status = std::max(status, verify_audit(f, manifest, options.target_root, out));
  out << "restored " << files.size() << " files from snapshot " << chosen.short_id << " (" << chosen.time
      << ")" << (options.target_root.empty() ? "" : " under " + options.target_root.string()) << "\n";
  return status;
}

}  // namespace clawbot::backup
