// DNS messages for mDNS/DNS-SD: round trips, name compression (ours and others'), and hostile packets.
#include "discovery/dns_message.h"

#include <gtest/gtest.h>

#include <random>

namespace dns = clawbot::discovery::dns;
using Bytes = std::vector<std::uint8_t>;

namespace {

dns::Message sample_response() {
  dns::Message m{.flags = dns::flags_response};
  dns::Record ptr{.name = "_clawbot._tcp.local", .type = dns::type_ptr, .ttl = 4500};
  ptr.target = "clawbot node on mini\\.lan._clawbot._tcp.local";
  dns::Record srv{.name = ptr.target, .type = dns::type_srv, .cache_flush = true, .ttl = 120};
  srv.target = "mini.local";
  srv.port = 5000;
  dns::Record txt{.name = ptr.target, .type = dns::type_txt, .cache_flush = true, .ttl = 4500};
  txt.txt = {"role=node", "model=stories260K", "api=/v1", "tls=no", "auth=no", "version=0.1.0"};
  dns::Record a{.name = "mini.local", .type = dns::type_a, .cache_flush = true, .ttl = 120};
  a.address = {192, 168, 1, 100};
  dns::Record aaaa{.name = "mini.local", .type = dns::type_aaaa, .cache_flush = true, .ttl = 120};
  aaaa.address = Bytes(16, 0);
  aaaa.address[0] = 0xfe;
  aaaa.address[1] = 0x80;
  aaaa.address[15] = 1;
  dns::Record nsec{.name = "mini.local", .type = dns::type_nsec, .ttl = 120};
  nsec.rdata = {0xc0, 0x0c, 0x00, 0x01, 0x40};
  m.answers = {ptr, srv, txt};
  m.additionals = {a, aaaa, nsec};
  return m;
}

void expect_same(const dns::Message& a, const dns::Message& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.flags, b.flags);
  ASSERT_EQ(a.questions.size(), b.questions.size());
  for (std::size_t i = 0; i < a.questions.size(); ++i) {
    EXPECT_EQ(a.questions[i].name, b.questions[i].name);
    EXPECT_EQ(a.questions[i].type, b.questions[i].type);
    EXPECT_EQ(a.questions[i].unicast_response, b.questions[i].unicast_response);
  }
  for (auto [x, y] : {std::pair{&a.answers, &b.answers}, std::pair{&a.authorities, &b.authorities},
                      std::pair{&a.additionals, &b.additionals}}) {
    ASSERT_EQ(x->size(), y->size());
    for (std::size_t i = 0; i < x->size(); ++i) {
      EXPECT_TRUE((*x)[i].same_data((*y)[i])) << (*x)[i].name << " type " << (*x)[i].type;
      EXPECT_EQ((*x)[i].ttl, (*y)[i].ttl);
      EXPECT_EQ((*x)[i].cache_flush, (*y)[i].cache_flush);
      EXPECT_EQ((*x)[i].name, (*y)[i].name);  // exact text, escapes included
    }
  }
}

// A label as wire bytes.
void label(Bytes& out, std::string_view text) {
  out.push_back(static_cast<std::uint8_t>(text.size()));
  out.insert(out.end(), text.begin(), text.end());
}

Bytes header(std::uint16_t qd, std::uint16_t an, std::uint16_t flags = 0x8400) {
  return {0,
          0,
          static_cast<std::uint8_t>(flags >> 8),
          static_cast<std::uint8_t>(flags),
          0,
          static_cast<std::uint8_t>(qd),
          0,
          static_cast<std::uint8_t>(an),
          0,
          0,
          0,
          0};
}

}  // namespace

TEST(DnsMessage, ResponseRoundTrips) {
  const dns::Message m = sample_response();
  const Bytes wire = dns::encode(m);
  std::string error;
  const auto back = dns::decode(wire, &error);
  ASSERT_TRUE(back) << error;
  expect_same(m, *back);
  EXPECT_TRUE(back->is_response());
  EXPECT_EQ(back->answers[0].target, "clawbot node on mini\\.lan._clawbot._tcp.local");
  EXPECT_EQ(dns::first_label(back->answers[0].target), "clawbot node on mini.lan");
}

TEST(DnsMessage, QueryRoundTripsWithQuBitAndKnownAnswers) {
  dns::Message q;
  q.id = 0x1234;
  q.questions = {{.name = "_clawbot._tcp.local", .type = dns::type_ptr, .unicast_response = true},
                 {.name = "mini.local", .type = dns::type_a}};
  q.answers = {sample_response().answers[0]};
  const auto back = dns::decode(dns::encode(q));
  ASSERT_TRUE(back);
  expect_same(q, *back);
  EXPECT_FALSE(back->is_response());
}

TEST(DnsMessage, EncodingCompressesRepeatedSuffixes) {
  const dns::Message m = sample_response();
  std::size_t plain = 12;
  for (const auto* s : {&m.answers, &m.additionals})
    for (const auto& r : *s) plain += r.name.size() + 2 + 10 + 64;  // generous: uncompressed names and rdata
  const Bytes wire = dns::encode(m);
  EXPECT_LT(wire.size(), plain / 2) << "names repeated six times should mostly be pointers";
  // "local" is spelled out twice only: in the first name, and in the SRV target (never compressed, RFC 2782),
  // which the A records then point to.
  const std::string text(wire.begin(), wire.end());
  std::size_t count = 0;
  for (auto at = text.find("local"); at != std::string::npos; at = text.find("local", at + 1)) ++count;
  EXPECT_EQ(count, 2u);
  EXPECT_EQ(text.find("_clawbot"), text.rfind("_clawbot"));
}

TEST(DnsMessage, NamesCompareWithoutCaseAndTrailingDot) {
  EXPECT_TRUE(dns::same_name("Mini.LOCAL.", "mini.local"));
  EXPECT_FALSE(dns::same_name("mini.local", "mini2.local"));
  EXPECT_EQ(dns::split_name("a\\.b.c").size(), 2u);
  EXPECT_EQ(dns::escape_label("x.y\\z"), "x\\.y\\\\z");
}

TEST(DnsMessage, DecodesCompressionPointersOfOtherStacks) {
  // An answer as Avahi writes it: PTR _clawbot._tcp.local -> "n" + pointer to the owner name.
  Bytes p = header(0, 1);
  const std::size_t owner = p.size();  // 12
  label(p, "_clawbot");
  label(p, "_tcp");
  label(p, "local");
  p.push_back(0);
  p.insert(p.end(), {0, 12, 0, 1, 0, 0, 0x11, 0x94});  // PTR, IN, TTL 4500
  p.insert(p.end(), {0, 4});                           // rdlength: "n" (2) + pointer (2)
  label(p, "n");
  p.insert(p.end(), {0xC0, static_cast<std::uint8_t>(owner)});
  std::string error;
  const auto m = dns::decode(p, &error);
  ASSERT_TRUE(m) << error;
  ASSERT_EQ(m->answers.size(), 1u);
  EXPECT_EQ(m->answers[0].name, "_clawbot._tcp.local");
  EXPECT_EQ(m->answers[0].target, "n._clawbot._tcp.local");
  EXPECT_EQ(m->answers[0].ttl, 4500u);
}

TEST(DnsMessage, RejectsPointerLoops) {
  // The question's name is a pointer to itself.
  Bytes self = header(1, 0, 0);
  self.insert(self.end(), {0xC0, 12, 0, 1, 0, 1});
  std::string error;
  EXPECT_FALSE(dns::decode(self, &error));
  EXPECT_NE(error.find("pointer"), std::string::npos) << error;

  // Two pointers pointing at each other: the second points forwards.
  Bytes pair = header(2, 0, 0);
  pair.insert(pair.end(), {0xC0, 18, 0, 1, 0, 1});  // name at 12 -> 18
  pair.insert(pair.end(), {0xC0, 12, 0, 1, 0, 1});  // name at 18 -> 12
  EXPECT_FALSE(dns::decode(pair));

  // A label that runs into a pointer back to its own start.
  Bytes run = header(1, 0, 0);
  label(run, "a");
  run.insert(run.end(), {0xC0, 12, 0, 1, 0, 1});
  EXPECT_FALSE(dns::decode(run));
}

TEST(DnsMessage, RejectsMalformedPackets) {
  const Bytes good = dns::encode(sample_response());
  // Every truncation of a good packet fails cleanly.
  for (std::size_t n = 0; n < good.size(); ++n) {
    std::string error;
    EXPECT_FALSE(dns::decode(std::span(good.data(), n), &error)) << "prefix of " << n << " bytes decoded";
    EXPECT_FALSE(error.empty());
  }
  // Counts larger than the packet can hold.
  Bytes liar = header(0, 0xffff);
  EXPECT_FALSE(dns::decode(liar));
  // A label type that does not exist (0x40).
  Bytes bad_label = header(1, 0, 0);
  bad_label.insert(bad_label.end(), {0x41, 'a', 0, 0, 1, 0, 1});
  EXPECT_FALSE(dns::decode(bad_label));
  // A name over 255 bytes.
  Bytes long_name = header(1, 0, 0);
  for (int i = 0; i < 5; ++i) label(long_name, std::string(60, 'x'));
  long_name.insert(long_name.end(), {0, 0, 1, 0, 1});
  EXPECT_FALSE(dns::decode(long_name));
  // An A record of 3 bytes, and a TXT string longer than its record.
  for (const auto& [type, rdata] : {std::pair<std::uint8_t, Bytes>{1, {1, 2, 3}}, {16, {9, 'a', 'b'}}}) {
    Bytes p = header(0, 1);
    label(p, "x");
    p.push_back(0);
    p.insert(p.end(), {0, type, 0, 1, 0, 0, 0, 10, 0, static_cast<std::uint8_t>(rdata.size())});
    p.insert(p.end(), rdata.begin(), rdata.end());
    EXPECT_FALSE(dns::decode(p)) << "type " << int(type);
  }
}

TEST(DnsMessage, SurvivesRandomCorruption) {
  const Bytes good = dns::encode(sample_response());
  std::mt19937 rng(42);
  int decoded = 0;
  for (int round = 0; round < 20000; ++round) {
    Bytes p = good;
    const int flips = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < flips; ++i) p[rng() % p.size()] = static_cast<std::uint8_t>(rng());
    if (rng() % 4 == 0) p.resize(rng() % p.size());
    if (const auto m = dns::decode(p)) {
      ++decoded;
      (void)dns::encode(*m);  // what decodes must also encode (or throw invalid_argument, never crash)
    }
  }
  EXPECT_GT(decoded, 0);  // some corruptions only touch TTLs or text: still valid
}

TEST(DnsMessage, EncodeRefusesWhatDnsCannotCarry) {
  dns::Message m;
  m.questions = {{.name = std::string(64, 'x') + ".local"}};
  EXPECT_THROW(dns::encode(m), std::invalid_argument);
  m.questions = {{.name = "a..local"}};
  EXPECT_THROW(dns::encode(m), std::invalid_argument);
  dns::Record txt{.name = "x.local", .type = dns::type_txt};
  txt.txt = {std::string(256, 'y')};
  dns::Message big{.flags = dns::flags_response, .answers = {txt}};
  EXPECT_THROW(dns::encode(big), std::invalid_argument);
}

TEST(DnsMessage, EmptyTxtIsOneEmptyString) {
  dns::Record txt{.name = "x.local", .type = dns::type_txt, .ttl = 1};
  const Bytes wire = dns::encode({.flags = dns::flags_response, .answers = {txt}});
  ASSERT_GE(wire.size(), 1u);
  EXPECT_EQ(wire.back(), 0);
  EXPECT_EQ(wire[wire.size() - 2], 1);  // rdlength 1
  const auto back = dns::decode(wire);
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->answers[0].txt.empty());
}
