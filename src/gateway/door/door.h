// The gateway's door and its audit log: API keys (created, listed and revoked by the admin CLI, checked on
// every request), the IP allow-list, per-key rate limits, and an append-only, hash-chained audit log with
// its verifier. Nothing here knows HTTP: the proxy maps the answers to 401, 403 and 429.
//
// Request-path classes (KeyVerifier, AllowList, RateLimiter, AuditLog::append) are thread-safe, never touch
// the disk on the calling thread (KeyVerifier: see there for an unknown key id), and never throw for
// untrusted input.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace clawbot::gateway::door {

// --- the secret -------------------------------------------------------------------------------------------

// The gateway's secret (32 random bytes as 64 hex digits) lives apart from its database, in a file only the
// service may read (mode 0600 or stricter; anything looser is refused): every key row and the audit anchor
// carry a MAC under it, and the audit log's lines an HMAC. Whoever can write the database but not read this
// file cannot add, re-activate or change a key, nor move the anchor, without it showing.
//
// Where it is: `configured` (gateway.json "secret_file", the admin commands' --secret) when given; else
// $CREDENTIALS_DIRECTORY/clawbot-gateway-secret when systemd passed it (LoadCredential=); else beside the
// database, its extension replaced by .secret (gateway.db -> gateway.secret), made on first use.
inline constexpr std::string_view credential_name = "clawbot-gateway-secret";
std::filesystem::path secret_path(const std::filesystem::path& db,
                                  const std::filesystem::path& configured = {});

// --- API keys ---------------------------------------------------------------------------------------------

// What a valid key grants. A limit of 0 means "the gateway's default" (limits in gateway.json).
struct KeyInfo {
  std::string id;  // public: shown by `keys list`, written to the audit log
  std::string name;
  std::int64_t requests_per_minute = 0;
  std::int64_t tokens_per_minute = 0;
  std::int64_t audio_seconds_per_hour = 0;  // speech sent to /v1/audio/* in the last hour
  bool admin = false;                       // may write (create, upload, delete) under /v1/kb
};

// One row of the keys table, as `keys list` shows it. Never holds the secret or its hash.
struct KeyRow {
  KeyInfo info;
  std::string created_at;  // RFC 3339 UTC
  std::string revoked_at;  // RFC 3339 UTC; empty while the key is active
  bool intact = true;      // false: its MAC does not verify (the row was changed or forged outside clawbot)
  bool revoked() const noexcept { return !revoked_at.empty(); }
};

struct Created {
  std::string key;  // "cbk_<id>_<secret>": shown once, never stored
  KeyRow row;
};

// The prefix of every key; `cbk_` + 12 hex digits of id + `_` + 32 base62 characters of secret (190 bits).
inline constexpr std::string_view key_prefix = "cbk_";

// The admin side: the keys table in the gateway's SQLite file (WAL; created 0600 when missing), each row
// MACed under the secret (`secret_file`: see secret_path; empty for the default). Failures throw
// StoreError naming the file and the problem: invalid_argument for a bad name or limit, name_taken
// when an active key already has the name. `notes()` says what opening did on the way (made the secret,
// migrated the schema).
class KeyStore {
 public:
  explicit KeyStore(const std::filesystem::path& db, const std::filesystem::path& secret_file = {});
  ~KeyStore();
  KeyStore(const KeyStore&) = delete;
  KeyStore& operator=(const KeyStore&) = delete;

  // A new key. Names are 1..64 printable characters, unique among active keys; limits are >= 0.
  Created create(std::string_view name, std::int64_t requests_per_minute = 0,
                 std::int64_t tokens_per_minute = 0, std::int64_t audio_seconds_per_hour = 0,
                 bool admin = false);
  // Every key, revoked ones included (they stay for the audit trail), oldest first.
  std::vector<KeyRow> list();
  // The key with this id, else the active key with this name, else the last revoked key with this name.
  std::optional<KeyRow> find(std::string_view id_or_name);
  // Revokes the key with this id or the active key with this name: true when a key was revoked now, false
  // when none matched or it already was.
  bool revoke(std::string_view id_or_name);
  const std::vector<std::string>& notes() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Why verify() refused a key: for the audit log and the gateway's own log, never for the client.
// `tampered`: the key's row does not carry a valid MAC (forged, or changed outside clawbot, e.g. un-revoked).
enum class KeyRejection { malformed, unknown_id, wrong_secret, revoked, tampered };
std::string_view to_string(KeyRejection reason) noexcept;

// The request side: an in-memory snapshot of the keys table, read again by a background thread when the file
// changes (PRAGMA data_version, polled every 250 ms), so a `keys revoke` in another process takes effect
// within about half a second. verify() costs one hash-map lookup and one SHA-256. Only for a key id the
// snapshot lacks does it look at SQLite, so that a key works as soon as `keys create` returns: one
// PRAGMA data_version (a read of SQLite's shared memory; the table is read only when it changed), serialized,
// at most one per on_demand_interval (never waited for), each covering every request that arrived before it
// began.
class KeyVerifier {
 public:
  static constexpr std::chrono::milliseconds poll_interval{250};
  static constexpr std::chrono::milliseconds on_demand_interval{1};

  // Opens (creating when missing) the database and reads the keys once; throws StoreError when the
  // file cannot be used. A row whose MAC does not verify is never let in; it is logged once (a warning) and
  // counted (rejected_rows). A key once seen revoked stays refused while the verifier lives, even if its row
  // turns active again with a valid MAC (a database rolled back to an older copy).
  explicit KeyVerifier(const std::filesystem::path& db, const std::filesystem::path& secret_file = {});
  ~KeyVerifier();
  KeyVerifier(const KeyVerifier&) = delete;
  KeyVerifier& operator=(const KeyVerifier&) = delete;

  // The key's grants, or nullopt for a malformed key, an unknown id, a wrong secret or a revoked key (all
  // the same to the client: 401). `why`, when given, receives the reason.
  std::optional<KeyInfo> verify(std::string_view presented_key, KeyRejection* why = nullptr) const;
  // "Bearer <key>" from an Authorization header, or the bare key; empty when there is none.
  static std::string_view key_from_authorization(std::string_view header) noexcept;

  // Reads the table now (the background thread does this by itself when the file changes).
  void refresh();
  std::size_t active_keys() const;
  // Rows refused in the current snapshot: MAC missing or wrong, or revoked before and active again.
  std::size_t rejected_rows() const;
  // The last failure to read the database ("" when the last read worked); the old snapshot stays in use.
  std::string last_error() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// --- IP allow-list ----------------------------------------------------------------------------------------

// IPv4 and IPv6 CIDRs. A bare address is a /32 or /128; host bits below the prefix are ignored
// ("192.168.1.7/24" is 192.168.1.0/24). IPv4-mapped IPv6 clients (::ffff:a.b.c.d) match IPv4 rules, and
// a rule inside ::ffff:0:0/96 matches IPv4 clients.
class AllowList {
 public:
  // Throws std::invalid_argument naming the bad entry and why: "192.168.1.0/33: prefix longer than 32".
  static AllowList parse(const std::vector<std::string>& cidrs);
  // True when the list is empty (no allow-list: every address) or a rule covers the address.
  bool allows(const boost::asio::ip::address& client) const noexcept;
  bool empty() const noexcept { return rules_.empty(); }
  std::size_t size() const noexcept { return rules_.size(); }

 private:
  struct Rule {
    bool v6 = false;
    unsigned char bytes[16] = {};  // v4 rules use the first 4
    int prefix = 0;
  };
  std::vector<Rule> rules_;
};

// --- rate limits ------------------------------------------------------------------------------------------

// Per-key requests and tokens per minute over a sliding window of the last 60 one-second buckets (exact to
// the second, constant memory per key). A request is admitted while fewer than the limit were admitted, and
// fewer tokens than the limit were used or reserved, in the window.
//
// Tokens are known only as the answer comes, so a request reserves at admission what it may use (its
// max_tokens and an estimate of its prompt), streams extend their reservation as they count tokens beyond
// it, and the end settles the reservation to the tokens really used. Parallel requests therefore see each
// other's reservations; what the limit can be passed by is what running requests use beyond what they
// reserved (a node that ignores max_tokens, a prompt longer than estimated, the last request's reservation
// cut to the room that was left).
class RateLimiter {
 public:
  struct Decision {
    bool allowed = true;
    std::chrono::seconds retry_after{0};  // when refused: seconds until a request would be admitted (>= 1)
    std::string reason;                   // when refused: "tokens per minute: 10000 used of 10000"
    std::int64_t tokens_per_minute = 0;   // the key's token limit (0: none)
    std::int64_t reserved = 0;            // reserve(): the tokens reserved
  };

  RateLimiter();
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Counts the request when it is admitted. The key's own limits win; 0 there means the default; a default
  // of 0 means no limit.
  Decision admit(const KeyInfo& key, std::int64_t default_rpm, std::int64_t default_tpm,
                 std::chrono::steady_clock::time_point now);
  // Reserves up to `wanted` tokens (at least 1) of the room the key has under `tokens_per_minute` for an
  // admitted request: refused when there is no room left; reserves nothing when there is no limit.
  Decision reserve(const std::string& key_id, std::int64_t tokens_per_minute, std::int64_t wanted,
                   std::chrono::steady_clock::time_point now);
  // A running request counted more than it reserved: its reservation grows, room or not.
  void extend(const std::string& key_id, std::int64_t tokens);
  // A request ended: its reservation is released and the tokens it used are counted at `now`.
  void settle(const std::string& key_id, std::int64_t reserved, std::int64_t used,
              std::chrono::steady_clock::time_point now);
  // Prompt + completion tokens of an answer, counted at `now`.
  void add_tokens(const std::string& key_id, std::int64_t tokens, std::chrono::steady_clock::time_point now);

  // Audio seconds per hour (speech sent to /v1/audio/*), over a sliding window of 60 one-minute buckets:
  // refused once the key has used `seconds_per_hour` (0: no limit) in the last hour; retry_after says when
  // enough of it leaves the window. Counted as it is known (a file's seconds once the node answered, a live
  // session's as its frames pass), so a request is refused after the one that went over, never cut short.
  Decision admit_audio(const std::string& key_id, std::int64_t seconds_per_hour,
                       std::chrono::steady_clock::time_point now);
  void add_audio(const std::string& key_id, double seconds, std::chrono::steady_clock::time_point now);

 private:
  struct Shard;
  std::unique_ptr<Shard[]> shards_;
};

// --- audit log --------------------------------------------------------------------------------------------

// One request, as the proxy saw it. `prompt` stays empty unless the operator turned prompt logging on.
struct AuditRecord {
  std::chrono::system_clock::time_point time;
  std::string key_id, client, route, model, upstream;
  int status = 0;
  std::int64_t tokens_in = 0, tokens_out = 0;
  double latency_ms = 0;
  std::string prompt;
  double audio_seconds = 0;  // speech transcribed (/v1/audio/*), as the node's X-Audio-Seconds said
};

// An append-only log, one JSON object a line:
//   {"seq":1,"time":"2025-01-02T03:04:05.678Z","key_id":..,"client":..,"route":..,"model":..,"upstream":..,
//    "status":200,"tokens_in":..,"tokens_out":..,"latency_ms":..,["prompt":..,]"prev":"<hex>","hash":"<hex>"}
// `hash` is HMAC-SHA256 over the line's bytes before `,"hash"` (so over `prev` too: a chain), keyed by the
// gateway's secret (see secret_path: a file apart from the database). A plain hash would let anyone who can
// edit the log recompute the chain after a change; with the HMAC, only someone who can also read the secret
// can. The first record's prev is 64 zeros.
//
// Deleting the last records keeps the chain valid, so the writer also keeps an anchor (last seq and hash,
// updated after each fdatasync, MACed) in the database: `verify` reports records the anchor knows of but the
// log lacks. A log that starts again behind its anchor (deleted or truncated while the gateway was down)
// continues the anchor's numbering, so the gap stays visible.
//
// Whoever holds the secret (root on the machine) can still rewrite the log, chain and anchor alike. Against
// that the head (seq, hash, time) is witnessed outside the machine: with a witness directory (the standby's
// or the backup repository's mount), the writer appends the head to DIR/audit-witness.jsonl when it opens,
// every witness_interval while records come, and when it closes (`clawbot gateway audit witness` does it on
// demand); `verify` with that directory fails a log cut or rewritten below a witnessed head.
//
// append() only queues the record: a background thread formats, writes each batch with one write(),
// fdatasyncs at most every second (and at flush and destruction), then updates the anchor. Re-opening an
// existing log continues its chain from its last line. Log rotation is not supported: one log per database.
struct AuditOptions {
  std::filesystem::path secret_file;  // empty: secret_path's default
  std::filesystem::path witness_dir;  // empty: no witness
  std::chrono::seconds witness_interval{600};
};

class AuditLog {
 public:
  static constexpr std::size_t max_queued = 1'000'000;  // beyond it append() drops and counts (dropped())

  using Options = AuditOptions;

  // Opens (creating 0600 when missing) the log and the database; throws ClawbotError or
  // StoreError when either cannot be used.
  AuditLog(const std::filesystem::path& log, const std::filesystem::path& keys_db, Options options = {});
  ~AuditLog();  // writes, syncs and anchors everything appended
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  void append(AuditRecord record);
  // Waits until every record appended before the call is written, synced and anchored. False when a write
  // failed (last_error() says why; the writer keeps retrying the unwritten records).
  bool flush();

  std::uint64_t dropped() const noexcept;
  std::string last_error() const;
  // Set at opening when the log was behind its anchor, or the anchor's MAC failed ("" otherwise): the gateway
  // should log it.
  const std::string& opening_warning() const noexcept;
  // What opening did on the way (made the secret, migrated the database): the gateway should log it.
  const std::vector<std::string>& notes() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct AuditProblem {
  // rewritten: a record differs from the head witnessed for its seq.
  enum class Kind { edited, inserted, deleted, truncated, unparsable, broken, rewritten };
  Kind kind = Kind::broken;
  std::size_t line = 0;  // 1-based line of the log (for deleted/truncated: the line after the gap, or 0)
  std::int64_t seq_first = 0;  // the record's seq, or the first missing one
  std::int64_t seq_last = 0;   // the last missing one (deleted, truncated), else = seq_first
  std::string message;         // "line 12 (seq 12): edited: its content does not match its hash"
};
std::string_view to_string(AuditProblem::Kind kind) noexcept;

struct VerifyReport {
  std::size_t lines = 0;
  std::size_t records = 0;  // lines that parsed as records
  std::int64_t first_seq = 0, last_seq = 0;
  std::string last_hash;      // of the last record the chain accepted
  bool anchored = false;      // the database had an anchor to check the tail against
  std::size_t witnessed = 0;  // witnessed heads the log was checked against
  std::vector<AuditProblem> problems;
  bool intact() const noexcept { return problems.empty(); }
  // "120 records, chain intact" or "3 problems in 120 records".
  std::string summary() const;
};

// Walks the log and names every problem by line and seq, and checks it against the heads witnessed in
// `witness_dir` when given. Throws ClawbotError when the log, the database, the secret or the witness
// cannot be read.
VerifyReport verify_audit_log(const std::filesystem::path& log, const std::filesystem::path& keys_db,
                              const std::filesystem::path& secret_file = {},
                              const std::filesystem::path& witness_dir = {});

// The log's last record (seq and hash), after verifying the log (against the witness too when given): what
// `clawbot gateway audit witness` appends to the witness. Throws ClawbotError naming the problems when
// the log is not intact (a tampered head must not be witnessed), or when it has no record.
struct AuditHead {
  std::int64_t seq = 0;
  std::string hash;
};
AuditHead witness_audit_head(const std::filesystem::path& log, const std::filesystem::path& keys_db,
                             const std::filesystem::path& secret_file,
                             const std::filesystem::path& witness_dir);

}  // namespace clawbot::gateway::door
