// `clawbot drill`: the failover drill of tests/integration/drill.test.mjs (network namespaces: a primary, a
// standby, a gateway and clients under load; drain, kill, cut and hang of the primary; restore from the
// backup), run against this very binary. The topology and its checks live in one place, the test; this
// command finds it in the source tree the binary was built from and runs it with Node's test runner, output
// passed through.
#include "backup/drill.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "backup/child.h"
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
  // A runner of its own, reporting to the terminal: not the child of a test runner that started clawbot.
  ::unsetenv("NODE_TEST_CONTEXT");
  const std::vector<std::string> argv = {"node", "--test", "--test-reporter=spec", script.string()};
  const std::vector<EnvVar> env = {{"CLAWBOT_BIN", self.string()}};
  return run_child_inheriting(argv, env);
}

}  // namespace clawbot::backup
