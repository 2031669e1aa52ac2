// The built-in multicast DNS responder and querier (RFC 6762, DNS-SD per RFC 6763) on Boost.Asio: IPv4,
// group 224.0.0.251, port 5353, shared with any daemon on the machine (SO_REUSEADDR and SO_REUSEPORT; every
// socket bound to the port gets each multicast packet).
//
// Why hand-written and not avahi-core (libavahi-core, Avahi's embeddable stack): avahi-core is documented for
// machines *without* a running daemon and is not packaged for Windows or macOS, which are exactly the
// front-ends that need a built-in stack; and where a daemon runs we talk to it through libavahi-client
// instead (avahi.h). What DNS-SD needs from mDNS is small: answer PTR/SRV/TXT/A questions for one instance,
// announce, say goodbye, and ask.
//
// Responder: probes its instance name first (three queries 250 ms apart, RFC 6762 §8.1) and renames on a
// conflict ("name (2)", ...); announces three times, one second apart; answers queries (multicast, or unicast
// to a legacy querier's own port with its id echoed) with the records the question asks for plus the ones it
// will need next (SRV, TXT, A in the additional section), honouring known answers; sends goodbyes (TTL 0)
// when destroyed. Simplifications, deliberate: the host name (<hostname>.local) is answered but not probed
// (where a daemon owns it, the Avahi back-end is used instead), a simultaneous-probe tie is not broken by RFC
// 6762 §8.2's lexicographic rule (a conflict seen later is only logged), and interfaces that appear after
// start are not joined. IPv6 (ff02::fb) is not spoken.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ip/address_v4.hpp>

#include "discovery/discovery.h"

namespace clawbot::discovery::mdns {

struct Interface {
  std::string name;
  boost::asio::ip::address_v4 address;
  boost::asio::ip::address_v4 netmask;
  bool loopback = false;
};

// The machine's IPv4 interfaces that are up and can multicast (loopback included, flagged).
std::vector<Interface> ipv4_interfaces();

struct ResponderOptions {
  std::string host_name;                                    // "mini.local"; empty: gethostname() + ".local"
  std::optional<boost::asio::ip::address_v4> only_address;  // the server bound one address: announce just it
};

// Throws std::system_error when the socket cannot be set up (port 5353 taken exclusively, no interface).
std::unique_ptr<Advertiser> start_responder(const ServiceInfo& service, const ResponderOptions& options);

// Multicast queries for `service_type` (and follow-ups for missing SRV, TXT and A records) for `wait`.
// Throws std::system_error when no socket can be opened.
std::vector<Found> query(std::chrono::milliseconds wait, std::string_view service_type);

}  // namespace clawbot::discovery::mdns
