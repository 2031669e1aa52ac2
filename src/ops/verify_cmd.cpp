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
