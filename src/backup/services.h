// Internal to src/backup: the systemd units of deploy/systemd (compiled in) and the commands that install
// them: `clawbot install-service` and `clawbot backup schedule --daily HH:MM`.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace clawbot::backup {

struct UnitFile {
  std::string_view name;  // "clawbot-serve.service"
  std::string_view text;  // with @CLAWBOT@ (the binary) and @TIME@ (HH:MM of the daily backup) to fill in
};
std::span<const UnitFile> unit_files();

struct InstallOptions {
  std::filesystem::path unit_dir = "/etc/systemd/system";
  std::filesystem::path binary;   // empty: this executable
  std::vector<std::string> only;  // serve, gateway, backup; empty: all
  std::string daily = "03:30";    // the backup timer's time
  bool verify = false;            // run systemd-analyze verify and security on what was written
};

// "HH:MM" with HH 00..23 and MM 00..59, else ClawbotError (invalid_request) naming the value.
void check_daily_time(const std::string& time);

// Writes the units (each file replaced whole), then with `verify` checks them; returns the exit status.
int install_services(const InstallOptions& options);

}  // namespace clawbot::backup
