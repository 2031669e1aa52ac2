// The proxy's forwarding rules without I/O: the headers an upstream gets (hop-by-hop ones, those named in
// Connection, Expect and the client's X-Forwarded-For dropped; the real address set), origin-form targets
// only, Retry-After, and which stream events carry nothing yet.
#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "gateway/forward.h"

namespace gw = clawbot::gateway;
namespace bhttp = boost::beast::http;

namespace {

bool has_line(const std::string& lines, const std::string& line) {
  return ("\r\n" + lines).find("\r\n" + line + "\r\n") != std::string::npos;
}

bool names(const std::string& lines, const std::string& name) {
  std::string lower = "\n";
  for (const char c : lines) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string wanted = "\n";
  for (const char c : name) wanted += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower.find(wanted + ":") != std::string::npos;
}

}  // namespace

TEST(GatewayForward, HopByHopHeadersAndThoseNamedInConnectionStayHere) {
  bhttp::fields request;
  request.set("Host", "gateway.lan");
  request.set("Content-Type", "application/json");
  request.set("Content-Length", "42");
  request.set("Connection", "keep-alive, X-Secret-Hop ,x-other-hop");
  request.insert("Connection", "X-Third");
  request.set("X-Secret-Hop", "1");
  request.set("X-Other-Hop", "2");
  request.set("X-Third", "3");
  request.set("Keep-Alive", "timeout=5");
  request.set("Proxy-Connection", "keep-alive");
  request.set("TE", "trailers");
  request.set("Upgrade", "h2c");
  request.set("Expect", "100-continue");
  request.set("Authorization", "Bearer cbk_client_key");
  request.set("x-api-key", "cbk_client_key");
  request.set("Proxy-Authorization", "Basic eA==");
  request.set("X-Session-Id", "abc");
  request.set("X-Request-Id", "req-1");
  std::string lines;
  const auto request_id = gw::append_upstream_headers(lines, request, "10.1.2.3", false);
  EXPECT_EQ(request_id, "req-1");
  for (const char* gone :
       {"Host", "Content-Length", "Connection", "X-Secret-Hop", "X-Other-Hop", "X-Third", "Keep-Alive",
        "Proxy-Connection", "TE", "Upgrade", "Expect", "Authorization", "x-api-key", "Proxy-Authorization"})
    EXPECT_FALSE(names(lines, gone)) << gone << " was forwarded:\n" << lines;
  EXPECT_TRUE(has_line(lines, "Content-Type: application/json")) << lines;
  EXPECT_TRUE(has_line(lines, "X-Session-Id: abc")) << lines;
  EXPECT_TRUE(has_line(lines, "X-Request-Id: req-1")) << lines;
  EXPECT_TRUE(has_line(lines, "X-Forwarded-For: 10.1.2.3")) << lines;
  EXPECT_TRUE(has_line(lines, "X-Forwarded-Proto: http")) << lines;
}

TEST(GatewayForward, TheClientsOwnForwardingHeadersAreReplacedByTheRealAddress) {
  bhttp::fields request;
  request.set("X-Forwarded-For", "1.2.3.4");
  request.insert("X-Forwarded-For", "5.6.7.8");
  request.set("X-Forwarded-Proto", "https");
  request.set("X-Forwarded-Host", "evil.example");
  request.set("X-Real-IP", "1.2.3.4");
  request.set("Forwarded", "for=1.2.3.4");
  std::string lines;
  EXPECT_TRUE(gw::append_upstream_headers(lines, request, "::1", true).empty());
  EXPECT_EQ(lines, "X-Forwarded-For: ::1\r\nX-Forwarded-Proto: https\r\n");
}

TEST(GatewayForward, OnlyOriginFormTargetsGoUpstream) {
  EXPECT_TRUE(gw::forwardable_target("/v1/chat/completions"));
  EXPECT_TRUE(gw::forwardable_target("/v1/models?x=http://a"));
  EXPECT_FALSE(gw::forwardable_target("http://evil.example/v1/chat/completions"));
  EXPECT_FALSE(gw::forwardable_target("https://evil.example/"));
  EXPECT_FALSE(gw::forwardable_target("//evil.example/v1/models"));
  EXPECT_FALSE(gw::forwardable_target("evil.example:443"));
  EXPECT_FALSE(gw::forwardable_target("*"));
  EXPECT_FALSE(gw::forwardable_target(""));
}

TEST(GatewayForward, RetryAfterInSecondsCapped) {
  EXPECT_EQ(gw::retry_after("1"), gw::Clock::duration(std::chrono::seconds(1)));
  EXPECT_EQ(gw::retry_after(" 30 "), gw::Clock::duration(std::chrono::seconds(30)));
  EXPECT_EQ(gw::retry_after("0"), gw::Clock::duration(0));
  EXPECT_EQ(gw::retry_after("86400"), gw::Clock::duration(std::chrono::minutes(5)));
  EXPECT_EQ(gw::retry_after("99999999999999999999999"), gw::Clock::duration(std::chrono::minutes(5)));
  EXPECT_FALSE(gw::retry_after("-1"));
  EXPECT_FALSE(gw::retry_after("1.5"));
  EXPECT_FALSE(gw::retry_after(""));
  EXPECT_FALSE(gw::retry_after("Wed, 21 Oct 2015 07:28:00 GMT"));
}

TEST(GatewayForward, StreamEventsThatCarryNothingYet) {
  using gw::StreamEvent;
  // Our node's and llama-server's first chunk, an empty delta, a completions chunk with no text yet.
  EXPECT_EQ(gw::classify_stream_event(
                R"({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"finish_reason":null,)"
                R"("delta":{"role":"assistant","content":""},"logprobs":null}]})"),
            StreamEvent::preamble);
  EXPECT_EQ(gw::classify_stream_event(R"({"choices":[{"index":0,"delta":{"content":null}}]})"),
            StreamEvent::preamble);
  EXPECT_EQ(gw::classify_stream_event(R"({"choices":[{"index":0,"text":"","finish_reason":null}]})"),
            StreamEvent::preamble);
  // Anything that gives the client something.
  EXPECT_EQ(gw::classify_stream_event(R"({"choices":[{"index":0,"delta":{"content":"Hi"}}]})"),
            StreamEvent::other);
  EXPECT_EQ(gw::classify_stream_event(
                R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]})"),
            StreamEvent::other);
  EXPECT_EQ(gw::classify_stream_event(R"({"choices":[{"index":0,"delta":{},"finish_reason":"length"}]})"),
            StreamEvent::other);
  EXPECT_EQ(gw::classify_stream_event(R"({"choices":[],"usage":{"prompt_tokens":1}})"), StreamEvent::other);
  EXPECT_EQ(gw::classify_stream_event("[DONE]"), StreamEvent::other);
  EXPECT_EQ(gw::classify_stream_event("not json"), StreamEvent::other);
  EXPECT_EQ(gw::classify_stream_event(std::string(100000, '[') + std::string(100000, ']')),
            StreamEvent::other);
  // A node that gives up on the request before any content: our serve while it shuts down, llama-server's
  // 503 kind; other errors are the answer.
  EXPECT_EQ(
      gw::classify_stream_event(R"({"error":{"message":"the server is shutting down; retry on another node",)"
                                R"("type":"server_error","param":null,"code":"unavailable"}})"),
      StreamEvent::unavailable);
  EXPECT_EQ(
      gw::classify_stream_event(R"({"error":{"code":503,"message":"busy","type":"unavailable_error"}})"),
      StreamEvent::unavailable);
  EXPECT_EQ(
      gw::classify_stream_event(
          R"({"error":{"message":"prompt too long","type":"invalid_request_error","code":"context_length_exceeded"}})"),
      StreamEvent::other);
}
