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
#include <vector>

#include "common/sqlite_db.h"
#include "common/text.h"

namespace clawbot::gateway::door::detail {

// Creates the file with mode 0600 when missing (SQLite gives its -wal and -shm files the same mode), then
// returns the path for sqlite::Database to open.
const std::filesystem::path& private_file(const std::filesystem::path& path);

// The door's secret: 32 random bytes, kept apart from the database in a file only the service can read (see
// secret_path in door.h). The audit log's HMAC key is the secret itself (as it was in the database before
// schema 2, so that old logs still verify); rows of the database (keys, the anchor) are MACed under a key
// derived from it.
struct Secrets {
  std::string audit;  // HMAC key of the audit log's lines
  std::string rows;   // HMAC key of the database's rows
};

// WAL, the schema (created, migrated from 1 or 2, or checked: a newer or foreign schema throws StoreError
// unusable), and the secrets from `secret_file` (created 0600 when missing and `create`; a schema-1
// database's audit key is moved out into it). Migration notes go to `notes` (for the log).
Secrets open_door(sqlite::Database& db, const std::filesystem::path& secret_file, bool create,
                  std::vector<std::string>* notes = nullptr);

// A key row's fields, as its MAC covers them.
struct KeyRowFields {
  std::string_view id, name, salt, hash;
  std::int64_t requests_per_minute = 0, tokens_per_minute = 0, audio_seconds_per_hour = 0;
  bool admin = false;
  std::string_view created_at, revoked_at;
};
// A key row's MAC (hex) over every field (schema 3: "key row v2").
std::string key_row_mac(const Secrets& secrets, const KeyRowFields& row);
// The MAC of schema 2's rows (without audio seconds and admin): what a migration checks before re-MACing.
std::string key_row_mac_v1(const Secrets& secrets, std::string_view id, std::string_view name,
                           std::string_view salt, std::string_view hash, std::int64_t requests_per_minute,
                           std::int64_t tokens_per_minute, std::string_view created_at,
                           std::string_view revoked_at);
// Constant-time comparison of two MACs in hex.
bool same_mac(std::string_view a, std::string_view b);

struct Anchor {
  std::string log;  // the path the writer had open
  std::int64_t seq = 0;
  std::string hash;    // hex
  bool intact = true;  // its MAC verifies (read_anchor)
};
std::optional<Anchor> read_anchor(sqlite::Database& db, const Secrets& secrets);
void write_anchor(sqlite::Database& db, const Secrets& secrets, const Anchor& anchor);

// --- the witness: audit heads recorded outside the machine ---
struct WitnessedHead {
  std::int64_t seq = 0;
  std::string hash;
  std::string time;      // RFC 3339, when it was witnessed
  std::size_t line = 0;  // in the witness file
};
inline constexpr std::string_view witness_file_name = "audit-witness.jsonl";
// Appends {"seq","hash","time","log","host"} to DIR/audit-witness.jsonl and syncs it; throws
// ClawbotError naming the file when it cannot.
void append_witness(const std::filesystem::path& dir, std::int64_t seq, std::string_view hash,
                    const std::filesystem::path& log);
// Every head in DIR/audit-witness.jsonl (lines that are not heads are reported in `bad_lines`); throws
// ClawbotError when the file cannot be read.
std::vector<WitnessedHead> read_witness(const std::filesystem::path& dir,
                                        std::vector<std::size_t>& bad_lines);

// --- crypto ---
using Sha256 = std::array<std::uint8_t, 32>;
std::string random_bytes(std::size_t n);                // throws ClawbotError when the CSPRNG fails
Sha256 sha256(std::string_view a, std::string_view b);  // SHA-256(a || b)
Sha256 hmac_sha256(std::string_view key, std::string_view data);
using text::from_hex;
using text::to_hex;

// --- time ---
// "2025-01-02T03:04:05.678Z" (with_ms) or "2025-01-02T03:04:05Z".
std::string format_rfc3339(std::chrono::system_clock::time_point time, bool with_ms = true);
// RFC 3339 with Z or +hh:mm, optional fraction; also a bare date (midnight UTC). nullopt when malformed.
// Milliseconds, not system_clock's nanoseconds, which end in 2262.
std::optional<std::chrono::sys_time<std::chrono::milliseconds>> parse_rfc3339(std::string_view text);

}  // namespace clawbot::gateway::door::detail
