// The HTTP server against hostile and unusual clients, over raw sockets: Expect: 100-continue, the header
// check, request framing that proxies read differently, unbounded chunk headers and trailers, slow clients,
// connections per client, HEAD.
#include "common/http_server.h"

#include <gtest/gtest.h>

#include <string>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "../support/run_async.h"

namespace clawbot::http {
namespace {

using json = nlohmann::json;
using tcp = asio::ip::tcp;
using asio::use_awaitable;
using clawbot::testing::run_async;
using namespace std::chrono_literals;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::shared_ptr<Router> echo_router() {
  auto router = std::make_shared<Router>();
  // The body's size and whether an Expect header reached the handler.
  router->add(Verb::post, "/echo", [](Exchange& ex) -> asio::awaitable<void> {
    const json body = {{"size", ex.request().body().size()},
                       {"expect", ex.request().find(beast::http::field::expect) != ex.request().end()}};
    co_await ex.respond_json(200, body);
  });
  router->add(Verb::head, "/echo", [](Exchange& ex) -> asio::awaitable<void> {
    co_await ex.respond_text(200, "twelve bytes", "text/plain");
  });
  // Two NDJSON lines; the session ends the body.
  router->add(Verb::get, "/lines", [](Exchange& ex) -> asio::awaitable<void> {
    if (!co_await ex.ndjson_start()) co_return;
    if (!co_await ex.ndjson_line(R"({"n":1})")) co_return;
    co_await ex.ndjson_line(R"({"n":2,"done":true})");
  });
  return router;
}

asio::awaitable<void> pause(asio::io_context& io, std::chrono::milliseconds ms) {
  asio::steady_timer timer(io, ms);
  co_await timer.async_wait(use_tuple);
}

// A raw client: what it sent, and what came back until the server closed (`closed`) or `wait` passed.
struct RawClient {
  beast::tcp_stream stream;
  std::string received;
  bool closed = false;

  explicit RawClient(asio::io_context& io) : stream(io) {}

  asio::awaitable<void> connect(unsigned short port) {
    co_await stream.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), use_awaitable);
  }
  // False once the server has closed (a write fails).
  asio::awaitable<bool> send(std::string_view bytes) {
    auto [ec, n] = co_await asio::async_write(stream, asio::buffer(bytes.data(), bytes.size()), use_tuple);
    co_return !ec;
  }
  // What has come, without waiting (`closed` once the server has closed).
  void poll() {
    auto& socket = stream.socket();
    socket.non_blocking(true);
    std::array<char, 4096> chunk{};
    for (;;) {
      beast::error_code ec;
      const std::size_t n = socket.read_some(asio::buffer(chunk), ec);
      received.append(chunk.data(), n);
      if (ec == asio::error::would_block) break;
      if (ec) {
        closed = true;
        break;
      }
    }
    socket.non_blocking(false);
  }
  // Reads until `marker` is in `received`, the server closes, or `wait` passes (then the socket is closed).
  asio::awaitable<void> read_until(std::string_view marker, std::chrono::milliseconds wait) {
    std::array<char, 4096> chunk{};
    stream.expires_after(wait);
    while (!closed && received.find(marker) == std::string::npos) {
      auto [ec, n] = co_await stream.async_read_some(asio::buffer(chunk), use_tuple);
      received.append(chunk.data(), n);
      if (ec == beast::error::timeout) break;
      if (ec) closed = true;
    }
    stream.expires_never();
  }
  asio::awaitable<void> read_to_close(std::chrono::milliseconds wait) {
    co_await read_until(std::string_view("\x01never\x01"), wait);
  }
};

// Sends `request` on a fresh connection and returns all that came back before the server closed (or 3 s).
asio::awaitable<std::string> one_shot(asio::io_context& io, unsigned short port, std::string request) {
  RawClient client(io);
  co_await client.connect(port);
  co_await client.send(request);
  co_await client.read_to_close(3000ms);
  co_return client.received;
}

TEST(ServerTest, ExpectContinueIsAnsweredAndNotPassedOn) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, echo_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0);
    RawClient client(io);
    co_await client.connect(port);
    co_await client.send(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    co_await client.read_until("\r\n\r\n", 2000ms);
    EXPECT_EQ(client.received, "HTTP/1.1 100 Continue\r\n\r\n");  // before the body: the client waits for it
    client.received.clear();
    co_await client.send("hello");
    co_await client.read_until("}", 2000ms);
    EXPECT_TRUE(client.received.starts_with("HTTP/1.1 200 OK\r\n")) << client.received;
    EXPECT_NE(client.received.find(R"({"expect":false,"size":5})"), std::string::npos) << client.received;

    // Anything but 100-continue: 417.
    const auto other = co_await one_shot(
        io, port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: teapot\r\n\r\nx");
    EXPECT_TRUE(other.starts_with("HTTP/1.1 417 ")) << other;
    server.stop();
  });
}

TEST(ServerTest, HeaderCheckRefusesBeforeTheBody) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, echo_router(), ServerLimits{});
    int refused_seen = 0;
    server.set_header_check(
        [](const RequestHead& head, const asio::ip::address& remote) -> std::optional<Error> {
          EXPECT_TRUE(remote.is_loopback());
          if (head["X-Key"] == "good") return std::nullopt;
          return Error{ErrorKind::unauthorized, "no good key", {}, "invalid_api_key"};
        },
        [&refused_seen](Exchange& ex) -> asio::awaitable<void> {
          ++refused_seen;
          EXPECT_TRUE(ex.request().body().empty());
          co_await ex.respond_error(*ex.refusal());
        });
    const auto port = server.listen("127.0.0.1", 0);

    // A client that waits for 100 Continue gets the refusal instead, and sends no body.
    RawClient waiting(io);
    co_await waiting.connect(port);
    co_await waiting.send(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n");
    co_await waiting.read_to_close(2000ms);
    EXPECT_TRUE(waiting.closed);
    EXPECT_TRUE(waiting.received.starts_with("HTTP/1.1 401 ")) << waiting.received;
    EXPECT_NE(waiting.received.find("no good key"), std::string::npos);
    EXPECT_EQ(waiting.received.find("100 Continue"), std::string::npos);

    // Without Expect, the refusal comes before the body is sent too.
    RawClient eager(io);
    co_await eager.connect(port);
    co_await eager.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
    co_await eager.read_until("}}", 2000ms);
    EXPECT_TRUE(eager.received.starts_with("HTTP/1.1 401 ")) << eager.received;
    EXPECT_EQ(refused_seen, 2);

    // With the key: read and answered as usual.
    const auto good = co_await one_shot(
        io, port,
        "POST /echo HTTP/1.1\r\nHost: x\r\nX-Key: good\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi");
    EXPECT_TRUE(good.starts_with("HTTP/1.1 200 OK")) << good;
    server.stop();
  });
}

TEST(ServerTest, AmbiguousFramingAndForeignTargetsAre400) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, echo_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0);
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 2\r\n\r\nhi",
         "Transfer-Encoding"},
        {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhi", "bad_transfer_encoding"},
        {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
         "bad_transfer_encoding"},
        {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: "
         "2\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
         "\"type\":\"invalid_request_error\""},
        {"POST /echo HTTP/1.1\r\nHost: x\r\nX-Long: one\r\n two\r\nContent-Length: 2\r\n\r\nhi",
         "obsolete line folding"},
        {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Tab: a\r\n\tb\r\n\r\nhi",
         "obsolete line folding"},
        {"POST http://evil.example/echo HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 2\r\n\r\nhi",
         "bad_request_target"},
        {"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example\r\n\r\n", "bad_request_target"},
    };
    for (const auto& [request, expected] : cases) {
      const auto answer = co_await one_shot(io, port, request);
      EXPECT_TRUE(answer.starts_with("HTTP/1.1 400 ")) << request << "\n->\n" << answer;
      EXPECT_NE(answer.find(expected), std::string::npos) << request << "\n->\n" << answer;
      EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
    }
    // The plain forms still pass, and a body that begins with a space is no folded header.
    const auto fine = co_await one_shot(io, port,
                                        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                                        "Chunked\r\nConnection: close\r\n\r\n2\r\n h\r\n0\r\n\r\n");
    EXPECT_TRUE(fine.starts_with("HTTP/1.1 200 OK")) << fine;
    const auto star =
        co_await one_shot(io, port, "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_TRUE(star.starts_with("HTTP/1.1 404 ")) << star;  // no route, but not refused as a target
    server.stop();
  });
}

// A chunk extension without its line end, a trailer section without its end, chunk-size digits without
// end: each is cut off at the header limit with a 400, however much the client sends.
TEST(ServerTest, EndlessChunkHeadersAndTrailersAreCutOff) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, echo_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0);
    const std::string head = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::vector<std::pair<std::string, char>> cases = {
        {head + "1;ext=", 'a'}, {head + "2\r\nhi\r\n0\r\nX-Trailer: ", 'b'}, {head + "1", '0'}};
    for (const auto& [start, filler] : cases) {
      RawClient client(io);
      co_await client.connect(port);
      co_await client.send(start);
      const std::string more(64 * 1024, filler);
      std::size_t sent = 0;
      // 8 MiB at most: before the fix the server kept all of it and never answered.
      for (int i = 0; i < 128; ++i) {
        if (!co_await client.send(more)) break;
        sent += more.size();
        co_await pause(io, 1ms);
        client.poll();
        if (!client.received.empty() || client.closed) break;
      }
      co_await client.read_until("}}", 2000ms);
      EXPECT_TRUE(client.received.starts_with("HTTP/1.1 400 ")) << start << ": " << client.received;
      EXPECT_NE(client.received.find("chunk_header_too_large"), std::string::npos) << client.received;
      EXPECT_LT(sent, 4u << 20) << start;
    }
    server.stop();
  });
}

TEST(ServerTest, SlowHeadersAreCutOffAtTheHeaderDeadline) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    ServerLimits limits;
    limits.header_timeout = 600ms;
    Server server(io, echo_router(), limits);
    const auto port = server.listen("127.0.0.1", 0);
    RawClient client(io);
    co_await client.connect(port);
    // One byte every 100 ms: each read is quick, the header block is not (6 s in all).
    const std::string request = "POST /echo HTTP/1.1\r\nHost: x\r\nX-Padding: " + std::string(20, 'p') +
                                "\r\nContent-Length: 2\r\n\r\nhi";
    std::size_t sent = 0;
    while (sent < request.size()) {
      if (!co_await client.send(std::string_view(request).substr(sent, 1))) break;
      ++sent;
      co_await pause(io, 100ms);
      client.poll();
      if (client.closed) break;
    }
    EXPECT_TRUE(client.closed);
    EXPECT_LT(sent, request.size()) << "the server waited for the whole header: " << client.received;
    EXPECT_EQ(client.received.find("200 OK"), std::string::npos);
    server.stop();
  });
}

TEST(ServerTest, SlowBodiesAreCutOffBelowTheMinimumRate) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    ServerLimits limits;
    limits.min_body_rate = 1000;  // bytes a second
    limits.body_rate_grace = 300ms;
    Server server(io, echo_router(), limits);
    const auto port = server.listen("127.0.0.1", 0);
    RawClient client(io);
    co_await client.connect(port);
    co_await client.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
    // 10 bytes every 100 ms: 100 bytes a second.
    std::size_t sent = 0;
    while (sent < 1000) {
      if (!co_await client.send(std::string(10, 'x'))) break;
      sent += 10;
      co_await pause(io, 100ms);
      client.poll();
      if (client.closed) break;
    }
    EXPECT_TRUE(client.closed);
    EXPECT_LT(sent, 1000u);
    server.stop();
  });
}

TEST(ServerTest, ConnectionsPerClientAreCapped) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    ServerLimits limits;
    limits.max_connections_per_client = 2;
    Server server(io, echo_router(), limits);
    const auto port = server.listen("127.0.0.1", 0);
    RawClient first(io);
    RawClient second(io);
    co_await first.connect(port);
    co_await second.connect(port);
    co_await pause(io, 100ms);  // both accepted
    const auto third = co_await one_shot(io, port, "HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(third.starts_with("HTTP/1.1 429 ")) << third;
    EXPECT_NE(third.find("too_many_connections"), std::string::npos) << third;
    first.stream.close();
    co_await pause(io, 100ms);  // the server sees the close
    const auto again =
        co_await one_shot(io, port, "HEAD /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_TRUE(again.starts_with("HTTP/1.1 200 ")) << again;
    server.stop();
  });
}

TEST(ServerTest, HeadAnswersCarryTheLengthButNoBody) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, echo_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0);
    const auto answer =
        co_await one_shot(io, port,
                          "HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: "
                          "x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    EXPECT_NE(answer.find("Content-Length: 12\r\n"), std::string::npos) << answer;
    EXPECT_EQ(answer.find("twelve bytes"), std::string::npos) << answer;
    // The second answer follows the first header at once.
    const auto second = answer.find("\r\n\r\nHTTP/1.1 200 OK\r\n");
    EXPECT_NE(second, std::string::npos) << answer;
    server.stop();
  });
}

// Ollama's streams: chunked application/x-ndjson, one object a line, ended without SSE's "data: [DONE]", and
// the connection kept for the next request.
TEST(ServerTest, NdjsonStreamsAreLinesInChunksWithoutDone) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, echo_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0);
    const auto answer =
        co_await one_shot(io, port,
                          "GET /lines HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: "
                          "x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    EXPECT_NE(answer.find("Content-Type: application/x-ndjson\r\n"), std::string::npos) << answer;
    EXPECT_NE(answer.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << answer;
    EXPECT_NE(answer.find("\r\n{\"n\":1}\n\r\n"), std::string::npos) << answer;
    EXPECT_NE(answer.find("\r\n{\"n\":2,\"done\":true}\n\r\n0\r\n\r\n"), std::string::npos) << answer;
    EXPECT_EQ(answer.find("[DONE]"), std::string::npos) << answer;
    EXPECT_NE(answer.find("\r\n\r\nHTTP/1.1 200 OK\r\n"), std::string::npos) << answer;  // the next answer
    server.stop();
  });
}

}  // namespace
}  // namespace clawbot::http
