#include <gtest/gtest.h>

#include "gateway/door/door.h"

namespace door = clawbot::gateway::door;
using boost::asio::ip::make_address;

namespace {

std::string parse_error(const std::vector<std::string>& cidrs) {
  try {
    door::AllowList::parse(cidrs);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST(GatewayAllowList, EmptyAllowsEveryone) {
  const auto list = door::AllowList::parse({});
  EXPECT_TRUE(list.empty());
  EXPECT_TRUE(list.allows(make_address("203.0.113.9")));
  EXPECT_TRUE(list.allows(make_address("2001:db8::1")));
}

TEST(GatewayAllowList, Ipv4Cidrs) {
  const auto list = door::AllowList::parse({"192.168.1.0/24", " 10.1.2.3 ", "172.16.0.0/12"});
  EXPECT_EQ(list.size(), 3u);
  EXPECT_TRUE(list.allows(make_address("192.168.1.0")));
  EXPECT_TRUE(list.allows(make_address("192.168.1.255")));
  EXPECT_FALSE(list.allows(make_address("192.168.2.1")));
  EXPECT_TRUE(list.allows(make_address("10.1.2.3")));  // a bare address is a /32
  EXPECT_FALSE(list.allows(make_address("10.1.2.4")));
  EXPECT_TRUE(list.allows(make_address("172.31.255.255")));
  EXPECT_FALSE(list.allows(make_address("172.32.0.0")));
  EXPECT_FALSE(list.allows(make_address("::1")));
}

TEST(GatewayAllowList, Ipv6CidrsAndMappedClients) {
  const auto list = door::AllowList::parse({"::1/128", "fd00:ab::/32", "127.0.0.0/8"});
  EXPECT_TRUE(list.allows(make_address("::1")));
  EXPECT_FALSE(list.allows(make_address("::2")));
  EXPECT_TRUE(list.allows(make_address("fd00:ab:ffff::7")));
  EXPECT_FALSE(list.allows(make_address("fd00:ac::7")));
  // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: they match the IPv4 rule.
  EXPECT_TRUE(list.allows(make_address("::ffff:127.0.0.2")));
  EXPECT_FALSE(list.allows(make_address("::ffff:128.0.0.1")));
  EXPECT_TRUE(list.allows(make_address("127.0.0.2")));
}

TEST(GatewayAllowList, MappedRulesMatchIpv4ClientsAndHostBitsAreIgnored) {
  const auto list = door::AllowList::parse({"::ffff:192.168.5.0/120", "10.9.8.7/16", "0.0.0.0/0"});
  EXPECT_TRUE(list.allows(make_address("192.168.5.77")));
  EXPECT_TRUE(list.allows(make_address("10.9.0.1")));
  const auto narrow = door::AllowList::parse({"::ffff:192.168.5.0/120", "10.9.8.7/16"});
  EXPECT_TRUE(narrow.allows(make_address("192.168.5.77")));
  EXPECT_FALSE(narrow.allows(make_address("192.168.6.77")));
  EXPECT_TRUE(narrow.allows(make_address("10.9.200.1")));
  EXPECT_FALSE(narrow.allows(make_address("10.10.0.1")));
  // /0 of one family admits all of it, and none of the other.
  const auto all_v4 = door::AllowList::parse({"0.0.0.0/0"});
  EXPECT_TRUE(all_v4.allows(make_address("8.8.8.8")));
  EXPECT_FALSE(all_v4.allows(make_address("2001:db8::1")));
}

TEST(GatewayAllowList, BadEntriesAreNamedWithTheReason) {
  EXPECT_EQ(parse_error({"10.0.0.0/8", "192.168.1.0/33"}), "192.168.1.0/33: prefix longer than 32");
  EXPECT_EQ(parse_error({"fd00::/129"}), "fd00::/129: prefix longer than 128");
  EXPECT_NE(parse_error({"300.1.1.1"}).find("300.1.1.1: '300.1.1.1' is not an IPv4 or IPv6 address"),
            std::string::npos);
  EXPECT_NE(parse_error({"10.0.0.0/x"}).find("10.0.0.0/x: the prefix 'x' is not a number from 0 to 32"),
            std::string::npos);
  EXPECT_NE(parse_error({"10.0.0.0/"}).find("is not a number"), std::string::npos);
  EXPECT_NE(parse_error({"10.0.0.0/-1"}).find("is not a number"), std::string::npos);
  EXPECT_NE(parse_error({"10.0.0.0/8/9"}).find("10.0.0.0/8/9"), std::string::npos);
  EXPECT_NE(parse_error({"localhost"}).find("not an IPv4 or IPv6 address"), std::string::npos);
  EXPECT_NE(parse_error({""}).find("empty"), std::string::npos);
}
