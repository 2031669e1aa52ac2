#include "backup/services.h"

#include <unistd.h>

#include <fstream>
#include <iostream>
#include <regex>

#include "backup/child.h"
#include "common/error.h"

namespace clawbot::backup {

namespace fs = std::filesystem;

namespace {

std::string replace_all(std::string text, std::string_view from, const std::string& to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

bool wanted(const InstallOptions& options, std::string_view unit) {
  if (options.only.empty()) return true;
  for (const auto& part : options.only)
    if (unit.starts_with("clawbot-" + part + ".")) return true;
  return false;
}

// The exposure score from `systemd-analyze security`'s last line ("... clawbot-serve.service: 1.4 OK").
std::string exposure(const std::string& report) {
  static const std::regex score(R"(Overall exposure level for [^:]+: ([0-9.]+) ([A-Z]+))");
  std::smatch m;
  return std::regex_search(report, m, score) ? m[1].str() + " " + m[2].str() : "unknown";
}

}  // namespace

void check_daily_time(const std::string& time) {
  static const std::regex hh_mm("([01][0-9]|2[0-3]):[0-5][0-9]");
  if (!std::regex_match(time, hh_mm))
    throw_invalid("--daily " + time + ": expected HH:MM, 00:00 to 23:59", "--daily");
}

int install_services(const InstallOptions& options) {
  check_daily_time(options.daily);
  fs::path binary = options.binary;
  if (binary.empty()) binary = fs::read_symlink("/proc/self/exe");
  binary = fs::absolute(binary);
  fs::create_directories(options.unit_dir);
  std::vector<fs::path> written;
  for (const auto& unit : unit_files()) {
    if (!wanted(options, unit.name)) continue;
    const fs::path file = options.unit_dir / unit.name;
    const std::string text = replace_all(replace_all(std::string(unit.text), "@CLAWBOT@", binary.string()),
                                         "@TIME@", options.daily);
    const fs::path temp = file.string() + ".tmp";
    {
      std::ofstream out(temp, std::ios::trunc);
      out << text;
      if (!out) throw ClawbotError(ErrorKind::forbidden, temp.string() + ": cannot write (run as root?)");
    }
    fs::permissions(temp, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                              fs::perms::others_read);
    fs::rename(temp, file);
    written.push_back(file);
    std::cout << "wrote " << file.string() << "\n";
  }
  if (written.empty()) throw_invalid("no unit matches --only", "--only");
  int status = 0;
  if (options.verify) {
    std::vector<std::string> verify{"systemd-analyze", "verify", "--man=no"};
    for (const auto& f : written) verify.push_back(f.string());
    const ChildResult checked = run_child(verify);
    // verify exits 0 even for unknown keys and values it ignores: any line it prints is a fault here.
    const std::string said = last_lines(checked.out + checked.err, 20);
    if (checked.ok() && said.empty()) {
      std::cout << "systemd-analyze verify: ok\n";
    } else {
      std::cout << "systemd-analyze verify: FAILED\n" << said << "\n";
      status = 1;
    }
    for (const auto& f : written) {
      if (f.extension() != ".service") continue;
      const std::vector<std::string> security{"systemd-analyze", "security", "--offline=yes", "--no-pager",
                                              f.string()};
      const ChildResult scored = run_child(security);
      std::cout << f.filename().string() << ": exposure " << exposure(scored.out + scored.err) << "\n";
    }
  }
  if (options.unit_dir == "/etc/systemd/system")
    std::cout << "next: useradd --system --home-dir /var/lib/clawbot --shell /usr/sbin/nologin clawbot; "
                 "systemctl daemon-reload; systemctl enable --now clawbot-serve clawbot-gateway "
                 "clawbot-backup.timer\n";
  return status;
}

}  // namespace clawbot::backup
