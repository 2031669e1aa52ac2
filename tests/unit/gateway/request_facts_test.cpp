// The proxy's one-pass reading of request bodies and its targeted scan for usage.
#include "gateway/request_facts.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace clawbot::gateway {
namespace {

TEST(GatewayRequestFacts, ReadsModelStreamAndStreamOptions) {
  auto f =
      scan_request(R"({"model":"m1","stream":true,"stream_options":{"include_usage":true},"messages":[]})");
  EXPECT_TRUE(f.valid);
  EXPECT_EQ(f.model, "m1");
  EXPECT_TRUE(f.stream);
  EXPECT_TRUE(f.has_stream_options);
  EXPECT_TRUE(f.include_usage);
  f = scan_request(R"({"model":"m2","messages":[{"role":"user","content":"hi"}]})");
  EXPECT_FALSE(f.stream);
  EXPECT_FALSE(f.has_stream_options);
  // A nested "model" or "stream" (inside a message) is not the request's.
  f = scan_request(
      R"({"messages":[{"role":"user","content":"x","model":"no","stream":true}],"model":"yes"})");
  EXPECT_EQ(f.model, "yes");
  EXPECT_FALSE(f.stream);
}

TEST(GatewayRequestFacts, RejectsWhatIsNotOneObject) {
  EXPECT_FALSE(scan_request("").valid);
  EXPECT_FALSE(scan_request("[1,2]").valid);
  EXPECT_FALSE(scan_request(R"({"model":"m")").valid);
  EXPECT_FALSE(scan_request("not json").valid);
  EXPECT_EQ(scan_request(R"({"model":"m")").affinity, 0u);
}

TEST(GatewayRequestFacts, ChecksTheJsonSyntaxOfTheWholeBody) {
  EXPECT_TRUE(
      scan_request(R"( {"a":[1,-2.5e3,0,true,false,null,{"b":{}},[]],"c":"\"\\\/\b\f\n\r\t\u00e9"} )").valid);
  for (const char* bad : {R"({"a":1} x)", R"({"a":01})", R"({"a":1.})", R"({"a":-})", R"({"a":tru})",
                          R"({"a":"\x"})", R"({"a":"\u12"})", "{\"a\":\"tab\there\"}", R"({"a":[1,]})",
                          R"({"a":1,})", R"({a:1})", R"({"a" 1})", R"({"a":[1 2]})"})
    EXPECT_FALSE(scan_request(bad).valid) << bad;
  // Deep nesting is refused, not a stack overflow.
  EXPECT_FALSE(scan_request("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}").valid);
}

TEST(GatewayRequestFacts, DecodesEscapedStringsAndKeys) {
  auto f = scan_request(R"({"mod\u0065l":"m\u0031\ud83d\ude00","stream":true})");
  EXPECT_TRUE(f.valid);
  EXPECT_EQ(f.model, "m1\xf0\x9f\x98\x80");
  EXPECT_TRUE(f.stream);
  // The last of two equal keys wins, as in a parse.
  EXPECT_EQ(scan_request(R"({"model":"a","model":"b"})").model, "b");
  // Only the top level's stream_options counts.
  f = scan_request(R"({"x":{"stream_options":{"include_usage":true}},"stream":true})");
  EXPECT_FALSE(f.has_stream_options);
  EXPECT_FALSE(f.include_usage);
}

TEST(GatewayRequestFacts, AffinityIgnoresWhiteSpaceOutsideStrings) {
  const auto compact = scan_request(R"({"model":"m","messages":[{"role":"user","content":"a b"}]})");
  const auto spaced = scan_request(
      "{ \"model\" : \"m\",\n \"messages\" : [ { \"role\": \"user\", \"content\": \"a b\" } ] }");
  const auto inner = scan_request(R"({"model":"m","messages":[{"role":"user","content":"ab"}]})");
  EXPECT_EQ(compact.affinity, spaced.affinity);
  EXPECT_NE(compact.affinity, inner.affinity);
}

TEST(GatewayRequestFacts, AffinityFollowsTheLeadingMessagesNotTheLaterTurns) {
  const std::string lead =
      R"({"role":"system","content":"Be brief."},{"role":"user","content":"Tell me about Kyoto"})";
  const auto turn1 = scan_request(R"({"model":"m","messages":[)" + lead + "]}");
  const auto turn3 =
      scan_request(R"({"model":"m","messages":[)" + lead +
                   R"(,{"role":"assistant","content":"It is old."},{"role":"user","content":"More"}]})");
  const auto other = scan_request(R"({"model":"m","messages":[{"role":"system","content":"Be brief."},)"
                                  R"({"role":"user","content":"Tell me about Osaka"}]})");
  const auto other_model = scan_request(R"({"model":"n","messages":[)" + lead + "]}");
  EXPECT_NE(turn1.affinity, 0u);
  EXPECT_EQ(turn1.affinity, turn3.affinity);
  EXPECT_NE(turn1.affinity, other.affinity);
  EXPECT_NE(turn1.affinity, other_model.affinity);
  // Events are separated: moving text between two fields changes the key.
  EXPECT_NE(scan_request(R"({"messages":[{"a":"bc"}]})").affinity,
            scan_request(R"({"messages":[{"ab":"c"}]})").affinity);
  // A session header names the conversation outright.
  EXPECT_EQ(scan_request(R"({"messages":[{"role":"user","content":"a"}]})", "s1").affinity,
            scan_request(R"({"messages":[{"role":"user","content":"b"}]})", "s1").affinity);
  // Completions: the start of the prompt; no messages, prompt or user: none.
  EXPECT_NE(scan_request(R"({"prompt":"Once upon a time"})").affinity, 0u);
  EXPECT_EQ(scan_request(R"({"model":"m","input":"embed me"})").affinity, 0u);
}

TEST(GatewayRequestFacts, AddsUsageToAStreamRequestAsValidJson) {
  for (const std::string body : {R"({"stream":true,"model":"m"})", R"(  {"stream":true})", "{}", "{ }"}) {
    const auto out = nlohmann::json::parse(with_usage_requested(body));
    EXPECT_EQ(out["stream_options"]["include_usage"], true) << body;
  }
  const auto out = nlohmann::json::parse(with_usage_requested(R"({"stream":true,"model":"m"})"));
  EXPECT_EQ(out["model"], "m");
  EXPECT_EQ(out["stream"], true);
}

TEST(GatewayRequestFacts, FindsUsageWhereverItIsAndOnlyAsAKey) {
  std::int64_t in = -1, out = -1;
  ASSERT_TRUE(find_usage(
      R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}})", in, out));
  EXPECT_EQ(in, 12);
  EXPECT_EQ(out, 34);
  // Nested details and spacing.
  in = out = -1;
  ASSERT_TRUE(find_usage(R"({"usage" : { "prompt_tokens" : 5, "prompt_tokens_details": {"cached_tokens": 3},)"
                         R"( "completion_tokens": 7, "completion_tokens_details": {"reasoning_tokens": 1}}})",
                         in, out));
  EXPECT_EQ(in, 5);
  EXPECT_EQ(out, 7);
  // "usage" inside a string, and a null usage, are not usage.
  in = out = -1;
  EXPECT_FALSE(find_usage(R"({"content":"the \"usage\": {\"prompt_tokens\": 9}"})", in, out));
  EXPECT_FALSE(find_usage(R"({"usage":null})", in, out));
  EXPECT_FALSE(find_usage(R"({"usage":{"prompt_tokens":1.5}})", in, out));
  EXPECT_FALSE(find_usage(R"({"usage":{"prompt_tokens":3)", in, out));  // cut off
  EXPECT_EQ(in, -1);
  EXPECT_EQ(out, -1);
}

}  // namespace
}  // namespace clawbot::gateway
