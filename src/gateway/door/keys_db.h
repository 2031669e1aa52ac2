// Internal to src/gateway/door: the gateway's SQLite file (keys, the audit key and the audit anchor), the
// hashes and random bytes the door uses, and RFC 3339 times.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "client/sqlite_db.h"

namespace clawbot::gateway::door::detail {

namespace sqlite = client::sqlite;

// Creates the file with mode 0600 when missing (SQLite gives its -wal and -shm files the same mode), then
// returns the path for sqlite::Database to open.
const std::filesystem::path& private_file(const std::filesystem::path& path);

// WAL, the schema (created or checked: a newer or foreign schema throws StoreError unusable).
void open_schema(sqlite::Database& db);

// The audit log's HMAC key (32 bytes). With `create`, made and stored on first use; without, nullopt when the
// database has none.
std::optional<std::string> audit_secret(sqlite::Database& db, bool create);

struct Anchor {
  std::string log;  // the path the writer had open
  std::int64_t seq = 0;
  std::string hash;  // hex
};
std::optional<Anchor> read_anchor(sqlite::Database& db);
void write_anchor(sqlite::Database& db, const Anchor& anchor);

// --- crypto ---
using Sha256 = std::array<std::uint8_t, 32>;
std::string random_bytes(std::size_t n);                // throws std::runtime_error when the CSPRNG fails
Sha256 sha256(std::string_view a, std::string_view b);  // SHA-256(a || b)
Sha256 hmac_sha256(std::string_view key, std::string_view data);
std::string to_hex(std::span<const std::uint8_t> bytes);
std::string to_hex(std::string_view bytes);
std::optional<std::string> from_hex(std::string_view hex);

// --- time ---
// "2025-01-02T03:04:05.678Z" (with_ms) or "2025-01-02T03:04:05Z".
std::string format_rfc3339(std::chrono::system_clock::time_point time, bool with_ms = true);
// RFC 3339 with Z or +hh:mm, optional fraction; also a bare date (midnight UTC). nullopt when malformed.
// Milliseconds, not system_clock's nanoseconds, which end in 2262.
std::optional<std::chrono::sys_time<std::chrono::milliseconds>> parse_rfc3339(std::string_view text);

}  // namespace clawbot::gateway::door::detail
