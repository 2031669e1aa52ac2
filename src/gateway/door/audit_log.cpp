// The audit log's writer: a queue that append() fills and a background thread that formats, chains, writes,
// syncs and anchors (see AuditLog in door.h for the format and the guarantees).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/json_read.h"
#include "gateway/door/audit_format.h"
#include "gateway/door/keys_db.h"

namespace clawbot::gateway::door {

namespace detail {

std::string audit_body(std::int64_t seq, const AuditRecord& record, std::string_view prev) {
  nlohmann::ordered_json j;
  j["seq"] = seq;
  j["time"] = format_rfc3339(record.time);
  j["key_id"] = record.key_id;
  j["client"] = record.client;
  j["route"] = record.route;
  j["model"] = record.model;
  j["upstream"] = record.upstream;
  j["status"] = record.status;
  j["tokens_in"] = record.tokens_in;
  j["tokens_out"] = record.tokens_out;
  // Three decimals: microseconds are noise here, and a short number keeps the line short.
  j["latency_ms"] = std::isfinite(record.latency_ms) ? std::round(record.latency_ms * 1000.0) / 1000.0 : 0.0;
  if (!record.prompt.empty()) j["prompt"] = record.prompt;
  if (record.audio_seconds > 0 && std::isfinite(record.audio_seconds))
    j["audio_seconds"] = std::round(record.audio_seconds * 1000.0) / 1000.0;
  j["prev"] = prev;
  // Invalid UTF-8 (a client's bytes in a route or prompt) becomes U+FFFD instead of an exception.
  std::string text = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  text.pop_back();  // the closing brace: the hash goes before it
  return text;
}

std::string audit_line(std::string_view body, std::string_view hash) {
  std::string line;
  line.reserve(body.size() + hash.size() + 13);
  line.append(body).append(",\"hash\":\"").append(hash).append("\"}\n");
  return line;
}

std::string audit_mac(std::string_view secret, std::string_view body) {
  return to_hex(hmac_sha256(secret, body));
}

std::optional<ParsedAuditLine> parse_audit_line(std::string_view line, std::string& error) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  ParsedAuditLine parsed;
  // A log line is outside input to its verifier (anyone who can write the file can write anything there).
  auto read = json_read::parse(line);
  if (!read) {
    error =
        read.failure.code == "json_too_deep" ? "nested too deep (" + read.failure.message + ")" : "not JSON";
    return std::nullopt;
  }
  parsed.fields = std::move(*read.value);
  if (!parsed.fields.is_object()) {
    error = "not a JSON object";
    return std::nullopt;
  }
  const auto seq = parsed.fields.find("seq");
  const auto prev = parsed.fields.find("prev");
  const auto hash = parsed.fields.find("hash");
  if (seq == parsed.fields.end() || !seq->is_number_integer()) {
    error = "no integer seq";
    return std::nullopt;
  }
  if (prev == parsed.fields.end() || !prev->is_string() || hash == parsed.fields.end() ||
      !hash->is_string()) {
    error = "no prev or hash";
    return std::nullopt;
  }
  parsed.seq = seq->get<std::int64_t>();
  parsed.prev = prev->get<std::string>();
  parsed.hash = hash->get<std::string>();
  const std::string tail = ",\"hash\":\"" + parsed.hash + "\"}";
  if (line.ends_with(tail)) parsed.body = line.substr(0, line.size() - tail.size());
  return parsed;
}

}  // namespace detail

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr std::chrono::seconds sync_interval{1};

struct LastRecord {
  std::int64_t seq = 0;
  std::string hash;
};

// The last line of the log that parses as a record, read backwards in blocks (the log may be large).
std::optional<LastRecord> last_record(int fd, off_t size) {
  constexpr off_t block = 64 * 1024;
  std::string data;  // bytes [pos, pos + data.size()) not yet tried as complete lines
  off_t pos = size;
  while (pos > 0) {
    const off_t n = std::min(block, pos);
    pos -= n;
    std::string chunk(static_cast<std::size_t>(n), '\0');
    off_t done = 0;
    while (done < n) {
      const ssize_t got = ::pread(fd, chunk.data() + done, static_cast<std::size_t>(n - done), pos + done);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0)
        throw ClawbotError(ErrorKind::internal,
                           std::string("cannot read the audit log: ") + std::strerror(errno));
      done += got;
    }
    data.insert(0, chunk);
    std::size_t line_end = data.size();
    while (line_end > 0) {
      const std::size_t nl = data.rfind('\n', line_end - 1);
      if (nl == std::string::npos && pos > 0) break;  // the line starts in an earlier block
      const std::size_t start = nl == std::string::npos ? 0 : nl + 1;
      std::string error;
      if (start < line_end) {
        if (auto parsed =
                detail::parse_audit_line(std::string_view(data).substr(start, line_end - start), error))
          return LastRecord{parsed->seq, parsed->hash};
      }
      line_end = nl == std::string::npos ? 0 : nl;
    }
    data.resize(line_end);
  }
  return std::nullopt;
}

}  // namespace

struct AuditLog::Impl {
  Impl(const fs::path& log, const fs::path& keys_db, Options options_)
      : path(log),
        options(std::move(options_)),
        db(detail::private_file(keys_db)),
        secrets(detail::open_door(db, secret_path(keys_db, options.secret_file), true, &notes)) {
    fd = ::open(log.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
      throw ClawbotError(ErrorKind::internal, "cannot open the audit log " + log.string() + ": " +
                                                  std::strerror(errno) +
                                                  " (check that the directory exists and is writable)");
    try {
      resume();
    } catch (...) {
      ::close(fd);
      throw;
    }
    writer = std::thread([this] { run(); });
  }

  ~Impl() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    writer.join();
    ::close(fd);
  }

  // Continues the chain from the log's last record, or from the anchor when the log is behind it.
  void resume() {
    struct stat st {};
    if (::fstat(fd, &st) != 0)
      throw ClawbotError(ErrorKind::internal, "cannot stat the audit log " + path.string());
    if (st.st_size > 0) {
      char last = 0;
      if (::pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n') {
        // A line cut short by a crash: end it, so that it stays one (unparsable) line of its own.
        pending = "\n";
      }
    }
    const auto record = last_record(fd, st.st_size);
    next_seq = record ? record->seq + 1 : 1;
    prev_hash = record ? record->hash : detail::genesis_hash;
    auto anchor = detail::read_anchor(db, secrets);
    if (anchor && !anchor->intact) {
      opening_warning =
          "the audit anchor in the keys database was changed outside clawbot (its MAC does not "
          "verify): ignored; `clawbot gateway audit verify` reports it";
      anchor.reset();
    }
    if (anchor && anchor->seq >= next_seq) {
      opening_warning = "the audit log " + path.string() + " ends at seq " + std::to_string(next_seq - 1) +
                        " but the database's anchor is at seq " + std::to_string(anchor->seq) +
                        ": records are missing; the log continues at seq " + std::to_string(anchor->seq + 1) +
                        " so that `clawbot gateway audit verify` shows the gap";
      next_seq = anchor->seq + 1;
      prev_hash = anchor->hash;
    }
    anchor_log = fs::absolute(path).lexically_normal().string();
  }

  // Writes `pending`; what could not be written stays there.
  bool write_pending() {
    while (!pending.empty()) {
      const ssize_t n = ::write(fd, pending.data(), pending.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        set_error(std::string("writing the audit log ") + path.string() + " failed: " + std::strerror(errno));
        return false;
      }
      pending.erase(0, static_cast<std::size_t>(n));
      unsynced = true;
    }
    return true;
  }

  bool sync_and_anchor() {
    if (unsynced) {
      if (::fdatasync(fd) != 0) {
        set_error(std::string("syncing the audit log ") + path.string() + " failed: " + std::strerror(errno));
        return false;
      }
      unsynced = false;
      unanchored = true;
    }
    if (unanchored) {
      try {
        detail::write_anchor(db, secrets, detail::Anchor{anchor_log, next_seq - 1, prev_hash});
      } catch (const std::exception& e) {
        set_error(std::string("updating the audit anchor failed: ") + e.what());
        return false;
      }
      unanchored = false;
    }
    return true;
  }

  // Appends the synced head to the witness when one is configured and due (or `force`, at closing), and
  // the head moved since the last one. A failure is logged, once until it works again: the log goes on.
  void witness(bool force) {
    if (options.witness_dir.empty() || next_seq == 1) return;
    const auto now = Clock::now();
    if (next_seq - 1 == witnessed_seq || (!force && now < next_witness)) return;
    next_witness = now + options.witness_interval;
    try {
      detail::append_witness(options.witness_dir, next_seq - 1, prev_hash, path);
      witnessed_seq = next_seq - 1;
      witness_failing = false;
    } catch (const std::exception& e) {
      if (!witness_failing) spdlog::warn("audit log: {}", e.what());
      witness_failing = true;
    }
  }

  void set_error(std::string message) {
    std::lock_guard lock(error_mutex);
    error = std::move(message);
  }

  void run() {
    witness(true);  // the head it resumes from
    Clock::time_point next_sync = Clock::now() + sync_interval;
    int failed_stops = 0;
    bool failing = false;  // the last cycle failed: wait a second before the next try, whatever arrives
    for (;;) {
      std::vector<AuditRecord> batch;
      bool stop = false, want_flush = false;
      {
        std::unique_lock lock(mutex);
        const bool idle = pending.empty() && !unsynced && !unanchored;
        const auto ready = [this] { return stopping || !queue.empty() || flush_target > synced; };
        if (failing) {
          wake.wait_until(lock, next_sync, [this] { return stopping; });
        } else if (idle) {
          wake.wait(lock, ready);
        } else {
          wake.wait_until(lock, next_sync, ready);
        }
        batch.swap(queue);
        stop = stopping;
        want_flush = flush_target > synced;
      }
      taken += batch.size();
      for (const AuditRecord& record : batch) {
        const std::string body = detail::audit_body(next_seq, record, prev_hash);
        prev_hash = detail::audit_mac(secrets.audit, body);
        pending += detail::audit_line(body, prev_hash);
        ++next_seq;
      }
      bool ok = write_pending();
      const auto now = Clock::now();
      if (ok && (now >= next_sync || want_flush || stop)) {
        ok = sync_and_anchor();
        next_sync = now + sync_interval;
      }
      const bool clean = ok && pending.empty() && !unsynced && !unanchored;
      if (clean) witness(stop);
      failing = !ok;
      {
        std::lock_guard lock(mutex);
        if (clean) synced = taken;
        if (!ok) {
          ++failures;
          next_sync = now + sync_interval;  // retry in a second
        } else {
          std::lock_guard error_lock(error_mutex);
          if (clean) error.clear();
        }
      }
      done.notify_all();
      if (stop) {
        std::lock_guard lock(mutex);
        if (queue.empty() && (clean || ++failed_stops >= 3)) return;
      }
    }
  }

  fs::path path;
  Options options;
  std::vector<std::string> notes;
  sqlite::Database db;  // the writer thread's after construction
  detail::Secrets secrets;
  int fd = -1;
  std::string opening_warning;

  // Shared with append() and flush(), under `mutex`.
  std::mutex mutex;
  std::condition_variable wake, done;
  std::vector<AuditRecord> queue;
  bool stopping = false;
  std::uint64_t appended = 0, synced = 0, flush_target = 0, failures = 0;
  std::atomic<std::uint64_t> dropped{0};
  mutable std::mutex error_mutex;
  std::string error;

  // The writer thread's own.
  std::int64_t next_seq = 1;
  std::string prev_hash;
  std::string anchor_log;
  std::string pending;  // formatted lines not yet written
  std::uint64_t taken = 0;
  bool unsynced = false, unanchored = false;
  std::int64_t witnessed_seq = 0;
  Clock::time_point next_witness{};  // the first head (the resumed one, or the first record) at once
  bool witness_failing = false;
  std::thread writer;
};

AuditLog::AuditLog(const std::filesystem::path& log, const std::filesystem::path& keys_db, Options options)
    : impl_(std::make_unique<Impl>(log, keys_db, std::move(options))) {}

AuditLog::~AuditLog() = default;

void AuditLog::append(AuditRecord record) {
  bool was_empty = false;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->queue.size() >= max_queued) {
      impl_->dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    was_empty = impl_->queue.empty();
    impl_->queue.push_back(std::move(record));
    ++impl_->appended;
  }
  // The writer only waits while the queue is empty: one wake-up per batch, not one per record.
  if (was_empty) impl_->wake.notify_one();
}

bool AuditLog::flush() {
  std::unique_lock lock(impl_->mutex);
  const std::uint64_t target = impl_->appended;
  const std::uint64_t failures = impl_->failures;
  impl_->flush_target = std::max(impl_->flush_target, target);
  impl_->wake.notify_one();
  impl_->done.wait(lock, [&] { return impl_->synced >= target || impl_->failures > failures; });
  return impl_->synced >= target;
}

std::uint64_t AuditLog::dropped() const noexcept {
  return impl_->dropped.load(std::memory_order_relaxed);
}

std::string AuditLog::last_error() const {
  std::lock_guard lock(impl_->error_mutex);
  return impl_->error;
}

const std::string& AuditLog::opening_warning() const noexcept {
  return impl_->opening_warning;
}

const std::vector<std::string>& AuditLog::notes() const noexcept {
  return impl_->notes;
}

}  // namespace clawbot::gateway::door
