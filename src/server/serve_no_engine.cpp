#include <cstdio>

#include "common/cli_error.h"
#include "server/serve.h"

namespace clawbot::server {

int run_serve(const ServeOptions&) {
  return cli_error("clawbot serve",
                   "this build of clawbot has no inference engine (a front-end-only build: "
                   "-DCLAWBOT_ENGINE=OFF, or clawbot-frontend).\n"
                   "Run `clawbot serve` on a back-end node built with the engine (`make build`), and point "
                   "this front-end at it.",
                   2);
}

}  // namespace clawbot::server
