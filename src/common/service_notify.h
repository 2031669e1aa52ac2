// systemd's readiness protocol (sd_notify, libsystemd): "READY=1" once a service answers (serve: the model
// is loaded and the port listens), "STOPPING=1" when it begins to drain. A no-op outside systemd (no
// $NOTIFY_SOCKET) and in a build without libsystemd.
#pragma once

#include <string_view>

namespace clawbot {

void service_notify(std::string_view state) noexcept;

}  // namespace clawbot
