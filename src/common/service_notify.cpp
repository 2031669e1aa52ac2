#include "common/service_notify.h"

#include <string>

#if CLAWBOT_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace clawbot {

void service_notify([[maybe_unused]] std::string_view state) noexcept {
#if CLAWBOT_HAVE_LIBSYSTEMD
  try {
    sd_notify(0, std::string(state).c_str());
  } catch (...) {
    // Readiness is advisory: a failure to tell systemd never stops the service.
  }
#endif
}

}  // namespace clawbot
