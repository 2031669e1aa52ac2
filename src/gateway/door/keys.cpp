// API keys: created and revoked by the admin CLI (KeyStore), checked on every request (KeyVerifier).
//
// A key is "cbk_" + a 12-hex-digit public id + "_" + 32 base62 characters of secret (32 × log2(62) ≈ 190 bits
// from the CSPRNG). Only SHA-256(salt || secret) is stored, with a random 16-byte salt per key. A slow or
// keyed hash (PBKDF2, scrypt, HMAC) exists to protect guessable secrets such as passwords; against a
// uniformly random 190-bit secret, even a leaked database leaves 2^190 guesses per key, so a fast hash
// loses nothing and keeps verify() to about a microsecond on the request path. The salt keeps equal secrets
// (there are none in practice) from having equal hashes and rules out any precomputed table.
#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include "common/store_error.h"
#include "gateway/door/door.h"
#include "gateway/door/keys_db.h"

namespace clawbot::gateway::door {

namespace {

constexpr std::size_t id_chars = 12;
constexpr std::size_t secret_chars = 32;
constexpr std::size_t salt_bytes = 16;
constexpr std::size_t key_chars = key_prefix.size() + id_chars + 1 + secret_chars;
constexpr std::size_t name_max_bytes = 64;
constexpr std::string_view base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

bool is_lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
bool is_base62(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return base62.find(c) != std::string_view::npos; });
}

// Uniform base62: bytes >= 248 (= 4 × 62) are dropped so that `% 62` has no bias.
std::string random_base62(std::size_t n) {
  std::string out;
  while (out.size() < n) {
    for (const char raw : detail::random_bytes(n)) {
      const auto b = static_cast<unsigned char>(raw);
      if (b < 248 && out.size() < n) out.push_back(base62[b % 62]);
    }
  }
  return out;
}

struct ParsedKey {
  std::string_view id, secret;
};
std::optional<ParsedKey> parse_key(std::string_view key) {
  if (key.size() != key_chars || !key.starts_with(key_prefix)) return std::nullopt;
  const std::string_view id = key.substr(key_prefix.size(), id_chars);
  if (key[key_prefix.size() + id_chars] != '_') return std::nullopt;
  const std::string_view secret = key.substr(key_prefix.size() + id_chars + 1);
  if (!is_lower_hex(id) || !is_base62(secret)) return std::nullopt;
  return ParsedKey{id, secret};
}

std::string name_problem(std::string_view name) {
  if (name.empty()) return "a key needs a name (--name)";
  if (name.size() > name_max_bytes)
    return "the name is " + std::to_string(name.size()) + " bytes long; at most " +
           std::to_string(name_max_bytes);
  for (const char c : name)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "the name contains a control character";
  if (name.size() == id_chars && is_lower_hex(name))
    return "'" + std::string(name) + "' looks like a key id (12 hex digits): choose another name";
  if (name.starts_with(key_prefix)) return "a name may not start with " + std::string(key_prefix);
  return {};
}

constexpr const char* row_columns =
    "id, name, requests_per_minute, tokens_per_minute, created_at, coalesce(revoked_at, ''), salt, hash, "
    "mac, "
    "audio_seconds_per_hour, admin";

// A row as stored, and whether its MAC verifies.
struct StoredRow {
  KeyRow row;
  std::string salt, hash;  // hex
};
// What a row's MAC covers, with `revoked_at` as given.
detail::KeyRowFields mac_fields(const KeyRow& row, std::string_view salt, std::string_view hash,
                                std::string_view revoked_at) {
  const KeyInfo& i = row.info;
  return {i.id,
          i.name,
          salt,
          hash,
          i.requests_per_minute,
          i.tokens_per_minute,
          i.audio_seconds_per_hour,
          i.admin,
          row.created_at,
          revoked_at};
}

StoredRow read_row(const sqlite::Statement& s, const detail::Secrets& secrets) {
  StoredRow stored{KeyRow{KeyInfo{s.text_at(0), s.text_at(1), s.int64_at(2), s.int64_at(3), s.int64_at(9),
                                  s.int64_at(10) != 0},
                          s.text_at(4), s.text_at(5)},
                   s.text_at(6), s.text_at(7)};
  const KeyRow& r = stored.row;
  stored.row.intact = detail::same_mac(
      s.text_at(8), detail::key_row_mac(secrets, mac_fields(r, stored.salt, stored.hash, r.revoked_at)));
  return stored;
}

std::optional<StoredRow> find_in(sqlite::Database& db, const detail::Secrets& secrets,
                                 std::string_view id_or_name) {
  sqlite::Statement by_id(db, std::string("SELECT ") + row_columns + " FROM api_keys WHERE id = ?1");
  if (by_id.bind(1, id_or_name).step()) return read_row(by_id, secrets);
  sqlite::Statement by_name(
      db, std::string("SELECT ") + row_columns + " FROM api_keys WHERE name = ?1 AND revoked_at IS NULL");
  if (by_name.bind(1, id_or_name).step()) return read_row(by_name, secrets);
  sqlite::Statement revoked(
      db, std::string("SELECT ") + row_columns +
              " FROM api_keys WHERE name = ?1 ORDER BY revoked_at DESC, rowid DESC LIMIT 1");
  if (revoked.bind(1, id_or_name).step()) return read_row(revoked, secrets);
  return std::nullopt;
}

}  // namespace

std::string_view to_string(KeyRejection reason) noexcept {
  switch (reason) {
    case KeyRejection::malformed:
      return "malformed key";
    case KeyRejection::unknown_id:
      return "unknown key id";
    case KeyRejection::wrong_secret:
      return "wrong secret";
    case KeyRejection::revoked:
      return "revoked key";
    case KeyRejection::tampered:
      return "key row changed outside clawbot (its MAC does not verify)";
  }
  return "rejected";
}

// --- KeyStore ---

struct KeyStore::Impl {
  Impl(const std::filesystem::path& path, const std::filesystem::path& secret_file)
      : db(detail::private_file(path)),
        secrets(detail::open_door(db, secret_path(path, secret_file), true, &notes)) {}
  std::vector<std::string> notes;
  sqlite::Database db;
  detail::Secrets secrets;
};

KeyStore::KeyStore(const std::filesystem::path& db, const std::filesystem::path& secret_file)
    : impl_(std::make_unique<Impl>(db, secret_file)) {}
KeyStore::~KeyStore() = default;

const std::vector<std::string>& KeyStore::notes() const noexcept {
  return impl_->notes;
}

Created KeyStore::create(std::string_view name, std::int64_t requests_per_minute,
                         std::int64_t tokens_per_minute, std::int64_t audio_seconds_per_hour, bool admin) {
  auto& db = impl_->db;
  if (auto problem = name_problem(name); !problem.empty())
    throw StoreError(StoreErrorKind::invalid_argument, db.path() + ": " + problem);
  if (requests_per_minute < 0 || tokens_per_minute < 0 || audio_seconds_per_hour < 0)
    throw StoreError(StoreErrorKind::invalid_argument,
                     db.path() +
                         ": limits are 0 (the gateway's default) or more requests/tokens per minute "
                         "or audio seconds per hour");

  const auto& secrets = impl_->secrets;
  sqlite::Transaction transaction(db);
  if (auto existing = find_in(db, secrets, name);
      existing && existing->row.info.name == name && !existing->row.revoked())
    throw StoreError(StoreErrorKind::name_taken, db.path() + ": an active key is already named '" +
                                                     std::string(name) + "' (id " + existing->row.info.id +
                                                     "): revoke it first, or choose another name");
  std::string id;
  do {  // 48 random bits: a collision is astronomically rare, but cheap to rule out
    id = detail::to_hex(detail::random_bytes(id_chars / 2));
  } while (find_in(db, secrets, id));
  const std::string secret = random_base62(secret_chars);
  const std::string salt = detail::random_bytes(salt_bytes);
  const detail::Sha256 hash = detail::sha256(salt, secret);
  const std::string created_at = detail::format_rfc3339(std::chrono::system_clock::now(), false);
  const std::string salt_hex = detail::to_hex(salt), hash_hex = detail::to_hex(hash);
  KeyRow row{
      KeyInfo{id, std::string(name), requests_per_minute, tokens_per_minute, audio_seconds_per_hour, admin},
      created_at,
      {}};
  sqlite::Statement insert(
      db,
      "INSERT INTO api_keys (id, name, salt, hash, requests_per_minute, tokens_per_minute, "
      "created_at, mac, audio_seconds_per_hour, admin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  insert.bind(1, id)
      .bind(2, name)
      .bind(3, salt_hex)
      .bind(4, hash_hex)
      .bind(5, requests_per_minute)
      .bind(6, tokens_per_minute)
      .bind(7, created_at)
      .bind(8, detail::key_row_mac(secrets, mac_fields(row, salt_hex, hash_hex, "")))
      .bind(9, audio_seconds_per_hour)
      .bind(10, static_cast<std::int64_t>(admin ? 1 : 0))
      .run();
  transaction.commit();
  return Created{std::string(key_prefix) + id + "_" + secret, std::move(row)};
}

std::vector<KeyRow> KeyStore::list() {
  sqlite::Statement select(
      impl_->db, std::string("SELECT ") + row_columns + " FROM api_keys ORDER BY created_at, rowid");
  std::vector<KeyRow> rows;
  while (select.step()) rows.push_back(read_row(select, impl_->secrets).row);
  return rows;
}

std::optional<KeyRow> KeyStore::find(std::string_view id_or_name) {
  auto stored = find_in(impl_->db, impl_->secrets, id_or_name);
  if (!stored) return std::nullopt;
  return std::move(stored->row);
}

bool KeyStore::revoke(std::string_view id_or_name) {
  auto& db = impl_->db;
  sqlite::Transaction transaction(db);
  const auto stored = find_in(db, impl_->secrets, id_or_name);
  if (!stored || stored->row.revoked()) return false;
  const KeyRow& row = stored->row;
  const std::string revoked_at = detail::format_rfc3339(std::chrono::system_clock::now(), false);
  // A row whose MAC did not verify keeps its wrong MAC: revoking must not vouch for what someone else wrote.
  const std::string mac =
      row.intact
          ? detail::key_row_mac(impl_->secrets, mac_fields(row, stored->salt, stored->hash, revoked_at))
          : std::string("-");
  sqlite::Statement update(
      db, "UPDATE api_keys SET revoked_at = ?2, mac = ?3 WHERE id = ?1 AND revoked_at IS NULL");
  update.bind(1, row.info.id).bind(2, revoked_at).bind(3, mac).run();
  const bool changed = db.changes() == 1;
  transaction.commit();
  return changed;
}

// --- KeyVerifier ---

namespace {

struct Entry {
  KeyInfo info;
  std::string salt;
  detail::Sha256 hash{};
  bool revoked = false;
  bool tampered = false;  // refused whatever the secret: its MAC does not verify, or it was revoked before
};
struct Snapshot {
  std::unordered_map<std::string, Entry> by_id;
  std::size_t active = 0;
  std::size_t rejected = 0;
};

}  // namespace

struct KeyVerifier::Impl {
  Impl(const std::filesystem::path& path, const std::filesystem::path& secret_file)
      : db(detail::private_file(path)),
        secrets(detail::open_door(db, secret_path(path, secret_file), true, &notes)) {
    for (const auto& note : notes) spdlog::info("keys: {}", note);
    load();
    last_version = data_version();
    poller = std::thread([this] { poll(); });
  }
  ~Impl() {
    {
      std::lock_guard lock(stop_mutex);
      stopping = true;
    }
    stop_cv.notify_all();
    poller.join();
  }

  std::int64_t data_version() {
    sqlite::Statement pragma(db, "PRAGMA data_version");
    pragma.step();
    return pragma.int64_at(0);
  }

  // Reads the whole table (a few rows) in one snapshot and publishes it. Caller holds db_mutex or is the
  // constructor.
  void load() {
    auto next = std::make_shared<Snapshot>();
    sqlite::Statement select(db, std::string("SELECT ") + row_columns + " FROM api_keys");
    while (select.step()) {
      const StoredRow stored = read_row(select, secrets);
      Entry entry;
      entry.info = stored.row.info;
      entry.salt = detail::from_hex(stored.salt).value_or("");
      const auto hash = detail::from_hex(stored.hash);
      // A damaged row keeps the all-zero hash, which no secret's SHA-256 equals in practice: refused.
      if (hash && hash->size() == entry.hash.size())
        std::copy(hash->begin(), hash->end(), entry.hash.begin());
      entry.revoked = stored.row.revoked();
      const std::string& id = entry.info.id;
      if (entry.revoked && stored.row.intact) seen_revoked.insert(id);
      std::string problem;
      if (!stored.row.intact)
        problem = "its MAC does not verify: the row was forged or changed outside clawbot";
      else if (!entry.revoked && seen_revoked.contains(id))
        problem = "it was revoked and is active again: the database was rolled back to an older copy?";
      if (!problem.empty()) {
        entry.tampered = true;
        ++next->rejected;
        // Once per row content: a row that stays bad is not logged again at each reload.
        if (warned.insert(id + "/" + stored.row.revoked_at + "/" + entry.info.name).second)
          spdlog::warn("keys: refusing key {} \"{}\" in {}: {}", id, entry.info.name, db.path(), problem);
      }
      if (!entry.revoked && !entry.tampered) ++next->active;
      next->by_id.emplace(id, std::move(entry));
    }
    snapshot.store(std::move(next));
  }

  void refresh_locked() {
    try {
      const std::int64_t version = data_version();
      load();
      last_version = version;
      std::lock_guard lock(error_mutex);
      error.clear();
    } catch (const std::exception& e) {
      std::lock_guard lock(error_mutex);
      error = e.what();
    }
  }

  // For a key id the snapshot does not know: reads the table again if it changed since, unless a check that
  // began after `arrived` already did. Checks are serialized and at most one per on_demand_interval starts
  // (never waited for: within the interval the answer stands), so a flood of made-up ids costs at most that
  // many reads of SQLite's shared memory, a full reload only when the table really changed, and no sleep on
  // an I/O thread. A key is missed only if committed less than on_demand_interval before the request
  // arrived, sooner than any client can use a key `keys create` printed; the poller takes it soon after.
  void check_since(std::chrono::steady_clock::time_point arrived) {
    std::lock_guard lock(db_mutex);
    const auto now = std::chrono::steady_clock::now();
    if (last_check > arrived || now < last_check + on_demand_interval) return;
    last_check = now;
    try {
      if (data_version() != last_version) refresh_locked();
    } catch (const std::exception& e) {
      std::lock_guard error_lock(error_mutex);
      error = e.what();
    }
  }

  void poll() {
    std::unique_lock stop_lock(stop_mutex);
    while (!stop_cv.wait_for(stop_lock, poll_interval, [this] { return stopping; })) {
      stop_lock.unlock();
      {
        std::lock_guard lock(db_mutex);
        try {
          last_check = std::chrono::steady_clock::now();
          if (data_version() != last_version) refresh_locked();
        } catch (const std::exception& e) {
          std::lock_guard error_lock(error_mutex);
          error = e.what();
        }
      }
      stop_lock.lock();
    }
  }

  std::vector<std::string> notes;
  sqlite::Database db;
  detail::Secrets secrets;
  std::unordered_set<std::string> seen_revoked, warned;  // under db_mutex
  std::mutex db_mutex;  // the connection: the poller, refresh() and check_since()
  std::int64_t last_version = 0;
  std::chrono::steady_clock::time_point last_check{};  // when the last data_version check began
  std::atomic<std::shared_ptr<const Snapshot>> snapshot;

  mutable std::mutex error_mutex;
  std::string error;

  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stopping = false;
  std::thread poller;

  // Compared against for an unknown id, so that it costs what a wrong secret costs.
  const std::string dummy_salt = detail::random_bytes(salt_bytes);
  const detail::Sha256 dummy_hash = detail::sha256(dummy_salt, detail::random_bytes(secret_chars));
};

KeyVerifier::KeyVerifier(const std::filesystem::path& db, const std::filesystem::path& secret_file)
    : impl_(std::make_unique<Impl>(db, secret_file)) {}
KeyVerifier::~KeyVerifier() = default;

std::optional<KeyInfo> KeyVerifier::verify(std::string_view presented_key, KeyRejection* why) const {
  const auto reject = [why](KeyRejection reason) -> std::optional<KeyInfo> {
    if (why != nullptr) *why = reason;
    return std::nullopt;
  };
  const auto parsed = parse_key(presented_key);
  if (!parsed) return reject(KeyRejection::malformed);
  const auto arrived = std::chrono::steady_clock::now();
  std::shared_ptr<const Snapshot> snapshot = impl_->snapshot.load();
  auto found = snapshot->by_id.find(std::string(parsed->id));
  if (found == snapshot->by_id.end()) {
    // Perhaps created a moment ago (`keys create` has returned, the poller has not run yet).
    impl_->check_since(arrived);
    snapshot = impl_->snapshot.load();
    found = snapshot->by_id.find(std::string(parsed->id));
  }
  if (found == snapshot->by_id.end()) {
    const detail::Sha256 hash = detail::sha256(impl_->dummy_salt, parsed->secret);
    (void)CRYPTO_memcmp(hash.data(), impl_->dummy_hash.data(), hash.size());
    return reject(KeyRejection::unknown_id);
  }
  const Entry& entry = found->second;
  const detail::Sha256 hash = detail::sha256(entry.salt, parsed->secret);
  if (CRYPTO_memcmp(hash.data(), entry.hash.data(), hash.size()) != 0)
    return reject(KeyRejection::wrong_secret);
  if (entry.tampered) return reject(KeyRejection::tampered);
  if (entry.revoked) return reject(KeyRejection::revoked);
  return entry.info;
}

std::string_view KeyVerifier::key_from_authorization(std::string_view header) noexcept {
  const auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  };
  header = trim(header);
  constexpr std::string_view bearer = "bearer ";
  if (header.size() > bearer.size()) {
    bool is_bearer = true;
    for (std::size_t i = 0; i < bearer.size(); ++i) {
      const char c = header[i];
      if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) != bearer[i]) is_bearer = false;
    }
    if (is_bearer) return trim(header.substr(bearer.size()));
  }
  return header;
}

void KeyVerifier::refresh() {
  std::lock_guard lock(impl_->db_mutex);
  impl_->refresh_locked();
}

std::size_t KeyVerifier::active_keys() const {
  return impl_->snapshot.load()->active;
}

std::size_t KeyVerifier::rejected_rows() const {
  return impl_->snapshot.load()->rejected;
}

std::string KeyVerifier::last_error() const {
  std::lock_guard lock(impl_->error_mutex);
  return impl_->error;
}

}  // namespace clawbot::gateway::door
