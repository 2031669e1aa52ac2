#include <cstdio>

#include "server/serve.h"

namespace clawbot::server {

std::string resolve_model_path(const std::string& model) {
  return model;
}

int run_serve(const ServeOptions&) {
  std::fprintf(stderr,
               "clawbot serve: this build of clawbot has no inference engine (it was built with "
               "-DCLAWBOT_ENGINE=OFF, the front-end-only build).\n"
               "Run `clawbot serve` on a back-end node built with the engine (`make build`), and point this "
               "front-end at it.\n");
  return 2;
}

}  // namespace clawbot::server
