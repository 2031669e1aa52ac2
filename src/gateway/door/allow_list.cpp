// The IP allow-list: IPv4 and IPv6 CIDRs, checked against the client's address on every connection.
#include <charconv>
#include <stdexcept>

#include "common/text.h"
#include "gateway/door/door.h"

namespace clawbot::gateway::door {

namespace {

// ::ffff:a.b.c.d as the IPv4 address it carries.
boost::asio::ip::address unmapped(const boost::asio::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6());
  return address;
}

bool prefix_matches(const unsigned char* rule, const unsigned char* address, int prefix) {
  const int whole = prefix / 8;
  for (int i = 0; i < whole; ++i)
    if (rule[i] != address[i]) return false;
  const int rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (rule[whole] & mask) == (address[whole] & mask);
}

}  // namespace

AllowList AllowList::parse(const std::vector<std::string>& cidrs) {
  AllowList list;
  for (const std::string& entry : cidrs) {
    const std::string_view text = text::trim(entry, text::blanks);
    const auto bad = [&entry](const std::string& why) { return std::invalid_argument(entry + ": " + why); };
    if (text.empty())
      throw std::invalid_argument(
          "\"" + entry + "\": an empty allow-list entry (write an address or a CIDR such as 192.168.1.0/24)");
    const std::size_t slash = text.find('/');
    const std::string address_text(text.substr(0, slash));
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(address_text, ec);
    if (ec)
      throw bad(
          "'" + address_text +
          "' is not an IPv4 or IPv6 address (write an address or a CIDR such as 192.168.1.0/24 or fd00::/8)");
    Rule rule;
    int max_prefix = address.is_v6() ? 128 : 32;
    rule.prefix = max_prefix;
    if (slash != std::string_view::npos) {
      const std::string_view prefix_text = text.substr(slash + 1);
      int prefix = -1;
      const auto [end, error] =
          std::from_chars(prefix_text.data(), prefix_text.data() + prefix_text.size(), prefix);
      if (prefix_text.empty() || error != std::errc() || end != prefix_text.data() + prefix_text.size() ||
          prefix < 0)
        throw bad("the prefix '" + std::string(prefix_text) + "' is not a number from 0 to " +
                  std::to_string(max_prefix));
      if (prefix > max_prefix) throw bad("prefix longer than " + std::to_string(max_prefix));
      rule.prefix = prefix;
    }
    // A rule inside ::ffff:0:0/96 is an IPv4 rule written the IPv6 way.
    if (address.is_v6() && address.to_v6().is_v4_mapped() && rule.prefix >= 96) {
      address = unmapped(address);
      rule.prefix -= 96;
    }
    rule.v6 = address.is_v6();
    if (rule.v6) {
      const auto bytes = address.to_v6().to_bytes();
      std::copy(bytes.begin(), bytes.end(), rule.bytes);
    } else {
      const auto bytes = address.to_v4().to_bytes();
      std::copy(bytes.begin(), bytes.end(), rule.bytes);
    }
    list.rules_.push_back(rule);
  }
  return list;
}

bool AllowList::allows(const boost::asio::ip::address& client) const noexcept {
  if (rules_.empty()) return true;
  const auto address = unmapped(client);
  unsigned char bytes[16] = {};
  if (address.is_v6()) {
    const auto b = address.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), bytes);
  } else {
    const auto b = address.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), bytes);
  }
  for (const Rule& rule : rules_)
    if (rule.v6 == address.is_v6() && prefix_matches(rule.bytes, bytes, rule.prefix)) return true;
  return false;
}

}  // namespace clawbot::gateway::door
