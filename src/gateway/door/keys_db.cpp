#include "gateway/door/keys_db.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "client/store_error.h"

namespace clawbot::gateway::door::detail {

namespace {

using client::StoreError;
using client::StoreErrorKind;

// PRAGMA user_version of the schema below. A newer file is refused: an older clawbot would misread it.
constexpr std::int64_t schema_version = 1;

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
  revoked_at          TEXT
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
  updated_at TEXT    NOT NULL
);
PRAGMA user_version = 1;
)sql";

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

void open_schema(sqlite::Database& db) {
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
  if (version == 0) {
    sqlite::Transaction transaction(db);
    const std::int64_t locked_version = read_version();  // another process may have created it meanwhile
    check(locked_version);
    if (locked_version == 0) db.exec(schema_sql);
    transaction.commit();
  }
}

std::optional<std::string> audit_secret(sqlite::Database& db, bool create) {
  const auto read = [&db]() -> std::optional<std::string> {
    sqlite::Statement select(db, "SELECT value FROM gateway_meta WHERE name = 'audit_hmac_key'");
    if (!select.step()) return std::nullopt;
    auto bytes = from_hex(select.text_at(0));
    if (!bytes || bytes->size() != 32) refuse(db, "the audit key in the database is damaged");
    return bytes;
  };
  if (auto secret = read()) return secret;
  if (!create) return std::nullopt;
  sqlite::Transaction transaction(db);
  sqlite::Statement insert(db,
                           "INSERT OR IGNORE INTO gateway_meta (name, value) VALUES ('audit_hmac_key', ?1)");
  insert.bind(1, to_hex(random_bytes(32))).run();
  auto secret = read();  // ours, or the one another process stored first
  transaction.commit();
  return secret;
}

std::optional<Anchor> read_anchor(sqlite::Database& db) {
  sqlite::Statement select(db, "SELECT log, seq, hash FROM audit_anchor WHERE id = 1");
  if (!select.step()) return std::nullopt;
  return Anchor{select.text_at(0), select.int64_at(1), select.text_at(2)};
}

void write_anchor(sqlite::Database& db, const Anchor& anchor) {
  sqlite::Statement upsert(
      db,
      "INSERT INTO audit_anchor (id, log, seq, hash, updated_at) VALUES (1, ?1, ?2, ?3, ?4) "
      "ON CONFLICT (id) DO UPDATE SET log = ?1, seq = ?2, hash = ?3, updated_at = ?4");
  upsert.bind(1, anchor.log)
      .bind(2, anchor.seq)
      .bind(3, anchor.hash)
      .bind(4, format_rfc3339(std::chrono::system_clock::now()))
      .run();
}

// --- crypto ---

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    throw std::runtime_error("the system's random number generator failed (OpenSSL RAND_bytes)");
  return out;
}

Sha256 sha256(std::string_view a, std::string_view b) {
  Sha256 out{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int len = 0;
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, a.data(), a.size()) == 1 &&
                  EVP_DigestUpdate(ctx, b.data(), b.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, out.data(), &len) == 1;
  EVP_MD_CTX_free(ctx);
  // Only an allocation failure gets here; refusing the key is the safe answer, and all-0xff matches no hash.
  if (!ok) out.fill(0xff);
  return out;
}

Sha256 hmac_sha256(std::string_view key, std::string_view data) {
  Sha256 out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len) == nullptr)
    throw std::runtime_error("HMAC-SHA256 failed (OpenSSL)");
  return out;
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (const std::uint8_t b : bytes) {
    hex.push_back(digits[b >> 4]);
    hex.push_back(digits[b & 0xf]);
  }
  return hex;
}

std::string to_hex(std::string_view bytes) {
  return to_hex(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

std::optional<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>((hi << 4) | lo));
  }
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
