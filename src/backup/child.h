// Runs another program (restic, rsync, ssh, systemd-analyze) as a child process: argv as given, never through
// a shell, with extra environment variables, stdin from /dev/null, stdout and stderr captured. Secrets reach
// the child through files or its environment, never its command line (which every user can read in /proc).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace clawbot::backup {

struct ChildResult {
  int status = 0;  // the exit status; 128 + the signal when a signal ended it
  std::string out, err;
  bool ok() const noexcept { return status == 0; }
};

using EnvVar = std::pair<std::string, std::string>;

// Runs argv[0] (looked up in PATH) and waits for it. Each of stdout and stderr keeps at most `max_capture`
// bytes (the rest is read and dropped). Throws ClawbotError when the program cannot be started ("restic: not
// installed"), naming it.
ChildResult run_child(std::span<const std::string> argv, std::span<const EnvVar> env = {},
                      std::size_t max_capture = std::size_t{64} << 20);

// Runs argv[0] like run_child, with this process's stdin, stdout and stderr (output passed through, not
// captured); its exit status.
int run_child_inheriting(std::span<const std::string> argv, std::span<const EnvVar> env = {});

// The last `lines` non-empty lines of `text` (a child's stderr, for messages).
std::string last_lines(std::string_view text, std::size_t lines = 5);

}  // namespace clawbot::backup
