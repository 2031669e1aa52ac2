#include "backup/state.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>

#include "client/cli.h"
#include "client/config.h"
#include "common/error.h"
#include "common/json_read.h"
#include "common/model_path.h"
#include "common/user_dirs.h"
#include "gateway/config.h"
#include "gateway/door/door.h"
#include "ops/integrity.h"

namespace clawbot::backup {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void fail_file(const fs::path& file, const std::string& what) {
  throw ClawbotError(ErrorKind::internal, file.string() + ": " + what);
}

// The whole database in one read transaction of the live file: SQLite's online backup API, never a copy of
// the bytes (a copy can catch a page half-written, or miss what still sits in the -wal file).
void snapshot_sqlite(const fs::path& source, const fs::path& target) {
  sqlite3* src = nullptr;
  sqlite3* dst = nullptr;
  auto close = [&] {
    sqlite3_close_v2(src);
    sqlite3_close_v2(dst);
  };
  if (sqlite3_open_v2(source.c_str(), &src, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK ||
      sqlite3_open_v2(target.c_str(), &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
          SQLITE_OK) {
    const std::string why = sqlite3_errmsg(src != nullptr ? src : dst);
    close();
    fail_file(source, "cannot open for the backup: " + why);
  }
  sqlite3_busy_timeout(src, 5000);
  int rc = SQLITE_OK;
  for (int attempt = 0; attempt < 50; ++attempt) {
    sqlite3_backup* copy = sqlite3_backup_init(dst, "main", src, "main");
    if (copy == nullptr) break;
    rc = sqlite3_backup_step(copy, -1);  // every page in one step: one consistent snapshot
    sqlite3_backup_finish(copy);
    if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::string why = rc == SQLITE_DONE ? "" : sqlite3_errmsg(dst);
  if (rc == SQLITE_DONE) {
    // One self-contained file in the snapshot (no -wal beside it); the service turns WAL on again when it
    // opens a restored copy.
    char* error = nullptr;
    if (sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", nullptr, nullptr, &error) != SQLITE_OK) {
      why = error != nullptr ? error : "journal_mode";
      sqlite3_free(error);
    }
  }
  close();
  if (!why.empty()) fail_file(source, "online backup failed: " + why);
}

// The log as far as its last whole line: the gateway may be writing a batch at this moment.
std::uint64_t copy_whole_lines(const fs::path& source, const fs::path& target) {
  std::ifstream in(source, std::ios::binary);
  if (!in) fail_file(source, "cannot read the audit log");
  std::ofstream out(target, std::ios::binary | std::ios::trunc);
  std::vector<char> buffer(std::size_t{1} << 20);
  std::uint64_t written = 0, whole = 0;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto n = static_cast<std::size_t>(in.gcount());
    if (n == 0) break;
    out.write(buffer.data(), static_cast<std::streamsize>(n));
    for (std::size_t i = n; i > 0; --i)
      if (buffer[i - 1] == '\n') {
        whole = written + i;
        break;
      }
    written += n;
  }
  out.close();
  if (!out) fail_file(target, "cannot write the audit log's copy");
  fs::resize_file(target, whole);
  return whole;
}

void copy_private(const fs::path& source, const fs::path& target) {
  fs::copy_file(source, target, fs::copy_options::overwrite_existing);
  fs::permissions(target, fs::status(source).permissions());
}

fs::path absolute_path(const fs::path& p) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(fs::absolute(p), ec);
  return ec ? fs::absolute(p).lexically_normal() : canonical;
}

}  // namespace

std::optional<fs::path> find_gateway_config(const std::string& flag) {
  if (!flag.empty()) return absolute_path(flag);
  if (const char* env = std::getenv("CLAWBOT_GATEWAY_CONFIG"); env != nullptr && env[0] != '\0')
    return absolute_path(env);
  if (const auto config = user_dirs::find(user_dirs::Kind::config)) {
    const fs::path user = *config / "clawbot" / "gateway.json";
    if (fs::exists(user)) return user;
  }
  if (fs::exists("gateway.json")) return absolute_path("gateway.json");
  return std::nullopt;
}

namespace {

struct SumCache {
  json entries = json::object();
  static std::string key(const fs::path& p) { return p.string(); }
  static std::int64_t mtime_ns(const fs::path& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return 0;
    return std::int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  }
  // The file's sum: the cached one when its size and modification time are those cached.
  std::string sum(const fs::path& p, std::uint64_t size, json& next) {
    const std::int64_t mtime = mtime_ns(p);
    std::string sha;
    if (const auto it = entries.find(key(p)); it != entries.end() && it->is_object() &&
                                              it->value("size", std::uint64_t{0}) == size &&
                                              it->value("mtime_ns", std::int64_t{0}) == mtime)
      sha = it->value("sha256", std::string());
    if (sha.size() != 64) sha = file_sha256(p);
    next[key(p)] = {{"size", size}, {"mtime_ns", mtime}, {"sha256", sha}};
    return sha;
  }
};

SumCache read_sum_cache(const fs::path& file) {
  SumCache cache;
  std::ifstream in(file);
  if (!in) return cache;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (auto parsed = json_read::parse(text); parsed && parsed.value->is_object())
    cache.entries = *parsed.value;
  return cache;  // an unreadable cache only costs hashing again
}

// Model files stay where they are (restic reads them in place: an unchanged file costs nothing); their sums
// go into the manifest so that a restore can prove each one.
void stage_models(const SourceOptions& options, const fs::path& sums_cache, StagedState& staged) {
  SumCache cache = read_sum_cache(sums_cache);
  json next = json::object();
  for (const auto& dir_name : options.model_dirs.empty() ? model_dirs() : options.model_dirs) {
    const fs::path dir = absolute_path(dir_name);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    bool any = false;
    for (const auto& entry :
         fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied)) {
      if (!entry.is_regular_file() || entry.is_symlink()) continue;
      StateFile f{"models", "file", entry.path(), entry.path(), {}, entry.file_size()};
      f.sha256 = cache.sum(entry.path(), f.size, next);
      staged.files.push_back(std::move(f));
      any = true;
    }
    if (any) staged.backup_paths.push_back(dir);
  }
  fs::create_directories(sums_cache.parent_path());
  std::ofstream(sums_cache, std::ios::trunc) << next.dump(1) << "\n";
}

void write_manifest(const fs::path& staging, const std::vector<StateFile>& staged_files) {
  json manifest{
      {"format", 1}, {"clawbot", CLAWBOT_VERSION}, {"staging", staging.string()}, {"created", now_unix()}};
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) manifest["host"] = host;
  json files = json::array();
  for (const auto& f : staged_files) files.push_back(f.to_json());
  manifest["files"] = std::move(files);
  std::ofstream out(staging / manifest_name, std::ios::trunc);
  out << manifest.dump(1) << "\n";
  out.close();
  if (!out) fail_file(staging / manifest_name, "cannot write the manifest");
}

}  // namespace

json StateFile::to_json() const {
  json out{{"item", item}, {"kind", kind}, {"path", path.string()}, {"stored", stored.string()}};
  if (!sha256.empty()) out["sha256"] = sha256;
  out["size"] = size;
  return out;
}

StateFile StateFile::from_json(const json& value) {
  StateFile f;
  if (!value.is_object()) throw ClawbotError(ErrorKind::internal, "manifest: an entry is not an object");
  f.item = value.value("item", std::string());
  f.kind = value.value("kind", std::string());
  f.path = value.value("path", std::string());
  f.stored = value.value("stored", std::string());
  f.sha256 = value.value("sha256", std::string());
  if (const auto it = value.find("size"); it != value.end() && it->is_number_unsigned())
    f.size = it->get<std::uint64_t>();
  if (f.item.empty() || f.kind.empty() || !f.path.is_absolute() || !f.stored.is_absolute())
    throw ClawbotError(ErrorKind::internal, "manifest: an entry lacks item, kind or absolute paths");
  return f;
}

fs::path state_dir() {
  return user_dirs::require(user_dirs::Kind::state) / "clawbot" / "backup";
}

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string file_sha256(const fs::path& file) {
  return ops::hash_file(file.string(), false, false).sha256;
}

StagedState stage_state(const SourceOptions& options, const fs::path& staging, const fs::path& sums_cache) {
  StagedState staged;
  fs::remove_all(staging);
  fs::create_directories(staging);
  fs::permissions(staging, fs::perms::owner_all);
  staged.backup_paths.push_back(staging);

  auto stage = [&](const std::string& item, const std::string& kind, const fs::path& path) -> StateFile& {
    fs::create_directories(staging / item);
    StateFile f{item, kind, absolute_path(path), staging / item / path.filename(), {}, 0};
    for (int n = 2; fs::exists(f.stored); ++n)
      f.stored = staging / item / (std::to_string(n) + "-" + path.filename().string());
    staged.files.push_back(f);
    return staged.files.back();
  };
  auto finish = [](StateFile& f) {
    f.size = fs::file_size(f.stored);
    f.sha256 = file_sha256(f.stored);
  };
  auto want = [&](std::string_view item) {
    return options.items.empty() ||
           std::find(options.items.begin(), options.items.end(), item) != options.items.end();
  };

  // The assistant's sessions.
  const fs::path sessions =
      want("sessions") ? fs::path(client::session_db_path(options.session_db)) : fs::path();
  if (!want("sessions")) {
  } else if (fs::exists(sessions)) {
    StateFile& f = stage("sessions", "sqlite", sessions);
    snapshot_sqlite(sessions, f.stored);
    finish(f);
  } else {
    staged.notes.push_back("no session database at " + sessions.string());
  }

  // clawbot.json.
  client::ConfigSearch search;
  search.explicit_path = options.client_config;
  if (const auto location = want("configs") ? client::find_config(search) : std::nullopt) {
    StateFile& f = stage("configs", "file", location->path);
    copy_private(location->path, f.stored);
    finish(f);
  }

  // The gateway: its config, keys database and secret, then its audit log (after the database: the anchor
  // in the copy is then never ahead of the log's copy).
  if (const auto gateway_file = find_gateway_config(options.gateway_config)) {
    const gateway::GatewayConfig config = gateway::load_config(*gateway_file);
    if (want("configs")) {
      StateFile& cf = stage("configs", "file", *gateway_file);
      copy_private(*gateway_file, cf.stored);
      finish(cf);
    }
    if (!want("keys")) {
    } else if (fs::exists(config.keys_db)) {
      StateFile& db = stage("keys", "sqlite", config.keys_db);
      snapshot_sqlite(config.keys_db, db.stored);
      finish(db);
      const fs::path secret = gateway::door::secret_path(config.keys_db, config.secret_file);
      if (fs::exists(secret)) {
        StateFile& s = stage("keys", "file", secret);
        copy_private(secret, s.stored);
        finish(s);
      }
    } else {
      staged.notes.push_back("no keys database at " + config.keys_db.string());
    }
    if (want("audit") && !config.audit_log.empty() && fs::exists(config.audit_log)) {
      StateFile& log = stage("audit", "audit", config.audit_log);
      copy_whole_lines(config.audit_log, log.stored);
      fs::permissions(log.stored, fs::perms::owner_read | fs::perms::owner_write);
      finish(log);
    }
  } else {
    staged.notes.push_back(
        "no gateway.json (--gateway-config, $CLAWBOT_GATEWAY_CONFIG, "
        "${XDG_CONFIG_HOME:-~/.config}/clawbot/gateway.json or ./gateway.json)");
  }

  // The knowledge bases (clawbot kb): SQLite files like the sessions, each snapshot while it may be written.
  if (want("kb")) {
    if (const auto data = user_dirs::find(user_dirs::Kind::data)) {
      const fs::path dir = *data / "clawbot" / "kb";
      std::error_code ec;
      std::vector<fs::path> kbs;
      for (const auto& entry : fs::directory_iterator(dir, ec))
        if (entry.is_regular_file() && entry.path().extension() == ".kb") kbs.push_back(entry.path());
      std::sort(kbs.begin(), kbs.end());
      for (const auto& kb : kbs) {
        StateFile& f = stage("kb", "sqlite", kb);
        snapshot_sqlite(kb, f.stored);
        finish(f);
      }
      if (kbs.empty()) staged.notes.push_back("no knowledge base in " + dir.string());
    }
  }

  if (want("models")) stage_models(options, sums_cache, staged);
  write_manifest(staging, staged.files);
  return staged;
}

}  // namespace clawbot::backup
