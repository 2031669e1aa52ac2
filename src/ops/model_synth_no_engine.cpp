#include <cstdio>

#include "common/cli_error.h"
#include "ops/ops.h"

namespace clawbot::ops {

int run_models_synth(const SynthOptions&) {
  return cli_error("clawbot models synth",
                   "this build of clawbot has no inference engine (a front-end-only build: "
                   "-DCLAWBOT_ENGINE=OFF, or clawbot-frontend).\n"
                   "Synthesizing a model needs libllama's quantizer: run it with a clawbot built with the "
                   "engine (`make build`).",
                   2);
}

}  // namespace clawbot::ops
