// `clawbot drill`: the failover drill (tests/integration/drill.test.mjs) against this binary.
#pragma once

#include <string>

namespace clawbot::backup {

struct DrillOptions {
  std::string script;  // the drill's test file; empty: the one in the source tree clawbot was built from
};

// Runs the drill, its output passed through; its exit status. Throws ClawbotError when the script or node is
// missing.
int run_drill(const DrillOptions& options);

}  // namespace clawbot::backup
