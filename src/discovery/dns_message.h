// DNS messages as multicast DNS (RFC 6762) and DNS-SD (RFC 6763) use them: encode and decode, with name
// compression both ways. Only what a DNS-SD responder and querier need is typed (A, AAAA, PTR, SRV, TXT);
// every other record keeps its rdata as bytes.
//
// Decoding treats every packet as hostile (anyone on the LAN can send one): every length and count is checked
// against the packet, compression pointers must point backwards (so they cannot loop), a name may not exceed
// 255 bytes, and a malformed packet yields nullopt with a reason, never a crash or an exception.
//
// Names are kept as dotted text without the trailing dot. A '.' or '\' inside a label (DNS-SD instance names
// may hold both: "clawbot on mini.lan") is escaped as "\." and "\\", as Avahi and dns-sd print them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace clawbot::discovery::dns {

enum RecordType : std::uint16_t {
  type_a = 1,
  type_ptr = 12,
  type_txt = 16,
  type_aaaa = 28,
  type_srv = 33,
  type_nsec = 47,
  type_any = 255,
};
constexpr std::uint16_t class_in = 1;
constexpr std::uint16_t flags_response = 0x8400;  // QR (a response) and AA (authoritative): every mDNS answer

struct Question {
  std::string name{};
  std::uint16_t type = type_any;
  std::uint16_t klass = class_in;
  bool unicast_response = false;  // mDNS "QU": the top bit of the class
};

struct Record {
  std::string name{};
  std::uint16_t type = 0;
  std::uint16_t klass = class_in;
  bool cache_flush = false;  // mDNS: the top bit of the class (a unique record replaces cached ones)
  std::uint32_t ttl = 0;     // seconds; 0 is a goodbye

  // rdata, by type
  std::string target{};                              // PTR: the name pointed to; SRV: the host
  std::uint16_t priority = 0, weight = 0, port = 0;  // SRV
  std::vector<std::string> txt{};                    // TXT: the character-strings ("key=value")
  std::vector<std::uint8_t> address{};               // A: 4 bytes; AAAA: 16
  std::vector<std::uint8_t> rdata{};                 // any other type, as received

  // Same owner, type, class and rdata (TTL and cache-flush aside): the test for conflicts and known answers.
  bool same_data(const Record& other) const;
};

struct Message {
  std::uint16_t id = 0;  // 0 in multicast; a legacy unicast query's id is echoed
  std::uint16_t flags = 0;
  std::vector<Question> questions{};
  std::vector<Record> answers{};
  std::vector<Record> authorities{};  // in a probe: the records the prober wants to own
  std::vector<Record> additionals{};

  bool is_response() const noexcept { return (flags & 0x8000) != 0; }
};

// The wire form, names compressed. Throws std::invalid_argument for a name that DNS cannot carry (a label
// over 63 bytes, an empty label, a name over 255 bytes) or a TXT string over 255 bytes.
std::vector<std::uint8_t> encode(const Message& message);

// nullopt (and the reason in *error when given) for anything malformed or truncated.
std::optional<Message> decode(std::span<const std::uint8_t> packet, std::string* error = nullptr);

// Names: escaping of single labels, and case-insensitive comparison (DNS names ignore ASCII case).
std::string escape_label(std::string_view label);
std::vector<std::string> split_name(std::string_view name);  // unescaped labels; throws std::invalid_argument
std::string first_label(std::string_view name);              // unescaped; the instance of a service name
bool same_name(std::string_view a, std::string_view b) noexcept;

}  // namespace clawbot::discovery::dns
