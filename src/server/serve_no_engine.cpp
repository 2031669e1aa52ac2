#include <cstdio>

#include "server/serve.h"

namespace clawbot::server {

int run_serve(const ServeOptions&) {
  std::fprintf(stderr,
               "clawbot serve: this build of clawbot has no inference engine (it was built with "
               "-DCLAWBOT_ENGINE=OFF, the front-end-only build).\n"
               "Run `clawbot serve` on a back-end node built with the engine (`make build`), and point this "
               "front-end at it.\n");
  return 2;
}

}  // namespace clawbot::server
