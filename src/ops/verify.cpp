// `clawbot verify`: SHA-256 (and MD5) of a model file, compared with a sidecar, a value or a manifest.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/openssl_handles.h"
#include "common/text.h"
#include "ops/file_io.h"
#include "ops/integrity.h"

namespace clawbot::ops {
namespace {

namespace fs = std::filesystem;

using text::is_hex;

using text::lower;

std::string trim(std::string_view s) {
  return std::string(text::trim(s));
}

// A sum as a user gives it: hex of the right length; throws naming where it came from.
std::string checked_sum(std::string_view text, std::size_t hex_length, const std::string& algorithm,
                        const std::string& where) {
  const std::string value = trim(text);
  if (!is_hex(value, hex_length)) {
    throw ClawbotError(ErrorKind::internal, where + " '" + value.substr(0, 80) + "' is not a " + algorithm +
                                                " sum: expected " + std::to_string(hex_length) +
                                                " hex characters, found " + std::to_string(value.size()) +
                                                " characters");
  }
  return lower(value);
}

// Parses "<hex>  <name>", "<hex> *<name>" (sha256sum, md5sum) or "SHA256 (<name>) = <hex>" (BSD style).
std::optional<ManifestEntry> parse_sum_line(std::string_view line, std::size_t hex_length) {
  const std::string text = trim(line);
  if (text.size() >= hex_length && is_hex(std::string_view(text).substr(0, hex_length), hex_length)) {
    ManifestEntry entry;
    entry.sha256 = lower(text.substr(0, hex_length));
    std::string_view rest = std::string_view(text).substr(hex_length);
    if (!rest.empty() && rest.front() != ' ' && rest.front() != '\t') return std::nullopt;
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    if (!rest.empty() && rest.front() == '*') rest.remove_prefix(1);  // binary-mode marker
    entry.name = std::string(rest);
    return entry;
  }
  const auto open = text.find(" (");
  const auto close = text.rfind(") = ");
  if (open != std::string::npos && close != std::string::npos && close > open) {
    const std::string hex = text.substr(close + 4);
    if (!is_hex(hex, hex_length)) return std::nullopt;
    return ManifestEntry{lower(hex), text.substr(open + 2, close - open - 2), 0};
  }
  return std::nullopt;
}

std::string read_small_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ClawbotError(ErrorKind::internal, "cannot read " + what + " '" + path + "'");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > (64u << 20))
    throw ClawbotError(ErrorKind::internal, what + " '" + path + "' is too large to be a sum file");
  return text;
}

// A sidecar holds one sum: bare hex, or one sum line naming a file.
ExpectedSum read_sidecar(const std::string& sidecar, std::size_t hex_length, const std::string& algorithm) {
  const std::string text = trim(read_small_file(sidecar, "sidecar"));
  const std::string first_line = text.substr(0, text.find('\n'));
  ExpectedSum expected;
  expected.source = "sidecar " + sidecar;
  if (auto entry = parse_sum_line(first_line, hex_length)) {
    expected.sha256 = entry->sha256;
    expected.sidecar_name = entry->name;
  } else {
    expected.sha256 = checked_sum(first_line, hex_length, algorithm, "sidecar " + sidecar + " holds");
  }
  return expected;
}

// A file time as a local date and time; with milliseconds when `fine` (two times within the same second).
std::string format_time(fs::file_time_type time, bool fine = false) {
  // Through "now" on both clocks: GCC 12 has no clock_cast.
  const auto system =
      std::chrono::system_clock::now() + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                             time - fs::file_time_type::clock::now());
  const std::time_t t = std::chrono::system_clock::to_time_t(system);
  char text[48];
  std::tm tm{};
  localtime_r(&t, &tm);
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
  std::string out = text;
  if (fine) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(system.time_since_epoch()).count();
    char fraction[8];
    std::snprintf(fraction, sizeof fraction, ".%03d", static_cast<int>(((ms % 1000) + 1000) % 1000));
    out += fraction;
  }
  return out;
}

// "the file was modified (T1) after its sum was recorded (T2)", when the file is newer than the sidecar;
// empty otherwise. Times that read the same to the second are shown to the millisecond, so "after" is visibly
// true.
std::string modified_after(const std::string& file, const std::string& sidecar) {
  std::error_code ec1, ec2;
  const auto sidecar_time = fs::last_write_time(sidecar, ec1);
  const auto file_time = fs::last_write_time(file, ec2);
  if (ec1 || ec2 || file_time <= sidecar_time) return {};
  const bool same_second = format_time(file_time) == format_time(sidecar_time);
  return "the file was modified (" + format_time(file_time, same_second) + ") after its sum was recorded (" +
         format_time(sidecar_time, same_second) + ")";
}

// What probably happened when the sums differ, from what can be checked cheaply.
std::string explain_mismatch(const VerifyOptions& options, const VerifyReport& report) {
  std::vector<std::string> reasons;
  const std::string file_name = fs::path(options.model).filename().string();
  const ExpectedSum& expected = *report.expected;
  const bool encrypted = is_encrypted_file(options.model);
  const bool names_other =
      !expected.sidecar_name.empty() && fs::path(expected.sidecar_name).filename() != file_name;
  if (names_other) {
    reasons.push_back(encrypted
                          ? "the sidecar names '" + expected.sidecar_name +
                                "', not this encrypted file: it may hold the plaintext model's sum "
                                "(check that one after `clawbot decrypt`; `clawbot verify --write` records "
                                "the .enc's own)"
                          : "the sidecar names another file, '" + expected.sidecar_name +
                                "': it was copied or renamed along with the wrong model");
  }
  // A manifest may list the file's actual content under another name.
  std::string manifest = options.manifest;
  if (manifest.empty()) {
    const fs::path beside = fs::path(options.model).parent_path() / "SHA256SUMS";
    std::error_code ec;
    if (fs::is_regular_file(beside, ec)) manifest = beside.string();
  }
  if (!manifest.empty()) {
    try {
      for (const auto& entry : read_manifest(manifest)) {
        if (entry.sha256 == report.digests.sha256) {
          reasons.push_back("its content is that of '" + entry.name + "' in " + manifest +
                            ": the wrong file was copied or it was renamed");
          break;
        }
      }
    } catch (const std::exception&) {
      // The manifest was only a hint here; reading the reference itself reports its errors.
    }
  }
  const bool from_sidecar = expected.source.rfind("sidecar ", 0) == 0;
  if (from_sidecar && !names_other) {
    if (std::string when = modified_after(options.model, expected.source.substr(8)); !when.empty())
      reasons.push_back(std::move(when));
  }
  if (encrypted && !names_other) {
    if (expected.source == "--sha256") {
      reasons.push_back(
          "the file is encrypted (clawbot encrypt): if the --sha256 given is the plaintext model's, check "
          "that "
          "one after `clawbot decrypt`");
    } else {
      // The sidecar or manifest entry names this .enc: the sum is its own, so its content changed.
      reasons.push_back(
          "the sum recorded for this encrypted file does not match its content: the .enc was changed or "
          "damaged after the sum was recorded (`clawbot decrypt` would say which part no longer "
          "authenticates); copy it again from where it came from");
    }
  }
  std::string text;
  if (!reasons.empty()) {
    text = "Likely: ";
    for (std::size_t i = 0; i < reasons.size(); ++i) text += (i ? "; " : "") + reasons[i];
    text += ".";
  } else {
    text =
        "The file is not the one the sum was made for: it is damaged or incomplete (an interrupted download "
        "or copy: its size is " +
        std::to_string(report.digests.size_bytes) +
        " bytes, compare with the source's; fetch it again), or the sum is for another file or version.";
  }
  return text;
}

}  // namespace

// ---------------------------------------------------------------------------------------------- hashing

FileDigests hash_file(const std::string& path, bool with_md5, bool progress) {
  std::uint64_t size = 0;
  detail::UniqueFd fd = detail::open_regular_file(path, size);
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);

  openssl::Digest sha256("SHA256");
  std::optional<openssl::Digest> md5;
  if (with_md5) md5.emplace("MD5");

  // A reader thread fills buffers while this thread hashes the previous one: reading (a copy from the page
  // cache, or the disk) and hashing overlap.
  constexpr std::size_t buffer_bytes = 4u << 20;
  constexpr std::size_t buffer_count = 3;
  struct Buffer {
    std::vector<std::byte> data = std::vector<std::byte>(buffer_bytes);
    std::size_t length = 0;
  };
  std::array<Buffer, buffer_count> buffers;
  std::mutex mutex;
  std::condition_variable changed;
  std::size_t filled = 0, consumed = 0;  // buffers filled by the reader and hashed here, in order
  bool reader_done = false;
  std::string read_error;
  bool stop = false;

  detail::ProgressBar bar("verify " + fs::path(path).filename().string(), size, progress);
  std::jthread reader([&] {
    std::uint64_t offset = 0;
    for (std::size_t n = 0;; ++n) {
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return n - consumed < buffer_count || stop; });
        if (stop) return;
      }
      Buffer& buffer = buffers[n % buffer_count];
      try {
        buffer.length = detail::pread_full(fd.get(), buffer.data, offset, path);
      } catch (const std::exception& e) {
        std::lock_guard lock(mutex);
        read_error = e.what();
        reader_done = true;
        changed.notify_all();
        return;
      }
      offset += buffer.length;
      std::lock_guard lock(mutex);
      if (buffer.length == 0) {
        reader_done = true;
      } else {
        ++filled;
      }
      changed.notify_all();
      if (reader_done) return;
    }
  });

  std::uint64_t hashed = 0;
  for (;;) {
    {
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return filled > consumed || reader_done; });
      if (filled == consumed) break;  // the reader is done and everything is hashed
    }
    const Buffer& buffer = buffers[consumed % buffer_count];
    const std::span<const std::byte> data(buffer.data.data(), buffer.length);
    try {
      sha256.update(data);
      if (md5) md5->update(data);
    } catch (...) {
      std::lock_guard lock(mutex);
      stop = true;  // the reader must not wait for a buffer that will never be freed
      changed.notify_all();
      throw;
    }
    hashed += buffer.length;
    bar.update(hashed);
    std::lock_guard lock(mutex);
    ++consumed;
    changed.notify_all();
  }
  reader.join();
  bar.finish();
  if (!read_error.empty()) throw ClawbotError(ErrorKind::internal, read_error);
  if (hashed != size) {
    throw ClawbotError(ErrorKind::internal, "'" + path + "' changed size while it was read (" +
                                                std::to_string(size) + " then " + std::to_string(hashed) +
                                                " bytes): is it still being written?");
  }
  FileDigests digests;
  digests.sha256 = sha256.finish_hex();
  if (md5) digests.md5 = md5->finish_hex();
  digests.size_bytes = hashed;
  digests.seconds = bar.elapsed_s();
  return digests;
}

// ---------------------------------------------------------------------------------------------- references

std::vector<ManifestEntry> read_manifest(const std::string& manifest_path) {
  std::istringstream in(read_small_file(manifest_path, "manifest"));
  std::vector<ManifestEntry> entries;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string text = trim(line);
    if (text.empty() || text.front() == '#') continue;
    auto entry = parse_sum_line(text, 64);
    if (!entry || entry->name.empty()) {
      throw ClawbotError(ErrorKind::internal,
                         "manifest '" + manifest_path + "' line " + std::to_string(number) +
                             " is not a SHA-256 sum line (expected '<64 hex characters>  <file name>'): '" +
                             text.substr(0, 100) + "'");
    }
    entry->line = number;
    entries.push_back(std::move(*entry));
  }
  return entries;
}

std::optional<ManifestEntry> find_in_manifest(const std::vector<ManifestEntry>& entries,
                                              const std::string& manifest_path,
                                              const std::string& file_path) {
  std::error_code ec;
  const fs::path manifest_dir = fs::weakly_canonical(fs::absolute(manifest_path, ec).parent_path(), ec);
  const fs::path file = fs::weakly_canonical(fs::absolute(file_path, ec), ec);
  const fs::path relative = file.lexically_relative(manifest_dir);
  for (const auto& entry : entries) {
    if (fs::path(entry.name).lexically_normal() == relative) return entry;
  }
  // Not at its place relative to the manifest: match the file name alone, when only one entry has it.
  std::optional<ManifestEntry> found;
  for (const auto& entry : entries) {
    if (fs::path(entry.name).filename() != file.filename()) continue;
    if (found) {
      throw ClawbotError(ErrorKind::internal,
                         "manifest '" + manifest_path + "' lists '" + file.filename().string() +
                             "' more than once (lines " + std::to_string(found->line) + " and " +
                             std::to_string(entry.line) + "); give the sum with --sha256");
    }
    found = entry;
  }
  return found;
}

std::optional<ExpectedSum> find_expected_sha256(const VerifyOptions& options) {
  if (!options.sha256.empty()) {
    return ExpectedSum{checked_sum(options.sha256, 64, "SHA-256", "--sha256"), "--sha256", ""};
  }
  auto from_manifest = [&](const std::string& manifest, bool required) -> std::optional<ExpectedSum> {
    const auto entry = find_in_manifest(read_manifest(manifest), manifest, options.model);
    if (!entry) {
      if (!required) return std::nullopt;
      throw ClawbotError(ErrorKind::internal, "manifest '" + manifest + "' does not list '" +
                                                  fs::path(options.model).filename().string() + "'");
    }
    return ExpectedSum{entry->sha256, "manifest " + manifest + " (line " + std::to_string(entry->line) + ")",
                       ""};
  };
  if (!options.manifest.empty()) return from_manifest(options.manifest, true);
  std::error_code ec;
  const std::string sidecar = options.model + ".sha256";
  if (fs::exists(sidecar, ec)) return read_sidecar(sidecar, 64, "SHA-256");
  const fs::path beside = fs::path(options.model).parent_path() / "SHA256SUMS";
  if (fs::is_regular_file(beside, ec)) return from_manifest(beside.string(), false);
  return std::nullopt;
}

VerifyReport verify_model_file(const VerifyOptions& options) {
  VerifyReport report;
  // The references first: a bad --sha256 or manifest is reported before minutes of hashing.
  report.expected = find_expected_sha256(options);
  const bool md5 = options.md5 || !options.expect_md5.empty();
  if (!options.expect_md5.empty()) {
    report.md5_expected = checked_sum(options.expect_md5, 32, "MD5", "--expect-md5");
    report.md5_source = "--expect-md5";
  } else if (md5) {
    std::error_code ec;
    const std::string sidecar = options.model + ".md5";
    if (fs::exists(sidecar, ec)) {
      report.md5_expected = read_sidecar(sidecar, 32, "MD5").sha256;
      report.md5_source = "sidecar " + sidecar;
    }
  }

  report.digests = hash_file(options.model, md5, options.progress);

  report.md5_mismatch = !report.md5_expected.empty() && report.md5_expected != report.digests.md5;
  const bool sha_mismatch = report.expected && report.expected->sha256 != report.digests.sha256;
  if (sha_mismatch || report.md5_mismatch) {
    report.status = VerifyStatus::mismatch;
    if (sha_mismatch) report.explanation = explain_mismatch(options, report);
  } else if (report.expected || !report.md5_expected.empty()) {
    report.status = VerifyStatus::match;
  }

  // --write records what was just computed, never over a sum it contradicts.
  if (options.write && report.status != VerifyStatus::mismatch) {
    const std::string name = fs::path(options.model).filename().string();
    auto write_sidecar = [&](const std::string& sidecar, const std::string& sum) {
      std::ofstream out(sidecar, std::ios::trunc);
      out << sum << "  " << name << "\n";
      out.close();
      if (!out) throw ClawbotError(ErrorKind::internal, "cannot write sidecar '" + sidecar + "'");
      report.written.push_back(sidecar);
    };
    write_sidecar(options.model + ".sha256", report.digests.sha256);
    if (md5) write_sidecar(options.model + ".md5", report.digests.md5);
  }
  return report;
}

// ---------------------------------------------------------------------------------------------- serve

PreparedModel prepare_model_file(const std::string& path, const ModelLoadChecks& checks) {
  PreparedModel prepared;
  prepared.path = path;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return prepared;  // the model check names what is wrong

  if (checks.verify) {
    VerifyOptions options;
    options.model = path;
    const auto report = verify_model_file(options);
    const auto& d = report.digests;
    if (!report.expected) {
      throw ClawbotError(ErrorKind::internal,
                         "--verify: there is no sum to check '" + path + "' against (no " + path +
                             ".sha256 sidecar and no SHA256SUMS beside it listing it); record one with "
                             "`clawbot verify --write " +
                             path + "` on a copy you trust, or leave out --verify");
    }
    if (report.status == VerifyStatus::mismatch) {
      throw ClawbotError(ErrorKind::internal, "--verify: refusing to load '" + path +
                                                  "': its SHA-256 does not match " + report.expected->source +
                                                  "\n  expected " + report.expected->sha256 +
                                                  "\n  actual   " + d.sha256 + "\n" + report.explanation);
    }
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.2f s", d.seconds);
    prepared.log.push_back("verified " + path + ": SHA-256 matches " + report.expected->source + " (" +
                           detail::format_bytes(d.size_bytes) + " in " + seconds + ", " +
                           detail::format_rate(d.size_bytes, d.seconds) + ")");
  }

  if (!is_encrypted_file(path)) {
    if (!checks.key_file.empty() || !checks.key_env.empty()) {
      prepared.log.push_back("'" + path + "' is not encrypted: the key option is not used");
    }
    return prepared;
  }
  if (checks.key_file.empty() && checks.key_env.empty()) {
    throw CryptError(CryptFailure::bad_key,
                     "'" + path +
                         "' is an encrypted model (clawbot encrypt): pass its key with "
                         "--key-file FILE or --key-env NAME");
  }
  const ModelKey key = load_key(checks.key_file, checks.key_env);
  if (!key.warning.empty()) prepared.log.push_back(key.warning);
  CryptOptions options;
  options.threads = checks.threads;
  options.progress = true;  // on a terminal only
  prepared.decrypted = decrypt_to_memory(path, key, options);
  const CryptStats& stats = prepared.decrypted->stats();
  prepared.path = prepared.decrypted->path();
  std::string name = fs::path(path).filename().string();
  for (const std::string_view suffix : {".enc", ".gguf"}) {
    if (name.size() > suffix.size() && name.ends_with(suffix)) name.resize(name.size() - suffix.size());
  }
  prepared.name = name;
  char line[256];
  std::snprintf(line, sizeof line,
                "decrypted %s into memory (memfd, never on disk) in %.2f s: %s, %s, %d thread%s, key id %s",
                fs::path(path).filename().c_str(), stats.seconds,
                detail::format_bytes(stats.plaintext_bytes).c_str(),
                detail::format_rate(stats.plaintext_bytes, stats.seconds).c_str(), stats.threads,
                stats.threads == 1 ? "" : "s", key.id_hex().c_str());
  prepared.log.emplace_back(line);
  return prepared;
}

}  // namespace clawbot::ops
