// `clawbot drill`: the failover drill of tests/integration/drill.test.mjs (network namespaces: a primary, a
// standby, a gateway and clients under load; drain, kill, cut and hang of the primary; restore from the
// backup), run against this very binary. The topology and its checks live in one place, the test; this
// command finds it in the source tree the binary was built from and runs it with Node's test runner, output
// passed through.
#include "backup/drill.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/error.h"

namespace clawbot::backup {
namespace fs = std::filesystem;

int run_drill(const DrillOptions& options) {
  const fs::path script = options.script.empty()
                              ? fs::path(CLAWBOT_SOURCE_DIR) / "tests" / "integration" / "drill.test.mjs"
                              : fs::path(options.script);
  if (!fs::exists(script))
    throw ClawbotError(ErrorKind::not_found,
                       script.string() +
                           " not found: the drill runs from the source tree clawbot was built from "
                           "(give it with --script, or run `make drill` in a checkout)");
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw ClawbotError(ErrorKind::internal, "cannot find this program's own path: " + ec.message());
  std::vector<std::string> args = {"node", "--test", "--test-reporter=spec", script.string()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) throw ClawbotError(ErrorKind::internal, "cannot start node: fork failed");
  if (pid == 0) {
    ::setenv("CLAWBOT_BIN", self.c_str(), 1);
    // A runner of its own, reporting to the terminal: not the child of a test runner that started clawbot.
    ::unsetenv("NODE_TEST_CONTEXT");
    ::execvp("node", argv.data());
    _exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  if (WIFEXITED(status)) {
    if (WEXITSTATUS(status) == 127)
      throw ClawbotError(ErrorKind::not_found, "node: not installed (the drill runs on Node's test runner)");
    return WEXITSTATUS(status);
  }
  return 128 + WTERMSIG(status);
}

}  // namespace clawbot::backup
