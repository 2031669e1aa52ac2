#include <cstdio>

#include "server/serve.h"

namespace clawbot::server {

int run_serve(const ServeOptions&) {
  std::fprintf(stderr,
               "clawbot serve: this build of clawbot has no inference engine (a front-end-only build: "
               "-DCLAWBOT_ENGINE=OFF, or clawbot-frontend).\n"
               "Run `clawbot serve` on a back-end node built with the engine (`make build`), and point this "
               "front-end at it.\n");
  return 2;
}

}  // namespace clawbot::server
