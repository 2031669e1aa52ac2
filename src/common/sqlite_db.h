// RAII over the SQLite C API for the stores (client sessions, gateway keys and audit): a connection, prepared
// statements and transactions. Every SQLite return code is checked; a failure throws StoreError naming the
// database file and what was being done. User text only ever reaches SQLite through bind(), never through the
// SQL string.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/store_error.h"

struct sqlite3;
struct sqlite3_stmt;

namespace clawbot::sqlite {

struct CloseConnection {
  void operator()(sqlite3* db) const noexcept;
};
struct FinalizeStatement {
  void operator()(sqlite3_stmt* statement) const noexcept;
};

class Database {
 public:
  static constexpr int busy_timeout_ms = 5000;

  // Opens (creating when missing) the file read-write, waiting up to busy_timeout_ms for another process's
  // lock before a statement fails. Throws StoreError when it cannot.
  explicit Database(const std::filesystem::path& path);

  sqlite3* handle() const noexcept { return db_.get(); }
  const std::string& path() const noexcept { return path_; }

  // Runs constant SQL (schema, pragmas): never text that came from a user.
  void exec(const char* sql);
  std::int64_t last_insert_rowid() const noexcept;
  int changes() const noexcept;  // rows changed by the last statement

  // Throws StoreError for return code rc; `doing` says what failed ("reading the schema version").
  [[noreturn]] void fail(int rc, std::string_view doing) const;

 private:
  std::string path_;
  std::unique_ptr<sqlite3, CloseConnection> db_;
};

class Statement {
 public:
  Statement(Database& db, std::string_view sql);

  // Parameters are numbered from 1, as in SQLite. Each returns *this to chain.
  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, std::optional<double> value);
  Statement& bind(int index, std::optional<std::int64_t> value);
  Statement& bind_blob(int index, std::span<const std::byte> bytes);

  // Runs one step: true when a row is ready to read, false when the statement is done.
  bool step();
  // Makes the statement ready to run again (bind new values, then step); the bindings stay.
  void reset();
  // Runs a statement that returns no rows.
  void run() {
    while (step()) {
    }
  }

  std::int64_t int64_at(int column) const;
  double double_at(int column) const;
  std::string text_at(int column) const;
  bool null_at(int column) const;
  // The bytes of a BLOB column (empty for NULL), valid until the next step() or the statement's end.
  std::span<const std::byte> blob_at(int column) const;

 private:
  Database& db_;
  std::string summary_;  // the SQL, shortened, for error messages
  std::unique_ptr<sqlite3_stmt, FinalizeStatement> statement_;
};

// A transaction that ends with ROLLBACK on destruction unless commit() ran. Lock::write begins IMMEDIATE: it
// takes the write lock at once, so a busy database waits (busy timeout) here rather than failing halfway.
// Lock::read gives several reads one consistent snapshot.
class Transaction {
 public:
  enum class Lock { read, write };
  explicit Transaction(Database& db, Lock lock = Lock::write);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Database& db_;
  bool done_ = false;
};

}  // namespace clawbot::sqlite
