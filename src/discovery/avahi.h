// The Avahi back-end: publishing and browsing through the Avahi daemon (libavahi-client over the D-Bus system
// bus). The daemon then owns port 5353, our host name and name conflicts, and `avahi-browse` lists what we
// publish. In a build without libavahi-client (a Windows or macOS front-end) every call says "no daemon".
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "discovery/discovery.h"

namespace clawbot::discovery::avahi {

// Whether an Avahi daemon answers on D-Bus now (when not, *why says so).
bool available(std::string* why = nullptr);

// Null when no daemon answers (*why says why); the service is then not published. interface_index: the
// interface to publish on (the server bound one address), -1 for all.
std::unique_ptr<Advertiser> start_publisher(const ServiceInfo& service, int interface_index = -1,
                                            std::string* why = nullptr);

// nullopt when no daemon answers; else what the daemon resolved within `wait` (it returns once the daemon
// reports its first round complete and every resolution has finished).
std::optional<std::vector<Found>> browse(std::chrono::milliseconds wait, std::string_view service_type);

}  // namespace clawbot::discovery::avahi
