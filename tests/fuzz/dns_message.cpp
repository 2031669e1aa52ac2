// The DNS message parser (src/discovery/dns_message.cpp): mDNS packets come from anyone on the LAN. Any
// bytes are a Message or nullopt with a reason, never a crash or an exception; a decoded message that can be
// encoded again decodes to the same questions and records.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <stdexcept>
#include <string>

#include "discovery/dns_message.h"
#include "seed_writer.h"

namespace {

using namespace clawbot::discovery;

bool same_records(const std::vector<dns::Record>& a, const std::vector<dns::Record>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!a[i].same_data(b[i]) || a[i].ttl != b[i].ttl || a[i].cache_flush != b[i].cache_flush) return false;
  return true;
}

// A DNS-SD answer as our responder sends it, and a query with the QU bit and a known answer.
void write_seeds(const std::filesystem::path& dir) {
  dns::Message m{.flags = dns::flags_response};
  dns::Record ptr{.name = "_clawbot._tcp.local", .type = dns::type_ptr, .ttl = 4500};
  ptr.target = "clawbot node on mini\\.lan._clawbot._tcp.local";
  dns::Record srv{.name = ptr.target, .type = dns::type_srv, .cache_flush = true, .ttl = 120};
  srv.target = "mini.local";
  srv.port = 5000;
  dns::Record txt{.name = ptr.target, .type = dns::type_txt, .cache_flush = true, .ttl = 4500};
  txt.txt = {"role=node", "model=stories260K", "api=/v1", "tls=no"};
  dns::Record a{.name = "mini.local", .type = dns::type_a, .cache_flush = true, .ttl = 120};
  a.address = {192, 168, 1, 100};
  dns::Record aaaa{.name = "mini.local", .type = dns::type_aaaa, .cache_flush = true, .ttl = 120};
  aaaa.address = std::vector<std::uint8_t>(16, 0);
  aaaa.address[0] = 0xfe;
  aaaa.address[15] = 1;
  dns::Record nsec{.name = "mini.local", .type = dns::type_nsec, .ttl = 120};
  nsec.rdata = {0xc0, 0x0c, 0x00, 0x01, 0x40};
  m.answers = {ptr, srv, txt};
  m.additionals = {a, aaaa, nsec};
  const auto write = [&](const char* name, const dns::Message& message) {
    const auto wire = dns::encode(message);
    clawbot::fuzz::write_file(dir / name,
                              std::string_view(reinterpret_cast<const char*>(wire.data()), wire.size()));
  };
  write("response", m);
  dns::Message q;
  q.questions = {
      dns::Question{.name = "_clawbot._tcp.local", .type = dns::type_ptr, .unicast_response = true}};
  q.answers = {ptr};
  write("query", q);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  clawbot::fuzz::write_seeds_if_asked(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string error;
  const auto message = dns::decode(std::span(data, size), &error);
  if (!message) {
    if (error.empty()) std::abort();  // a refusal names its reason
    return 0;
  }
  for (const auto& q : message->questions) {
    (void)dns::first_label(q.name);
    try {
      (void)dns::split_name(q.name);
    } catch (const std::invalid_argument&) {
    }
  }
  std::vector<std::uint8_t> wire;
  try {
    wire = dns::encode(*message);
  } catch (const std::invalid_argument&) {
    return 0;  // a name or string DNS cannot carry (decode is more lenient than encode)
  }
  const auto again = dns::decode(wire, &error);
  if (!again) std::abort();
  if (again->id != message->id || again->flags != message->flags ||
      again->questions.size() != message->questions.size())
    std::abort();
  for (std::size_t i = 0; i < message->questions.size(); ++i) {
    const auto& q1 = message->questions[i];
    const auto& q2 = again->questions[i];
    if (!dns::same_name(q1.name, q2.name) || q1.type != q2.type || q1.klass != q2.klass ||
        q1.unicast_response != q2.unicast_response)
      std::abort();
  }
  if (!same_records(message->answers, again->answers) ||
      !same_records(message->authorities, again->authorities) ||
      !same_records(message->additionals, again->additionals))
    std::abort();
  return 0;
}
