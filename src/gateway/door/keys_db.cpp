#include "gateway/door/keys_db.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/json_read.h"
#include "common/openssl_handles.h"
#include "common/store_error.h"
#include "gateway/door/door.h"

namespace clawbot::gateway::door::detail {

namespace {

// PRAGMA user_version of the schema below. A newer file is refused: an older clawbot would misread it.
// 2: rows carry a MAC under the secret file's key; the audit key left the database for that file.
// 3: a key's audio seconds per hour and its admin flag, in its row and under its MAC.
constexpr std::int64_t schema_version = 3;

// Keys keep their row when revoked (revoked_at set), so the audit log's key ids always resolve to a name.
// A name is unique among active keys only: a revoked key's name may be given to its replacement.
constexpr const char* schema_sql = R"sql(
CREATE TABLE api_keys (
  id                  TEXT    PRIMARY KEY,
  name                TEXT    NOT NULL,
  salt                TEXT    NOT NULL,
  hash                TEXT    NOT NULL,
  requests_per_minute INTEGER NOT NULL DEFAULT 0 CHECK (requests_per_minute >= 0),
  tokens_per_minute   INTEGER NOT NULL DEFAULT 0 CHECK (tokens_per_minute >= 0),
  created_at          TEXT    NOT NULL,
  revoked_at          TEXT,
  mac                 TEXT    NOT NULL DEFAULT '',
  audio_seconds_per_hour INTEGER NOT NULL DEFAULT 0 CHECK (audio_seconds_per_hour >= 0),
  admin               INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1))
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys(name) WHERE revoked_at IS NULL;
CREATE TABLE gateway_meta (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE audit_anchor (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  log        TEXT    NOT NULL,
  seq        INTEGER NOT NULL,
  hash       TEXT    NOT NULL,
  updated_at TEXT    NOT NULL,
  mac        TEXT    NOT NULL DEFAULT ''
);
PRAGMA user_version = 3;
)sql";

constexpr std::size_t secret_bytes = 32;

[[noreturn]] void refuse(const sqlite::Database& db, const std::string& problem) {
  throw StoreError(StoreErrorKind::unusable, db.path() + ": " + problem);
}

}  // namespace

const std::filesystem::path& private_file(const std::filesystem::path& path) {
  // O_EXCL: only a file this call creates is ever opened here. Opening and closing an existing file would
  // drop every POSIX lock this process holds on it (they belong to the process and the file, and any close
  // releases them), including the SHARED lock a SQLite connection of ours keeps on it in WAL mode; another
  // process's SQLite closing the file would then take it for unused and delete our -wal and -shm. A file that
  // did not exist a moment ago is held by no connection.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::close(fd);
  } else if (errno != EEXIST && errno != EACCES && errno != EISDIR) {
    // EACCES and EISDIR: let SQLite open it and report in its own words (read-only, not a database).
    throw StoreError(StoreErrorKind::unusable,
                     path.string() + ": cannot create the keys database: " + std::strerror(errno) +
                         " (check that the directory exists and is writable)");
  }
  return path;
}

namespace {

// The secret file's 32 bytes, or nullopt when there is no such file. Refuses a file others may read or write.
std::optional<std::string> read_secret_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    throw StoreError(StoreErrorKind::unusable,
                     path.string() + ": cannot read the gateway's secret file: " + std::strerror(errno) +
                         " (run the gateway and its admin commands as the same user)");
  }
  struct stat st {};
  std::string text(200, '\0');
  ssize_t got = -1;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) got = ::read(fd, text.data(), text.size());
  ::close(fd);
  if (!S_ISREG(st.st_mode))
    throw StoreError(StoreErrorKind::unusable, path.string() + ": the gateway's secret file is not a file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw StoreError(StoreErrorKind::unusable, path.string() + ": the gateway's secret file has mode " +
                                                   mode + ": only its owner may read it (chmod 600 " +
                                                   path.string() + ")");
  }
  if (got < 0)
    throw StoreError(StoreErrorKind::unusable,
                     path.string() + ": cannot read the gateway's secret file: " + std::strerror(errno));
  text.resize(static_cast<std::size_t>(got));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  auto bytes = from_hex(text);
  if (!bytes || bytes->size() != secret_bytes)
    throw StoreError(
        StoreErrorKind::unusable,
        path.string() + ": the gateway's secret file must hold 64 hex digits (openssl rand -hex 32)");
  return bytes;
}

// Writes a new secret file (0600); false when one exists already.
bool create_secret_file(const std::filesystem::path& path, std::string_view secret) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return false;
    throw StoreError(StoreErrorKind::unusable,
                     path.string() + ": cannot create the gateway's secret file: " + std::strerror(errno));
  }
  const std::string text = to_hex(secret) + "\n";
  const bool ok =
      ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    throw StoreError(StoreErrorKind::unusable,
                     path.string() + ": cannot write the gateway's secret file: " + std::strerror(saved));
  }
  return true;
}

Secrets derive(std::string secret) {
  const Sha256 rows = hmac_sha256(secret, "clawbot gateway database rows v1");
  return Secrets{std::move(secret), std::string(rows.begin(), rows.end())};
}

// Length-prefixed fields: no two different rows give the same bytes.
void field(std::string& out, std::string_view value) {
  out.append(std::to_string(value.size())).append(":").append(value).append(",");
}

std::string anchor_mac(const Secrets& secrets, const Anchor& anchor) {
  std::string data = "anchor v1,";
  field(data, anchor.log);
  field(data, std::to_string(anchor.seq));
  field(data, anchor.hash);
  return to_hex(hmac_sha256(secrets.rows, data));
}

std::optional<std::string> audit_key_in_database(sqlite::Database& db) {
  sqlite::Statement select(db, "SELECT value FROM gateway_meta WHERE name = 'audit_hmac_key'");
  if (!select.step()) return std::nullopt;
  auto bytes = from_hex(select.text_at(0));
  if (!bytes || bytes->size() != secret_bytes) refuse(db, "the audit key in the database is damaged");
  return bytes;
}

// Schema 1 to 2, inside the caller's write transaction: the audit key moves to the secret file, and every row
// gets its MAC (rows written before now are trusted as they are: there was nothing to check them against).
void migrate_from_1(sqlite::Database& db, const std::filesystem::path& secret_file,
                    std::vector<std::string>* notes) {
  db.exec(
      "ALTER TABLE api_keys ADD COLUMN mac TEXT NOT NULL DEFAULT '';"
      "ALTER TABLE audit_anchor ADD COLUMN mac TEXT NOT NULL DEFAULT '';");
  const auto in_database = audit_key_in_database(db);
  auto secret = read_secret_file(secret_file);
  if (in_database && secret && *secret != *in_database)
    refuse(db, "its audit key differs from the one in " + secret_file.string() +
                   ": this secret file belongs to another gateway database");
  if (!secret) {
    secret = in_database ? *in_database : random_bytes(secret_bytes);
    create_secret_file(secret_file, *secret);
  }
  const Secrets secrets = derive(*secret);
  std::vector<std::array<std::string, 2>> macs;  // id, mac
  {
    sqlite::Statement rows(db,
                           "SELECT id, name, salt, hash, requests_per_minute, tokens_per_minute, created_at, "
                           "coalesce(revoked_at, '') FROM api_keys");
    while (rows.step())
      macs.push_back({rows.text_at(0), key_row_mac_v1(secrets, rows.text_at(0), rows.text_at(1),
                                                      rows.text_at(2), rows.text_at(3), rows.int64_at(4),
                                                      rows.int64_at(5), rows.text_at(6), rows.text_at(7))});
  }
  for (const auto& [id, mac] : macs) {
    sqlite::Statement update(db, "UPDATE api_keys SET mac = ?2 WHERE id = ?1");
    update.bind(1, id).bind(2, mac).run();
  }
  {
    sqlite::Statement select(db, "SELECT log, seq, hash FROM audit_anchor WHERE id = 1");
    if (select.step()) {
      const Anchor anchor{select.text_at(0), select.int64_at(1), select.text_at(2)};
      sqlite::Statement update(db, "UPDATE audit_anchor SET mac = ?1 WHERE id = 1");
      update.bind(1, anchor_mac(secrets, anchor)).run();
    }
  }
  db.exec("DELETE FROM gateway_meta WHERE name = 'audit_hmac_key'; PRAGMA user_version = 2;");
  if (notes != nullptr)
    notes->push_back(db.path() + ": migrated to schema 2: " +
                     (in_database ? "the audit key moved out of the database into " + secret_file.string()
                                  : "the secret file is " + secret_file.string()) +
                     "; " + std::to_string(macs.size()) + " key row(s) now carry a MAC under it");
}

// The rows of a database without a secret file: a new secret would refuse them all, so say so.
[[noreturn]] void secret_missing(const sqlite::Database& db, const std::filesystem::path& secret_file) {
  throw StoreError(StoreErrorKind::unusable,
                   secret_file.string() + ": no such file, but " + db.path() +
                       " has keys or an audit anchor made under a secret: restore that file, or name "
                       "where it is (\"secret_file\" in gateway.json, --secret)");
}

// Schema 2 to 3, inside the caller's write transaction: two columns (audio seconds per hour, admin; 0 for
// every existing key), and each row's MAC moves to the version that covers them. Only a row whose old MAC
// verifies gets a new one: a forged row stays refused (migrating must not vouch for what someone else wrote).
void migrate_from_2(sqlite::Database& db, const std::filesystem::path& secret_file,
                    std::vector<std::string>* notes) {
  db.exec(
      "ALTER TABLE api_keys ADD COLUMN audio_seconds_per_hour INTEGER NOT NULL DEFAULT 0 "
      "CHECK (audio_seconds_per_hour >= 0);"
      "ALTER TABLE api_keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1));");
  std::vector<std::array<std::string, 2>> macs;  // id, new mac
  std::size_t rows_seen = 0;
  {
    const auto secret = read_secret_file(secret_file);
    const std::optional<Secrets> secrets = secret ? std::optional<Secrets>(derive(*secret)) : std::nullopt;
    sqlite::Statement rows(db,
                           "SELECT id, name, salt, hash, requests_per_minute, tokens_per_minute, created_at, "
                           "coalesce(revoked_at, ''), mac FROM api_keys");
    while (rows.step()) {
      ++rows_seen;
      if (!secrets) secret_missing(db, secret_file);
      const std::string v1 =
          key_row_mac_v1(*secrets, rows.text_at(0), rows.text_at(1), rows.text_at(2), rows.text_at(3),
                         rows.int64_at(4), rows.int64_at(5), rows.text_at(6), rows.text_at(7));
      if (!same_mac(rows.text_at(8), v1)) continue;
      macs.push_back({rows.text_at(0),
                      key_row_mac(*secrets, KeyRowFields{rows.text_at(0), rows.text_at(1), rows.text_at(2),
                                                         rows.text_at(3), rows.int64_at(4), rows.int64_at(5),
                                                         0, false, rows.text_at(6), rows.text_at(7)})});
    }
  }
  for (const auto& [id, mac] : macs) {
    sqlite::Statement update(db, "UPDATE api_keys SET mac = ?2 WHERE id = ?1");
    update.bind(1, id).bind(2, mac).run();
  }
  db.exec("PRAGMA user_version = 3;");
  if (notes != nullptr && rows_seen > 0)
    notes->push_back(db.path() + ": migrated to schema 3 (audio seconds per hour and admin per key): " +
                     std::to_string(macs.size()) + " of " + std::to_string(rows_seen) +
                     " key row(s) re-MACed" +
                     (macs.size() < rows_seen ? " (the others' MAC did not verify: they stay refused)" : ""));
}

}  // namespace

Secrets open_door(sqlite::Database& db, const std::filesystem::path& secret_file, bool create,
                  std::vector<std::string>* notes) {
  const auto read_version = [&db] {
    sqlite::Statement version(db, "PRAGMA user_version");
    version.step();
    return version.int64_at(0);
  };
  const auto foreign_tables = [&db] {
    sqlite::Statement tables(db, "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'");
    tables.step();
    return tables.int64_at(0);
  };
  const auto check = [&](std::int64_t version) {
    if (version > schema_version)
      refuse(db, "the keys database has schema version " + std::to_string(version) +
                     ", newer than this clawbot knows (" + std::to_string(schema_version) +
                     "): use a newer clawbot");
    if (version == 0 && foreign_tables() > 0)
      refuse(db,
             "this SQLite file is not a clawbot gateway keys database (it has tables but no clawbot schema)");
  };
  const std::int64_t version = read_version();
  check(version);
  // WAL: the gateway's readers never block `keys create` in another process, nor it them.
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = NORMAL");
  if (version < schema_version) {
    sqlite::Transaction transaction(db);
    const std::int64_t locked_version = read_version();  // another process may have done it meanwhile
    check(locked_version);
    if (locked_version == 0) db.exec(schema_sql);
    if (locked_version == 1) migrate_from_1(db, secret_file, notes);
    if (locked_version == 1 || locked_version == 2) migrate_from_2(db, secret_file, notes);
    transaction.commit();
  }
  if (auto secret = read_secret_file(secret_file)) return derive(std::move(*secret));
  if (!create)
    throw StoreError(StoreErrorKind::unusable,
                     secret_file.string() +
                         ": no such file: the secret the gateway keeps its keys and audit "
                         "log under (it makes it on first start; name where it is with "
                         "\"secret_file\" in gateway.json or --secret)");
  {
    // A new secret for a database that has rows would refuse them all: the old one is missing, say so.
    sqlite::Statement rows(db,
                           "SELECT (SELECT count(*) FROM api_keys) + (SELECT count(*) FROM audit_anchor)");
    rows.step();
    if (rows.int64_at(0) > 0) secret_missing(db, secret_file);
  }
  if (create_secret_file(secret_file, random_bytes(secret_bytes))) {
    if (notes != nullptr) notes->push_back("created the gateway's secret file " + secret_file.string());
  }
  auto secret = read_secret_file(secret_file);  // ours, or one another process made first
  if (!secret)
    throw StoreError(StoreErrorKind::unusable, secret_file.string() + ": vanished while opening it");
  return derive(std::move(*secret));
}

std::string key_row_mac_v1(const Secrets& secrets, std::string_view id, std::string_view name,
                           std::string_view salt, std::string_view hash, std::int64_t requests_per_minute,
                           std::int64_t tokens_per_minute, std::string_view created_at,
                           std::string_view revoked_at) {
  std::string data = "key row v1,";
  for (const std::string_view value : {id, name, salt, hash}) field(data, value);
  field(data, std::to_string(requests_per_minute));
  field(data, std::to_string(tokens_per_minute));
  field(data, created_at);
  field(data, revoked_at);
  return to_hex(hmac_sha256(secrets.rows, data));
}

std::string key_row_mac(const Secrets& secrets, const KeyRowFields& row) {
  std::string data = "key row v2,";
  for (const std::string_view value : {row.id, row.name, row.salt, row.hash}) field(data, value);
  field(data, std::to_string(row.requests_per_minute));
  field(data, std::to_string(row.tokens_per_minute));
  field(data, std::to_string(row.audio_seconds_per_hour));
  field(data, row.admin ? "1" : "0");
  field(data, row.created_at);
  field(data, row.revoked_at);
  return to_hex(hmac_sha256(secrets.rows, data));
}

bool same_mac(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<Anchor> read_anchor(sqlite::Database& db, const Secrets& secrets) {
  sqlite::Statement select(db, "SELECT log, seq, hash, mac FROM audit_anchor WHERE id = 1");
  if (!select.step()) return std::nullopt;
  Anchor anchor{select.text_at(0), select.int64_at(1), select.text_at(2)};
  anchor.intact = same_mac(select.text_at(3), anchor_mac(secrets, anchor));
  return anchor;
}

void write_anchor(sqlite::Database& db, const Secrets& secrets, const Anchor& anchor) {
  sqlite::Statement upsert(
      db,
      "INSERT INTO audit_anchor (id, log, seq, hash, updated_at, mac) VALUES (1, ?1, ?2, ?3, ?4, ?5) "
      "ON CONFLICT (id) DO UPDATE SET log = ?1, seq = ?2, hash = ?3, updated_at = ?4, mac = ?5");
  upsert.bind(1, anchor.log)
      .bind(2, anchor.seq)
      .bind(3, anchor.hash)
      .bind(4, format_rfc3339(std::chrono::system_clock::now()))
      .bind(5, anchor_mac(secrets, anchor))
      .run();
}

// --- the witness ---

void append_witness(const std::filesystem::path& dir, std::int64_t seq, std::string_view hash,
                    const std::filesystem::path& log) {
  const std::filesystem::path file = dir / witness_file_name;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  nlohmann::ordered_json line;
  line["seq"] = seq;
  line["hash"] = hash;
  line["time"] = format_rfc3339(std::chrono::system_clock::now());
  line["log"] = std::filesystem::absolute(log).lexically_normal().string();
  line["host"] = host;
  const std::string text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  const int fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    throw ClawbotError(ErrorKind::internal, "cannot write the audit witness " + file.string() + ": " +
                                                std::strerror(errno) +
                                                " (is the witness directory there and writable?)");
  const bool ok =
      ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok)
    throw ClawbotError(ErrorKind::internal,
                       "cannot write the audit witness " + file.string() + ": " + std::strerror(saved));
}

std::vector<WitnessedHead> read_witness(const std::filesystem::path& dir,
                                        std::vector<std::size_t>& bad_lines) {
  const std::filesystem::path file = dir / witness_file_name;
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw ClawbotError(ErrorKind::internal,
                       "cannot read the audit witness " + file.string() + ": " + std::strerror(errno));
  std::vector<WitnessedHead> heads;
  std::size_t number = 0;
  for (std::string text; std::getline(in, text);) {
    ++number;
    if (text.empty()) continue;
    const auto parsed = json_read::parse(text, {.max_depth = 4, .max_bytes = 64 * 1024});
    const auto& j = parsed.value;
    if (!j || !j->is_object() || !j->contains("seq") || !(*j)["seq"].is_number_integer() ||
        !j->contains("hash") || !(*j)["hash"].is_string()) {
      bad_lines.push_back(number);
      continue;
    }
    WitnessedHead head;
    head.seq = (*j)["seq"].get<std::int64_t>();
    head.hash = (*j)["hash"].get<std::string>();
    if (j->contains("time") && (*j)["time"].is_string()) head.time = (*j)["time"].get<std::string>();
    head.line = number;
    heads.push_back(std::move(head));
  }
  return heads;
}

// --- crypto ---

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    throw ClawbotError(ErrorKind::internal,
                       "the system's random number generator failed (OpenSSL RAND_bytes)");
  return out;
}

Sha256 sha256(std::string_view a, std::string_view b) {
  Sha256 out{};
  const openssl::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  unsigned int len = 0;
  const bool ok = ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx.get(), a.data(), a.size()) == 1 &&
                  EVP_DigestUpdate(ctx.get(), b.data(), b.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx.get(), out.data(), &len) == 1;
  // Only an allocation failure gets here; refusing the key is the safe answer, and all-0xff matches no hash.
  if (!ok) out.fill(0xff);
  return out;
}

Sha256 hmac_sha256(std::string_view key, std::string_view data) {
  Sha256 out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len) == nullptr)
    throw ClawbotError(ErrorKind::internal, "HMAC-SHA256 failed (OpenSSL)");
  return out;
}

// --- time ---

std::string format_rfc3339(std::chrono::system_clock::time_point time, bool with_ms) {
  using namespace std::chrono;
  const auto ms_total = duration_cast<milliseconds>(time.time_since_epoch()).count();
  auto seconds_total = ms_total / 1000;
  auto ms = ms_total % 1000;
  if (ms < 0) {  // before 1970: floor, not truncate
    ms += 1000;
    --seconds_total;
  }
  const std::time_t t = static_cast<std::time_t>(seconds_total);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[96];
  if (with_ms) {
    std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  } else {
    std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  }
  return buffer;
}

std::optional<std::chrono::sys_time<std::chrono::milliseconds>> parse_rfc3339(std::string_view text) {
  using namespace std::chrono;
  std::size_t at = 0;
  const auto digits = [&](std::size_t n, int& out) {
    if (at + n > text.size()) return false;
    out = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const char c = text[at + i];
      if (c < '0' || c > '9') return false;
      out = out * 10 + (c - '0');
    }
    at += n;
    return true;
  };
  const auto expect = [&](char c) {
    if (at < text.size() && (text[at] == c || (c == 'T' && (text[at] == 't' || text[at] == ' ')))) {
      ++at;
      return true;
    }
    return false;
  };
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!digits(4, year) || !expect('-') || !digits(2, month) || !expect('-') || !digits(2, day))
    return std::nullopt;
  const year_month_day date{std::chrono::year(year), std::chrono::month(static_cast<unsigned>(month)),
                            std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok()) return std::nullopt;
  sys_time<milliseconds> result = sys_days(date);
  if (at == text.size()) return result;  // a bare date: midnight UTC
  if (!expect('T') || !digits(2, hour) || !expect(':') || !digits(2, minute) || !expect(':') ||
      !digits(2, second))
    return std::nullopt;
  if (hour > 23 || minute > 59 || second > 60) return std::nullopt;
  result += hours(hour) + minutes(minute) + seconds(second);
  if (at < text.size() && text[at] == '.') {
    ++at;
    int ms = 0, scale = 100, count = 0;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
      ms += (text[at] - '0') * scale;
      scale /= 10;
      ++at;
      ++count;
    }
    if (count == 0) return std::nullopt;
    result += milliseconds(ms);
  }
  if (at == text.size()) return std::nullopt;  // RFC 3339 needs a zone
  if (text[at] == 'Z' || text[at] == 'z') {
    ++at;
  } else if (text[at] == '+' || text[at] == '-') {
    const int sign = text[at] == '+' ? 1 : -1;
    ++at;
    int off_h = 0, off_m = 0;
    if (!digits(2, off_h) || !expect(':') || !digits(2, off_m) || off_h > 23 || off_m > 59)
      return std::nullopt;
    result -= sign * (hours(off_h) + minutes(off_m));
  } else {
    return std::nullopt;
  }
  if (at != text.size()) return std::nullopt;
  return result;
}

}  // namespace clawbot::gateway::door::detail

namespace clawbot::gateway::door {

std::filesystem::path secret_path(const std::filesystem::path& db, const std::filesystem::path& configured) {
  if (!configured.empty()) return configured;
  if (const char* credentials = std::getenv("CREDENTIALS_DIRECTORY"); credentials && credentials[0] != '\0') {
    const std::filesystem::path candidate = std::filesystem::path(credentials) / credential_name;
    std::error_code ec;
    if (std::filesystem::exists(candidate, ec)) return candidate;
  }
  std::filesystem::path beside = db;
  beside.replace_extension(".secret");
  return beside;
}

}  // namespace clawbot::gateway::door
