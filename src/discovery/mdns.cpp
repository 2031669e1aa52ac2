#include "discovery/mdns.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/multicast.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include "discovery/log.h"

#include "discovery/dns_message.h"

namespace clawbot::discovery::mdns {

namespace asio = boost::asio;
using asio::ip::address_v4;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr unsigned short kPort = 5353;
const address_v4 kGroup = asio::ip::make_address_v4("224.0.0.251");
constexpr std::uint32_t kHostTtl = 120;    // RFC 6762 §10: records naming a host
constexpr std::uint32_t kOtherTtl = 4500;  // and the rest (75 minutes)
constexpr std::uint32_t kLegacyTtl = 10;   // §6.7: at most 10 s in answers to legacy unicast queries
constexpr std::size_t kMaxPacket = 9000;   // §17: up to the interface MTU; jumbo frames at most
constexpr auto kProbeInterval = std::chrono::milliseconds(250);
constexpr int kProbes = 3;
constexpr int kAnnouncements = 3;
constexpr int kMaxRenames = 20;
constexpr std::string_view kServicesName = "_services._dns-sd._udp.local";

std::string local_host_name() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == 0) return "clawbot.local";
  std::string name(buf.data());
  if (const auto dot = name.find('.'); dot != std::string::npos) name.resize(dot);  // "mini.lan" -> "mini"
  return name + ".local";
}

std::vector<std::uint8_t> address_bytes(const address_v4& a) {
  const auto b = a.to_bytes();
  return {b.begin(), b.end()};
}

bool same_subnet(const Interface& i, const address_v4& other) {
  return (i.address.to_uint() & i.netmask.to_uint()) == (other.to_uint() & i.netmask.to_uint());
}

// The interfaces to speak on: every non-loopback one; loopback only when there is nothing else (a machine or
// namespace with no network still finds its own services).
std::vector<Interface> speaking_interfaces() {
  std::vector<Interface> all = ipv4_interfaces();
  std::vector<Interface> out;
  for (const auto& i : all)
    if (!i.loopback) out.push_back(i);
  if (out.empty()) out = all;
  return out;
}

// Port 5353 shared with whatever else listens there (a daemon, another clawbot), joined on every interface.
// With `bind_mdns_port` false the socket takes any port: responders then answer it by unicast (§6.7).
void open_socket(udp::socket& socket, const std::vector<Interface>& interfaces, bool bind_mdns_port) {
  socket.open(udp::v4());
  socket.set_option(udp::socket::reuse_address(true));
#ifdef SO_REUSEPORT
  const int one = 1;
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
#endif
  socket.bind(udp::endpoint(address_v4::any(), bind_mdns_port ? kPort : 0));
  socket.set_option(asio::ip::multicast::hops(255));
  socket.set_option(asio::ip::multicast::enable_loopback(true));  // a querier on this machine sees us
  if (!bind_mdns_port) return;
  int joined = 0;
  for (const auto& i : interfaces) {
    boost::system::error_code ec;
    socket.set_option(asio::ip::multicast::join_group(kGroup, i.address), ec);
    if (!ec) {
      ++joined;
    } else {
      log().debug("mdns: cannot join 224.0.0.251 on {}: {}", i.name, ec.message());
    }
  }
  if (joined == 0) {
    boost::system::error_code ec;
    socket.set_option(asio::ip::multicast::join_group(kGroup), ec);  // the default route's interface
    if (ec) throw std::system_error(ec, "cannot join the mDNS group 224.0.0.251 on any interface");
  }
}

// Sends `packet` to the group on each interface in turn (the kernel sends multicast on one interface only).
void send_multicast(udp::socket& socket, const std::vector<std::uint8_t>& packet, const Interface& via) {
  boost::system::error_code ec;
  socket.set_option(asio::ip::multicast::outbound_interface(via.address), ec);
  if (!ec) socket.send_to(asio::buffer(packet), udp::endpoint(kGroup, kPort), 0, ec);
  if (ec) log().debug("mdns: send on {} failed: {}", via.name, ec.message());
}

// ------------------------------------------------------------------------------------------------ responder

class Responder final : public Advertiser {
 public:
  Responder(ServiceInfo service, const ResponderOptions& options)
      : service_(std::move(service)),
        host_name_(options.host_name.empty() ? local_host_name() : options.host_name),
        only_address_(options.only_address),
        interfaces_(speaking_interfaces()),
        instance_(service_.instance),
        socket_(io_),
        timer_(io_) {
    if (interfaces_.empty())
      throw std::system_error(std::make_error_code(std::errc::network_down), "no IPv4 interface is up");
    open_socket(socket_, interfaces_, true);
    receive();
    start_probe();
    thread_ = std::jthread([this] {
      try {
        io_.run();
      } catch (const std::exception& e) {  // a bug, not the network: malformed input never throws
        log().warn("mdns: the responder stopped: {}", e.what());
      }
    });
  }

  ~Responder() override {
    asio::post(io_, [this] {
      if (announced_) {
        for (const auto& i : interfaces_) send_multicast(socket_, encode(records_for(i.address, 0)), i);
        log().info("mdns: withdrew '{}' (goodbye sent)", instance_name_unlocked());
      }
      stopping_ = true;
      boost::system::error_code ignored;
      timer_.cancel();
      socket_.close(ignored);
    });
    thread_.join();
  }

  std::string_view backend() const noexcept override { return "builtin"; }
  std::string instance() const override {
    std::lock_guard lock(mutex_);
    return instance_;
  }

 private:
  // ---------------------------------------------------------------- names and records
  std::string service_name() const { return std::string(kServiceType) + ".local"; }
  std::string instance_name_unlocked() const { return instance_; }
  std::string full_instance_name() const { return dns::escape_label(instance_) + "." + service_name(); }

  std::vector<address_v4> addresses_for(const std::optional<address_v4>& peer) const {
    if (only_address_) return {*only_address_};
    std::vector<address_v4> out;
    if (peer)
      for (const auto& i : interfaces_)
        if (same_subnet(i, *peer)) out.push_back(i.address);
    if (out.empty())
      for (const auto& i : interfaces_) out.push_back(i.address);
    return out;
  }

  dns::Record ptr_record(std::uint32_t ttl) const {
    dns::Record r{.name = service_name(), .type = dns::type_ptr, .ttl = ttl};
    r.target = full_instance_name();
    return r;
  }
  dns::Record services_record(std::uint32_t ttl) const {
    dns::Record r{.name = std::string(kServicesName), .type = dns::type_ptr, .ttl = ttl};
    r.target = service_name();
    return r;
  }
  dns::Record srv_record(std::uint32_t ttl) const {
    dns::Record r{.name = full_instance_name(), .type = dns::type_srv, .cache_flush = true, .ttl = ttl};
    r.target = host_name_;
    r.port = service_.port;
    return r;
  }
  dns::Record txt_record(std::uint32_t ttl) const {
    dns::Record r{.name = full_instance_name(), .type = dns::type_txt, .cache_flush = true, .ttl = ttl};
    for (const auto& [k, v] : service_.txt) r.txt.push_back(k + "=" + v);
    return r;
  }
  std::vector<dns::Record> a_records(const std::vector<address_v4>& addresses, std::uint32_t ttl) const {
    std::vector<dns::Record> out;
    for (const auto& a : addresses) {
      dns::Record r{.name = host_name_, .type = dns::type_a, .cache_flush = true, .ttl = ttl};
      r.address = address_bytes(a);
      out.push_back(std::move(r));
    }
    return out;
  }

  // Everything, as announced on one interface (ttl_scale 0: the goodbye).
  dns::Message records_for(const address_v4& on, int ttl_scale) const {
    dns::Message m{.flags = dns::flags_response};
    const auto t = [&](std::uint32_t ttl) { return ttl * static_cast<std::uint32_t>(ttl_scale); };
    m.answers = {ptr_record(t(kOtherTtl)), srv_record(t(kHostTtl)), txt_record(t(kOtherTtl)),
                 services_record(t(kOtherTtl))};
    for (auto& r : a_records(addresses_for(on), t(kHostTtl))) m.answers.push_back(std::move(r));
    return m;
  }

  // ---------------------------------------------------------------- probing and announcing
  void start_probe() {
    probes_sent_ = 0;
    probing_ = true;
    probe_step();
  }

  void probe_step() {
    if (stopping_) return;
    if (probes_sent_ == kProbes) {
      probing_ = false;
      announce_step(0);
      return;
    }
    dns::Message probe;
    probe.questions.push_back({.name = full_instance_name(), .type = dns::type_any});
    probe.authorities = {srv_record(kHostTtl), txt_record(kOtherTtl)};
    const auto packet = dns::encode(probe);
    for (const auto& i : interfaces_) send_multicast(socket_, packet, i);
    ++probes_sent_;
    timer_.expires_after(kProbeInterval);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) probe_step();
    });
  }

  void rename_after_conflict() {
    ++renames_;
    if (renames_ > kMaxRenames) {
      log().warn("mdns: gave up finding a free instance name after {} tries", kMaxRenames);
      stopping_ = true;
      return;
    }
    std::string renamed = service_.instance + " (" + std::to_string(renames_ + 1) + ")";
    log().warn("mdns: another host announces '{}'; renamed to '{}'", instance_, renamed);
    {
      std::lock_guard lock(mutex_);
      instance_ = std::move(renamed);
    }
    timer_.cancel();
    timer_.expires_after(std::chrono::seconds(1));  // §8.1: a second before probing again
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) start_probe();
    });
  }

  void announce_step(int n) {
    if (stopping_ || n == kAnnouncements) return;
    for (const auto& i : interfaces_) send_multicast(socket_, encode(records_for(i.address, 1)), i);
    if (n == 0) {
      announced_ = true;
      log().info("mdns: announcing '{}' ({} port {}) on {} (built-in responder)", instance_, kServiceType,
                 service_.port, interface_list());
    }
    timer_.expires_after(std::chrono::seconds(1) * (1 << n));
    timer_.async_wait([this, n](const boost::system::error_code& ec) {
      if (!ec) announce_step(n + 1);
    });
  }

  std::string interface_list() const {
    std::string s;
    for (const auto& i : interfaces_) s += (s.empty() ? "" : ", ") + i.name + " " + i.address.to_string();
    return s;
  }

  // ---------------------------------------------------------------- receiving
  void receive() {
    socket_.async_receive_from(asio::buffer(buffer_), sender_,
                               [this](const boost::system::error_code& ec, std::size_t n) {
                                 if (ec || stopping_) return;
                                 on_packet(n);
                                 receive();
                               });
  }

  void on_packet(std::size_t n) {
    std::string why;
    const auto message = dns::decode(std::span(buffer_.data(), n), &why);
    if (!message) {
      log().debug("mdns: ignored a malformed packet from {}: {}", sender_.address().to_string(), why);
      return;
    }
    if (message->is_response()) {
      check_conflict(*message);
    } else if (!probing_ && announced_) {
      answer(*message);
    } else if (probing_) {
      check_probe_tie(*message);
    }
  }

  // A response claiming our instance name with other data: someone else has it.
  void check_conflict(const dns::Message& m) {
    const std::string ours = full_instance_name();
    const dns::Record srv = srv_record(kHostTtl), txt = txt_record(kOtherTtl);
    for (const auto* section : {&m.answers, &m.additionals}) {
      for (const auto& r : *section) {
        if (!dns::same_name(r.name, ours) || r.ttl == 0) continue;
        if ((r.type == dns::type_srv && r.same_data(srv)) || (r.type == dns::type_txt && r.same_data(txt)))
          continue;
        if (r.type != dns::type_srv && r.type != dns::type_txt) continue;
        if (probing_) {
          rename_after_conflict();
        } else {
          log().warn("mdns: another host also announces '{}' (from {}); keeping the name", instance_,
                     sender_.address().to_string());
        }
        return;
      }
    }
  }

  // Another host probing for the same name while we probe (§8.2): the simplification is to yield to it.
  void check_probe_tie(const dns::Message& m) {
    const std::string ours = full_instance_name();
    const dns::Record srv = srv_record(kHostTtl);
    for (const auto& r : m.authorities)
      if (dns::same_name(r.name, ours) && r.type == dns::type_srv && !r.same_data(srv)) {
        rename_after_conflict();
        return;
      }
  }

  void answer(const dns::Message& query) {
    const bool legacy = sender_.port() != kPort;  // §6.7: a one-shot querier on its own port
    std::optional<address_v4> peer;
    if (sender_.address().is_v4()) peer = sender_.address().to_v4();
    const std::string service = service_name(), instance = full_instance_name();
    dns::Message reply{.id = legacy ? query.id : std::uint16_t{0}, .flags = dns::flags_response};
    std::vector<dns::Record> additional;
    bool unicast = legacy;
    bool any_multicast_question = false;
    auto want = [](const dns::Question& q, std::uint16_t type) {
      return q.type == type || q.type == dns::type_any;
    };
    for (const auto& q : query.questions) {
      if (q.klass != dns::class_in && q.klass != 255) continue;
      const std::size_t before = reply.answers.size();
      if (want(q, dns::type_ptr) && dns::same_name(q.name, service)) {
        reply.answers.push_back(ptr_record(kOtherTtl));
        additional.push_back(srv_record(kHostTtl));
        additional.push_back(txt_record(kOtherTtl));
        for (auto& a : a_records(addresses_for(peer), kHostTtl)) additional.push_back(std::move(a));
      }
      if (want(q, dns::type_ptr) && dns::same_name(q.name, kServicesName))
        reply.answers.push_back(services_record(kOtherTtl));
      if (dns::same_name(q.name, instance)) {
        if (want(q, dns::type_srv)) {
          reply.answers.push_back(srv_record(kHostTtl));
          for (auto& a : a_records(addresses_for(peer), kHostTtl)) additional.push_back(std::move(a));
        }
        if (want(q, dns::type_txt)) reply.answers.push_back(txt_record(kOtherTtl));
      }
      if (want(q, dns::type_a) && dns::same_name(q.name, host_name_))
        for (auto& a : a_records(addresses_for(peer), kHostTtl)) reply.answers.push_back(std::move(a));
      if (reply.answers.size() > before) {
        if (legacy) reply.questions.push_back(q);
        if (!q.unicast_response) any_multicast_question = true;
      }
    }
    // Known-answer suppression (§7.1): what the querier already holds with at least half its TTL left.
    std::erase_if(reply.answers, [&](const dns::Record& r) {
      return std::any_of(query.answers.begin(), query.answers.end(), [&](const dns::Record& known) {
        return known.same_data(r) && known.ttl >= r.ttl / 2;
      });
    });
    if (reply.answers.empty()) return;
    for (auto& r : additional) {
      const auto dup = [&](const dns::Record& x) { return x.same_data(r); };
      if (std::none_of(reply.answers.begin(), reply.answers.end(), dup) &&
          std::none_of(reply.additionals.begin(), reply.additionals.end(), dup))
        reply.additionals.push_back(std::move(r));
    }
    if (!legacy && !any_multicast_question) unicast = true;  // every question was QU (§5.4)
    if (legacy) {
      for (auto* section : {&reply.answers, &reply.additionals})
        for (auto& r : *section) {
          r.ttl = std::min(r.ttl, kLegacyTtl);
          r.cache_flush = false;  // §6.7: legacy resolvers do not know the bit
        }
    }
    const auto packet = dns::encode(reply);
    if (unicast) {
      boost::system::error_code ec;
      socket_.send_to(asio::buffer(packet), sender_, 0, ec);
      return;
    }
    const Interface* via = nullptr;
    for (const auto& i : interfaces_)
      if (peer && same_subnet(i, *peer)) via = &i;
    if (via) {
      send_multicast(socket_, packet, *via);
    } else {
      for (const auto& i : interfaces_) send_multicast(socket_, packet, i);
    }
  }

  ServiceInfo service_;
  std::string host_name_;
  std::optional<address_v4> only_address_;
  std::vector<Interface> interfaces_;
  mutable std::mutex mutex_;  // instance_: written on the I/O thread, read by instance()
  std::string instance_;

  asio::io_context io_{1};
  udp::socket socket_;
  asio::steady_timer timer_;
  std::array<std::uint8_t, kMaxPacket> buffer_{};
  udp::endpoint sender_;
  int probes_sent_ = 0;
  int renames_ = 0;
  bool probing_ = false;
  bool announced_ = false;
  bool stopping_ = false;
  std::jthread thread_;  // last: started when everything else exists, joined before anything goes
};

// ------------------------------------------------------------------------------------------------ querier

struct Cached {
  dns::Record record;
  address_v4 from;
  Clock::time_point received;
};

class Querier {
 public:
  explicit Querier(std::string_view service_type)
      : service_(std::string(service_type) + ".local"),
        interfaces_(speaking_interfaces()),
        socket_(io_),
        timer_(io_) {
    if (interfaces_.empty())
      throw std::system_error(std::make_error_code(std::errc::network_down), "no IPv4 interface is up");
    try {
      open_socket(socket_, interfaces_, true);
    } catch (const std::system_error& e) {
      // Port 5353 unavailable (held exclusively by another stack): ask from our own port; responders then
      // answer by unicast.
      log().debug("mdns: querying from an ephemeral port ({})", e.what());
      boost::system::error_code ignored;
      socket_.close(ignored);
      open_socket(socket_, interfaces_, false);
      legacy_ = true;
    }
  }

  std::vector<Found> run(std::chrono::milliseconds wait) {
    deadline_ = Clock::now() + wait;
    receive();
    tick();
    io_.run_until(deadline_);
    return collect();
  }

 private:
  void receive() {
    socket_.async_receive_from(asio::buffer(buffer_), sender_,
                               [this](const boost::system::error_code& ec, std::size_t n) {
                                 if (ec) return;
                                 on_packet(n);
                                 receive();
                               });
  }

  void on_packet(std::size_t n) {
    const auto message = dns::decode(std::span(buffer_.data(), n));
    if (!message || !message->is_response() || !sender_.address().is_v4()) return;
    const address_v4 from = sender_.address().to_v4();
    for (const auto* section : {&message->answers, &message->additionals}) {
      for (const auto& r : *section) {
        if (r.type != dns::type_ptr && r.type != dns::type_srv && r.type != dns::type_txt &&
            r.type != dns::type_a && r.type != dns::type_aaaa)
          continue;
        // A goodbye removes its record; a unique record (cache-flush) replaces what we hold of its name and
        // type that is over a second old (§10.2: a host's several A records may come in several packets).
        const auto now = Clock::now();
        std::erase_if(cache_, [&](const Cached& c) {
          if (c.record.same_data(r)) return true;
          return r.ttl > 0 && r.cache_flush && c.record.type == r.type &&
                 dns::same_name(c.record.name, r.name) && now - c.received > std::chrono::seconds(1);
        });
        if (r.ttl > 0) cache_.push_back({r, from, now});
      }
    }
  }

  // Every 250 ms: the PTR question at 0 s and about every second, and follow-ups for what is missing.
  void tick() {
    const auto now = Clock::now();
    if (now >= deadline_) return;
    dns::Message q;
    if (now >= next_ptr_query_) {
      q.questions.push_back({.name = service_, .type = dns::type_ptr});
      for (const auto& c : cache_)  // known answers (§7.1)
        if (c.record.type == dns::type_ptr && dns::same_name(c.record.name, service_))
          q.answers.push_back(c.record);
      next_ptr_query_ = now + std::chrono::seconds(1) * (1 << std::min(ptr_queries_++, 3));
    }
    for (const auto& c : cache_) {
      if (c.record.type != dns::type_ptr || !dns::same_name(c.record.name, service_)) continue;
      const std::string& instance = c.record.target;
      for (const auto type : {dns::type_srv, dns::type_txt})
        if (!has(instance, type) && asked_.insert(instance + "/" + std::to_string(type)).second)
          q.questions.push_back({.name = instance, .type = type});
    }
    for (const auto& c : cache_) {
      if (c.record.type != dns::type_srv) continue;
      if (!has(c.record.target, dns::type_a) && asked_.insert(c.record.target + "/a").second)
        q.questions.push_back({.name = c.record.target, .type = dns::type_a});
    }
    if (!q.questions.empty()) {
      const auto packet = dns::encode(q);
      if (legacy_) {
        boost::system::error_code ec;
        socket_.send_to(asio::buffer(packet), udp::endpoint(kGroup, kPort), 0, ec);
      } else {
        for (const auto& i : interfaces_) send_multicast(socket_, packet, i);
      }
    }
    timer_.expires_after(std::chrono::milliseconds(250));
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) tick();
    });
  }

  bool has(const std::string& name, std::uint16_t type) const {
    return std::any_of(cache_.begin(), cache_.end(), [&](const Cached& c) {
      return c.record.type == type && dns::same_name(c.record.name, name);
    });
  }

  std::vector<Found> collect() const {
    std::vector<Found> out;
    std::set<std::string> seen;
    for (const auto& ptr : cache_) {
      if (ptr.record.type != dns::type_ptr || !dns::same_name(ptr.record.name, service_)) continue;
      const std::string& instance = ptr.record.target;
      if (!seen.insert(instance).second) continue;
      const Cached* srv = nullptr;
      for (const auto& c : cache_)
        if (c.record.type == dns::type_srv && dns::same_name(c.record.name, instance)) srv = &c;
      if (!srv) continue;  // no port: nothing to connect to
      Found f;
      f.instance = dns::first_label(instance);
      f.host = srv->record.target;
      f.port = srv->record.port;
      f.source = "builtin";
      f.ttl = std::min(ptr.record.ttl, srv->record.ttl);
      for (const auto& c : cache_) {
        if (c.record.type == dns::type_txt && dns::same_name(c.record.name, instance)) {
          f.ttl = std::min(f.ttl, c.record.ttl);
          for (const auto& s : c.record.txt) {
            const auto eq = s.find('=');
            if (eq == 0) continue;  // §6.4: no key
            const std::string key = s.substr(0, eq);
            if (!f.txt.contains(key)) f.txt[key] = eq == std::string::npos ? "" : s.substr(eq + 1);
          }
        }
      }
      std::vector<std::string> v4, v6;
      for (const auto& c : cache_) {
        if (!dns::same_name(c.record.name, f.host)) continue;
        if (c.record.type == dns::type_a) {
          std::array<unsigned char, 4> b{};
          std::copy(c.record.address.begin(), c.record.address.end(), b.begin());
          const std::string a = address_v4(b).to_string();
          // The address the answer came from first: it is on a network that reaches us.
          if (address_v4(b) == srv->from) {
            v4.insert(v4.begin(), a);
          } else {
            v4.push_back(a);
          }
        } else if (c.record.type == dns::type_aaaa) {
          std::array<unsigned char, 16> b{};
          std::copy(c.record.address.begin(), c.record.address.end(), b.begin());
          v6.push_back(asio::ip::address_v6(b).to_string());
        }
      }
      if (v4.empty() && v6.empty()) v4.push_back(srv->from.to_string());
      f.addresses = std::move(v4);
      f.addresses.insert(f.addresses.end(), v6.begin(), v6.end());
      out.push_back(std::move(f));
    }
    return out;
  }

  std::string service_;
  std::vector<Interface> interfaces_;
  asio::io_context io_{1};
  udp::socket socket_;
  asio::steady_timer timer_;
  std::array<std::uint8_t, kMaxPacket> buffer_{};
  udp::endpoint sender_;
  bool legacy_ = false;
  Clock::time_point deadline_;
  Clock::time_point next_ptr_query_{};
  int ptr_queries_ = 0;
  std::vector<Cached> cache_;
  std::set<std::string> asked_;
};

}  // namespace

std::vector<Interface> ipv4_interfaces() {
  std::vector<Interface> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (const ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP)) continue;
    const bool loopback = (i->ifa_flags & IFF_LOOPBACK) != 0;
    if (!loopback && !(i->ifa_flags & IFF_MULTICAST)) continue;
    Interface itf;
    itf.name = i->ifa_name;
    itf.loopback = loopback;
    const auto* a = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    itf.address = address_v4(ntohl(a->sin_addr.s_addr));
    if (i->ifa_netmask) {
      const auto* m = reinterpret_cast<const sockaddr_in*>(i->ifa_netmask);
      itf.netmask = address_v4(ntohl(m->sin_addr.s_addr));
    } else {
      itf.netmask = address_v4(0xffffff00u);
    }
    out.push_back(std::move(itf));
  }
  ::freeifaddrs(list);
  return out;
}

std::unique_ptr<Advertiser> start_responder(const ServiceInfo& service, const ResponderOptions& options) {
  return std::make_unique<Responder>(service, options);
}

std::vector<Found> query(std::chrono::milliseconds wait, std::string_view service_type) {
  Querier querier(service_type);
  return querier.run(wait);
}

}  // namespace clawbot::discovery::mdns
