// Finding clawbot nodes and gateways on the LAN with DNS-SD over multicast DNS (service type _clawbot._tcp).
//
// Advertising, from a server that has bound its listener (the real port is known):
//
//   auto ad = discovery::advertise(discovery::service_info("gateway", port, model, tls, auth),
//                                  {.enabled = !no_advertise, .listen_host = host});
//   // ... serve; `ad` (null when disabled or impossible: a warning was logged) withdraws on destruction.
//
// Finding:
//
//   for (const discovery::Found& f : discovery::browse(std::chrono::milliseconds(2000))) use(f.url());
//
// Both pick their back-end at run time: the Avahi daemon through its client library when one answers on the
// D-Bus system bus (it then owns port 5353, host names and conflicts, and `avahi-browse` lists what we
// publish), else the built-in RFC 6762/6763 responder and querier (mdns.h), so a front-end on Windows or
// macOS, or in a container, needs no daemon. CLAWBOT_MDNS=builtin|avahi in the environment forces one.
//
// TXT keys (RFC 6763 §6): role (node|gateway), model, api (the API's base path, "/v1"), tls (yes|no),
// auth (yes|no: an API key is required), version (clawbot's).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class App;
}

namespace clawbot::discovery {

inline constexpr std::string_view kServiceType = "_clawbot._tcp";

enum class Backend { automatic, avahi, builtin };

struct ServiceInfo {
  std::string instance{};  // the DNS-SD instance name; empty: "clawbot <role> on <host name>"
  unsigned short port = 0;
  std::map<std::string, std::string> txt{};
};

// A ServiceInfo with every TXT key filled (api "/v1", version this build's).
ServiceInfo service_info(std::string_view role, unsigned short port, std::string_view model, bool tls,
                         bool auth);

struct AdvertiseOptions {
  bool enabled = true;        // false: advertise() returns null at once (--no-advertise)
  std::string listen_host{};  // what the server bound: "0.0.0.0", "::", an address. Loopback: not advertised
  Backend backend = Backend::automatic;
  std::string
      host_name{};  // built-in responder: the .local name to answer for (default: this machine's name)
};

// A service being announced. Destroying it withdraws the service (goodbye packets, TTL 0).
class Advertiser {
 public:
  virtual ~Advertiser() = default;
  virtual std::string_view backend() const noexcept = 0;  // "avahi" or "builtin"
  virtual std::string instance() const = 0;               // the name in use (renamed after a conflict)
};

// Starts announcing `service`. Never throws and never fails the caller: returns null, after logging a warning
// that says why, when disabled (no warning then), when listen_host is loopback only, or when neither back-end
// can start (no multicast interface, port 5353 unavailable).
std::unique_ptr<Advertiser> advertise(const ServiceInfo& service, const AdvertiseOptions& options = {});

struct Found {
  std::string instance{};                // "clawbot node on mini"
  std::string host{};                    // the SRV target, "mini.local"
  std::vector<std::string> addresses{};  // IPv4 first; the one the answer came from first among those
  unsigned short port = 0;
  std::map<std::string, std::string> txt{};
  std::string source{};   // "avahi" or "builtin"
  std::uint32_t ttl = 0;  // seconds the answer may be cached (the shortest TTL among its records)

  std::string txt_value(const std::string& key) const;  // "" when absent
  std::string role() const { return txt_value("role"); }
  bool tls() const { return txt_value("tls") == "yes"; }
  bool auth() const { return txt_value("auth") == "yes"; }
  // scheme://address:port (IPv6 in brackets), the scheme from tls; address: the first unless given.
  std::string url(std::string_view address = {}) const;
};

struct BrowseOptions {
  Backend backend = Backend::automatic;
  std::string_view service_type = kServiceType;
};

// Asks the LAN for `service_type` and returns what answered within `wait`, sorted by instance name (the Avahi
// back-end returns early once the daemon has nothing more to resolve). Never throws: a failure to browse at
// all is logged as a warning and yields an empty list.
std::vector<Found> browse(std::chrono::milliseconds wait, const BrowseOptions& options = {});

// Whether a found service answers HTTP, and how fast: one GET of /health (http or https per its tls flag;
// the certificate is *not* checked: this measures reach and latency, it is not a connection to trust).
struct Probe {
  bool reachable = false;  // an HTTP answer of any status came back
  int status = 0;
  double ms = 0;        // connect and exchange, when reachable
  std::string error{};  // why not, when not
};
// One probe per entry of `found` (its first address), all at once; `timeout` bounds each.
std::vector<Probe> probe(const std::vector<Found>& found, std::chrono::milliseconds timeout);

// The back-end `automatic` resolves to now ("avahi" when a daemon answers on D-Bus, else "builtin").
std::string_view active_backend(Backend requested = Backend::automatic);

// `clawbot discover`.
struct DiscoverOptions {
  int timeout_ms = 2000;
  bool json = false;
};
int run_discover(const DiscoverOptions& options);
// `clawbot discover` on `app` (discover_cmd.cpp). After parsing, the returned function runs it and returns
// its exit status, or nullopt when the command line named another.
std::function<std::optional<int>()> add_discover_command(CLI::App& app);

}  // namespace clawbot::discovery
