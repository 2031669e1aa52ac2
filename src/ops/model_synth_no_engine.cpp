#include <cstdio>

#include "ops/ops.h"

namespace clawbot::ops {

int run_models_synth(const SynthOptions&) {
  std::fprintf(stderr,
               "clawbot models synth: this build of clawbot has no inference engine (it was built with "
               "-DCLAWBOT_ENGINE=OFF, the front-end-only build).\n"
               "Synthesizing a model needs libllama's quantizer: run it with a clawbot built with the engine "
               "(`make build`).\n");
  return 2;
}

}  // namespace clawbot::ops
