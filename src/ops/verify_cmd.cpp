// `clawbot verify`: its command line and what it prints; the hashing and the sums' lookup are in verify.cpp.
#include <cstdio>
#include <memory>

#include <CLI/CLI.hpp>

#include "common/cli_error.h"
#include "ops/file_io.h"
#include "ops/integrity.h"

namespace clawbot::ops {

int run_verify(const VerifyOptions& options) {
  VerifyReport report;
  try {
    report = verify_model_file(options);
  } catch (const std::exception& e) {
    return cli_error("clawbot verify", e.what(), 2);
  }
  const auto& d = report.digests;
  // sha256sum's format on stdout, so the output is itself a manifest line.
  std::printf("%s  %s\n", d.sha256.c_str(), options.model.c_str());
  if (!d.md5.empty()) std::printf("md5 %s  %s\n", d.md5.c_str(), options.model.c_str());
  std::fprintf(stderr, "clawbot verify: %s hashed in %.2f s (%s)\n",
               detail::format_bytes(d.size_bytes).c_str(), d.seconds,
               detail::format_rate(d.size_bytes, d.seconds).c_str());
  if (report.expected) {
    const bool ok = report.expected->sha256 == d.sha256;
    std::fprintf(stderr, "SHA-256 %s %s\n", ok ? "OK: matches" : "MISMATCH with",
                 report.expected->source.c_str());
    if (!ok) {
      std::fprintf(stderr, "  expected %s\n  actual   %s\n%s\n", report.expected->sha256.c_str(),
                   d.sha256.c_str(), report.explanation.c_str());
    }
  }
  if (!report.md5_expected.empty()) {
    std::fprintf(stderr, "MD5 %s %s\n", report.md5_mismatch ? "MISMATCH with" : "OK: matches",
                 report.md5_source.c_str());
    if (report.md5_mismatch) {
      std::fprintf(stderr, "  expected %s\n  actual   %s\n", report.md5_expected.c_str(), d.md5.c_str());
    }
  }
  for (const auto& sidecar : report.written)
    std::fprintf(stderr, "recorded the sum in %s\n", sidecar.c_str());
  switch (report.status) {
    case VerifyStatus::match:
      return 0;
    case VerifyStatus::mismatch:
      if (options.write) std::fprintf(stderr, "nothing written: the file does not match its recorded sum\n");
      return 1;
    case VerifyStatus::no_reference:
      if (!report.written.empty()) return 0;
      return cli_error(
          "clawbot verify",
          "no sum to compare with (no " + options.model +
              ".sha256 sidecar, no SHA256SUMS beside it, no --sha256 or --manifest): the sum above "
              "is unchecked. Compare it with the publisher's, or record it with --write.",
          2);
  }
  return 2;
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
      throw std::runtime_error("--verify: there is no sum to check '" + path + "' against (no " + path +
                               ".sha256 sidecar and no SHA256SUMS beside it listing it); record one with "
                               "`clawbot verify --write " +
                               path + "` on a copy you trust, or leave out --verify");
    }
    if (report.status == VerifyStatus::mismatch) {
      throw std::runtime_error("--verify: refusing to load '" + path + "': its SHA-256 does not match " +
                               report.expected->source + "\n  expected " + report.expected->sha256 +
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

std::function<std::optional<int>()> add_verify_command(CLI::App& app) {
  auto verify = std::make_shared<VerifyOptions>();
  auto* cmd = app.add_subcommand(
      "verify", "SHA-256 of a model file, checked against MODEL.sha256, --sha256 or a SHA256SUMS manifest");
  cmd->add_option("model", verify->model, "Model file")->required();
  cmd->add_option("--sha256", verify->sha256, "The expected SHA-256 (64 hex characters)");
  cmd->add_option("--manifest", verify->manifest,
                  "SHA256SUMS-format file listing the model (default: SHA256SUMS beside it, if any)");
  cmd->add_flag("--md5", verify->md5, "Also compute MD5 (checked against MODEL.md5 when present)");
  cmd->add_option("--expect-md5", verify->expect_md5, "The expected MD5 (32 hex characters; implies --md5)");
  cmd->add_flag("--write", verify->write, "Record the sum in MODEL.sha256 (and MODEL.md5 with --md5)");
  cmd->add_flag_callback(
      "--no-progress", [verify] { verify->progress = false; }, "No progress bar on stderr");
  return [=]() -> std::optional<int> {
    if (!cmd->parsed()) return std::nullopt;
    return run_verify(*verify);
  };
}

}  // namespace clawbot::ops
