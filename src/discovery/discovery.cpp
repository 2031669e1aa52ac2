// The choice between the Avahi daemon and the built-in stack, and what both share.
#include "discovery/discovery.h"

#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>

#include <boost/asio/ip/address.hpp>

#include "discovery/avahi.h"
#include "discovery/log.h"
#include "discovery/mdns.h"

#ifndef CLAWBOT_VERSION
#define CLAWBOT_VERSION "0"
#endif

namespace clawbot::discovery {

namespace {

// CLAWBOT_MDNS=avahi|builtin forces a back-end where the caller left the choice open.
Backend requested(Backend b) {
  if (b != Backend::automatic) return b;
  const char* env = std::getenv("CLAWBOT_MDNS");
  if (!env) return b;
  const std::string_view v(env);
  if (v == "builtin") return Backend::builtin;
  if (v == "avahi") return Backend::avahi;
  if (!v.empty() && v != "auto") log().warn("CLAWBOT_MDNS='{}' is not auto, avahi or builtin; using auto", v);
  return b;
}

std::string short_host_name() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == 0) return "unknown";
  std::string name(buf.data());
  if (const auto dot = name.find('.'); dot != std::string::npos) name.resize(dot);
  return name;
}

// A DNS label holds at most 63 bytes; cut at a UTF-8 character boundary.
std::string fit_label(std::string s) {
  if (s.size() <= 63) return s;
  std::size_t n = 63;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  return s;
}

}  // namespace

ServiceInfo service_info(std::string_view role, unsigned short port, std::string_view model, bool tls,
                         bool auth) {
  ServiceInfo s;
  s.port = port;
  s.txt = {{"role", std::string(role)}, {"model", std::string(model)}, {"api", "/v1"},
           {"tls", tls ? "yes" : "no"}, {"auth", auth ? "yes" : "no"}, {"version", CLAWBOT_VERSION}};
  return s;
}

std::string Found::txt_value(const std::string& key) const {
  const auto it = txt.find(key);
  return it == txt.end() ? std::string() : it->second;
}

std::string Found::url(std::string_view address) const {
  std::string where(address.empty() ? (addresses.empty() ? host : addresses.front()) : address);
  if (where.find(':') != std::string::npos) where = "[" + where + "]";
  return std::string(tls() ? "https" : "http") + "://" + where + ":" + std::to_string(port);
}

std::string_view active_backend(Backend b) {
  switch (requested(b)) {
    case Backend::avahi:
      return "avahi";
    case Backend::builtin:
      return "builtin";
    case Backend::automatic:
      break;
  }
  return avahi::available() ? "avahi" : "builtin";
}

std::unique_ptr<Advertiser> advertise(const ServiceInfo& service, const AdvertiseOptions& options) {
  if (!options.enabled) return nullptr;
  try {
    ServiceInfo s = service;
    if (s.instance.empty()) {
      const auto it = s.txt.find("role");
      s.instance =
          "clawbot " + (it == s.txt.end() ? std::string("node") : it->second) + " on " + short_host_name();
    }
    s.instance = fit_label(std::move(s.instance));
    if (!s.txt.contains("version")) s.txt["version"] = CLAWBOT_VERSION;

    mdns::ResponderOptions responder;
    responder.host_name = options.host_name;
    int interface_index = -1;
    if (!options.listen_host.empty()) {
      boost::system::error_code ec;
      const auto address = boost::asio::ip::make_address(options.listen_host, ec);
      if ((!ec && address.is_loopback()) || options.listen_host == "localhost") {
        log().info(
            "mdns: not advertised: listening on {} (loopback) only; --host 0.0.0.0 to be found on the LAN",
            options.listen_host);
        return nullptr;
      }
      if (!ec && address.is_v4() && !address.is_unspecified()) {
        responder.only_address = address.to_v4();
        for (const auto& i : mdns::ipv4_interfaces())
          if (i.address == address.to_v4())
            interface_index = static_cast<int>(::if_nametoindex(i.name.c_str()));
      }
    }

    const Backend backend = requested(options.backend);
    std::string why_not_avahi;
    if (backend != Backend::builtin) {
      if (auto ad = avahi::start_publisher(s, interface_index == 0 ? -1 : interface_index, &why_not_avahi))
        return ad;
      if (backend == Backend::avahi) {
        log().warn("mdns: not advertised: {} (CLAWBOT_MDNS=avahi)", why_not_avahi);
        return nullptr;
      }
    }
    return mdns::start_responder(s, responder);
  } catch (const std::exception& e) {
    log().warn("mdns: not advertised on the LAN: {}", e.what());
    return nullptr;
  }
}

std::vector<Found> browse(std::chrono::milliseconds wait, const BrowseOptions& options) {
  std::vector<Found> found;
  try {
    const Backend backend = requested(options.backend);
    std::optional<std::vector<Found>> via_avahi;
    if (backend != Backend::builtin) via_avahi = avahi::browse(wait, options.service_type);
    if (via_avahi) {
      found = std::move(*via_avahi);
    } else if (backend == Backend::avahi) {
      log().warn("mdns: cannot browse: no Avahi daemon answers on D-Bus (CLAWBOT_MDNS=avahi)");
    } else {
      found = mdns::query(wait, options.service_type);
    }
  } catch (const std::exception& e) {
    log().warn("mdns: cannot browse the LAN: {}", e.what());
  }
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.instance < b.instance; });
  return found;
}

}  // namespace clawbot::discovery
