#include "common/sqlite_db.h"

#include <sqlite3.h>

#include <string>

namespace clawbot::sqlite {

void CloseConnection::operator()(sqlite3* db) const noexcept {
  sqlite3_close_v2(db);
}
void FinalizeStatement::operator()(sqlite3_stmt* statement) const noexcept {
  sqlite3_finalize(statement);
}

namespace {

StoreErrorKind kind_of(int rc) {
  switch (rc & 0xff) {  // the primary code of an extended one
    case SQLITE_NOTADB:
    case SQLITE_CANTOPEN:
      return StoreErrorKind::unusable;
    case SQLITE_READONLY:
      return StoreErrorKind::read_only;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return StoreErrorKind::busy;
    case SQLITE_CONSTRAINT:
      return StoreErrorKind::invalid_argument;
    default:
      return StoreErrorKind::io;
  }
}

// What to do about a failure, in a few words, for the codes a person can act on.
std::string_view advice(int rc) {
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
      return " (move it away or pass another --db)";
    case SQLITE_CANTOPEN:
      return " (check that the directory exists and is writable)";
    case SQLITE_READONLY:
      return " (the file or its directory is read-only: fix the permissions or pass another --db)";
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return " (another clawbot process holds the database lock; try again when it is done)";
    case SQLITE_FULL:
      return " (the disk is full)";
    case SQLITE_CORRUPT:
      return " (the database is damaged: restore it from a backup)";
    default:
      return "";
  }
}

// The statement as errors show it: one line, at most 60 characters.
std::string summary_of(std::string_view sql) {
  std::string out;
  for (const char c : sql) {
    const bool space = c == ' ' || c == '\n' || c == '\t';
    if (space && (out.empty() || out.back() == ' ')) continue;
    out += space ? ' ' : c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out.size() > 60 ? out.substr(0, 57) + "..." : out;
}

}  // namespace

Database::Database(const std::filesystem::path& path) : path_(path.string()) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  db_.reset(raw);  // sqlite3_open_v2 hands back a handle even on failure; it must be closed either way
  if (rc != SQLITE_OK) fail(rc, "opening");
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  // An existing file we may not write is opened read-only without an error; say so now, not at the first
  // write.
  if (sqlite3_db_readonly(raw, "main") == 1) {
    throw StoreError(
        StoreErrorKind::read_only,
        path_ + ": the file is read-only to this user: fix its permissions or pass another --db");
  }
}

void Database::exec(const char* sql) {
  const int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(rc, "`" + summary_of(sql) + "`");
}

std::int64_t Database::last_insert_rowid() const noexcept {
  return sqlite3_last_insert_rowid(db_.get());
}
int Database::changes() const noexcept {
  return sqlite3_changes(db_.get());
}

void Database::fail(int rc, std::string_view doing) const {
  // The connection's message is more specific than sqlite3_errstr, but only when it belongs to this rc.
  const bool connection_message = db_ && sqlite3_extended_errcode(db_.get()) == rc;
  const char* reason = connection_message ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(rc);
  std::string message = path_ + ": " + std::string(doing) + " failed: " + reason;
  message += advice(rc);
  throw StoreError(kind_of(rc), message);
}

Statement::Statement(Database& db, std::string_view sql) : db_(db), summary_(summary_of(sql)) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v2(db.handle(), sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
  statement_.reset(raw);
  if (rc != SQLITE_OK) db_.fail(rc, "preparing `" + summary_ + "`");
}

Statement& Statement::bind(int index, std::string_view text) {
  // SQLITE_TRANSIENT: SQLite copies the text, so the view need not outlive the statement. An empty view may
  // have a null data(), which SQLite would bind as NULL rather than as ''.
  const char* data = text.data() ? text.data() : "";
  const int rc =
      sqlite3_bind_text64(statement_.get(), index, data, text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK) db_.fail(rc, "binding a value to `" + summary_ + "`");
  return *this;
}

Statement& Statement::bind(int index, std::int64_t value) {
  const int rc = sqlite3_bind_int64(statement_.get(), index, value);
  if (rc != SQLITE_OK) db_.fail(rc, "binding a value to `" + summary_ + "`");
  return *this;
}

Statement& Statement::bind(int index, std::optional<double> value) {
  const int rc = value ? sqlite3_bind_double(statement_.get(), index, *value)
                       : sqlite3_bind_null(statement_.get(), index);
  if (rc != SQLITE_OK) db_.fail(rc, "binding a value to `" + summary_ + "`");
  return *this;
}

Statement& Statement::bind(int index, std::optional<std::int64_t> value) {
  const int rc = value ? sqlite3_bind_int64(statement_.get(), index, *value)
                       : sqlite3_bind_null(statement_.get(), index);
  if (rc != SQLITE_OK) db_.fail(rc, "binding a value to `" + summary_ + "`");
  return *this;
}

Statement& Statement::bind_blob(int index, std::span<const std::byte> bytes) {
  // A zero-length blob is bound as one (not NULL): SQLite wants a non-null pointer for that.
  static constexpr std::byte empty{};
  const void* data = bytes.empty() ? &empty : bytes.data();
  const int rc = sqlite3_bind_blob64(statement_.get(), index, data, bytes.size(), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) db_.fail(rc, "binding a value to `" + summary_ + "`");
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(statement_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_.fail(rc, "`" + summary_ + "`");
}

void Statement::reset() {
  // sqlite3_reset repeats the last step's error, already reported by step(): nothing new to check.
  sqlite3_reset(statement_.get());
}

std::int64_t Statement::int64_at(int column) const {
  return sqlite3_column_int64(statement_.get(), column);
}
double Statement::double_at(int column) const {
  return sqlite3_column_double(statement_.get(), column);
}
bool Statement::null_at(int column) const {
  return sqlite3_column_type(statement_.get(), column) == SQLITE_NULL;
}

std::span<const std::byte> Statement::blob_at(int column) const {
  const void* data = sqlite3_column_blob(statement_.get(), column);
  const int bytes = sqlite3_column_bytes(statement_.get(), column);  // after _blob, as SQLite asks
  if (data == nullptr) return {};
  return {static_cast<const std::byte*>(data), static_cast<std::size_t>(bytes)};
}

std::string Statement::text_at(int column) const {
  const auto* text = sqlite3_column_text(statement_.get(), column);
  const int bytes = sqlite3_column_bytes(statement_.get(), column);  // after _text, as SQLite asks
  return text ? std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(bytes))
              : std::string();
}

Transaction::Transaction(Database& db, Lock lock) : db_(db) {
  db_.exec(lock == Lock::write ? "BEGIN IMMEDIATE" : "BEGIN");
}

Transaction::~Transaction() {
  // Nothing to report from a destructor: a failed ROLLBACK leaves SQLite to roll back when the connection
  // closes.
  if (!done_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

}  // namespace clawbot::sqlite
