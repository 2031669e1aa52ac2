#include "common/http_client.h"

#include <gtest/gtest.h>

#include <exception>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "common/http_server.h"

#include "../support/run_async.h"

namespace clawbot::http {
namespace {

using json = nlohmann::json;
using tcp = asio::ip::tcp;
namespace bhttp = beast::http;
using asio::use_awaitable;

// ---------------------------------------------------------------- parse_url

TEST(ParseUrlTest, HostPortAndPath) {
  auto u = parse_url("http://127.0.0.1:5000");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, "5000");
  EXPECT_EQ(u->path, "");
  EXPECT_EQ(u->str(), "http://127.0.0.1:5000");

  u = parse_url(" HTTP://example.lan/api/v1/ ");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "example.lan");
  EXPECT_EQ(u->port, "80");
  EXPECT_EQ(u->path, "/api/v1");

  u = parse_url("http://[::1]:8080/x");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->origin(), "http://[::1]:8080");

  u = parse_url("localhost:5000");  // no scheme: http
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "localhost");
  EXPECT_EQ(u->port, "5000");
}

TEST(ParseUrlTest, RefusalsSayWhy) {
  auto ftp = parse_url("ftp://x");
  ASSERT_FALSE(ftp);
  EXPECT_NE(ftp.error().message.find("scheme 'ftp' is not supported"), std::string::npos);
  EXPECT_FALSE(parse_url(""));
  EXPECT_FALSE(parse_url("http://:5000"));
  auto port = parse_url("http://h:99999");
  ASSERT_FALSE(port);
  EXPECT_NE(port.error().message.find("1 to 65535"), std::string::npos);
  EXPECT_FALSE(parse_url("http://h:5000?x=1"));
  EXPECT_FALSE(parse_url("http://user:pw@h:5000"));
}

// ---------------------------------------------------------------- SseParser

std::vector<SseEvent> parse_in_pieces(std::string_view text, std::size_t piece) {
  SseParser parser;
  std::vector<SseEvent> events;
  for (std::size_t i = 0; i < text.size(); i += piece)
    EXPECT_TRUE(parser.feed(text.substr(i, piece), events));
  parser.finish(events);
  return events;
}

TEST(SseParserTest, EventsLineEndsCommentsAndMultiLineData) {
  const std::string stream =
      "\xEF\xBB\xBF: keep-alive\n\n"
      "data: one\n\n"
      "data:two\r\n\r\n"
      "event: delta\rdata: a\rdata: b\r\r"
      "id: 7\ndata: {\"x\":1}\n\n"
      "data\n\n"
      ": another comment\n"
      "retry: 10\n\n"
      "data: [DONE]\n\n";
  for (std::size_t piece : {stream.size(), std::size_t{1}, std::size_t{2}, std::size_t{5}}) {
    const auto events = parse_in_pieces(stream, piece);
    ASSERT_EQ(events.size(), 6u) << "piece " << piece;
    EXPECT_EQ(events[0].data, "one");
    EXPECT_EQ(events[1].data, "two");
    EXPECT_EQ(events[2].data, "a\nb");
    EXPECT_EQ(events[2].event, "delta");
    EXPECT_EQ(events[3].data, "{\"x\":1}");
    EXPECT_EQ(events[3].id, "7");
    EXPECT_EQ(events[4].data, "");  // a bare "data" line is an empty event
    EXPECT_EQ(events[5].data, "[DONE]");
  }
}

TEST(SseParserTest, CountsCommentsAndFinishesAnUnterminatedEvent) {
  SseParser parser;
  std::vector<SseEvent> events;
  EXPECT_TRUE(parser.feed(": ping\n\n: ping\n\ndata: last", events));
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(parser.comments(), 2u);
  parser.finish(events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "last");
}

TEST(SseParserTest, RefusesAnEndlessLine) {
  SseParser parser(16);
  std::vector<SseEvent> events;
  EXPECT_FALSE(parser.feed("data: " + std::string(100, 'x'), events));
}

// ---------------------------------------------------------------- Client against real sockets

using clawbot::testing::run_async;

std::shared_ptr<Router> test_router() {
  auto router = std::make_shared<Router>();
  router->add(Verb::get, "/v1/hello", [](Exchange& ex) -> asio::awaitable<void> {
    const json body = {{"hello", "world"}};
    co_await ex.respond_json(200, body);
  });
  router->add(Verb::post, "/v1/echo", [](Exchange& ex) -> asio::awaitable<void> {
    const json body = json::parse(ex.request().body());
    co_await ex.respond_json(200, body);
  });
  router->add(Verb::post, "/v1/sse", [](Exchange& ex) -> asio::awaitable<void> {
    const json got = json::parse(ex.request().body());
    co_await ex.sse_start();
    co_await ex.sse_comment("keep-alive");
    co_await ex.sse_data(got.value("say", "?"));
    co_await ex.sse_data("two\ndata: lines");
    // the session ends the stream with [DONE]
  });
  return router;
}

asio::awaitable<void> pause(asio::io_context& io, std::chrono::milliseconds ms) {
  asio::steady_timer timer(io, ms);
  co_await timer.async_wait(use_awaitable);
}

TEST(ClientTest, JsonStreamsAndKeepAlive) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0);
    auto url = parse_url("http://127.0.0.1:" + std::to_string(port) + "/v1");
    Client client(io.get_executor(), *url);

    auto hello = co_await client.get("/hello");
    EXPECT_TRUE(hello) << (hello ? "" : hello.error().message);
    if (!hello) co_return;
    EXPECT_EQ(hello->status, 200);
    EXPECT_EQ(hello->content_type(), "application/json");
    EXPECT_EQ(json::parse(hello->body)["hello"], "world");

    const json payload = {{"n", 1}, {"text", "héllo"}};
    auto echo = co_await client.post_json("/echo", payload);
    EXPECT_TRUE(echo);
    if (!echo) co_return;
    EXPECT_EQ(json::parse(echo->body), payload);

    const json ask = {{"say", "one"}};
    auto stream = co_await client.post_sse("/sse", ask);
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    EXPECT_EQ(stream->status(), 200);
    EXPECT_TRUE(stream->is_event_stream());
    std::vector<std::string> events;
    for (;;) {
      auto event = co_await stream->next();
      EXPECT_TRUE(event) << (event ? "" : event.error().message);
      if (!event || !*event) break;
      events.push_back((*event)->data);
    }
    const std::vector<std::string> expected{"one", "two\nlines", "[DONE]"};
    EXPECT_EQ(events, expected);

    // A 404 to a streamed request: the error body, no events.
    auto missing = co_await client.post_sse("/nope", ask);
    EXPECT_TRUE(missing);
    if (!missing) co_return;
    EXPECT_EQ(missing->status(), 404);
    EXPECT_FALSE(missing->is_event_stream());
    EXPECT_NE(missing->body().find("no route"), std::string::npos);
    auto none = co_await missing->next();
    EXPECT_TRUE(none && !*none);

    auto again = co_await client.get("/hello");
    EXPECT_TRUE(again && again->status == 200);
    EXPECT_EQ(client.connects(), 1u);  // every exchange on one keep-alive connection
    server.stop();
  });
}

TEST(ClientTest, AbandonedStreamClosesTheConnection) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    Server server(io, test_router(), ServerLimits{});
    const auto port = server.listen("127.0.0.1", 0);
    Client client(io.get_executor(), *parse_url("http://127.0.0.1:" + std::to_string(port)));
    const json ask = {{"say", "x"}};
    {
      auto stream = co_await client.post_sse("/v1/sse", ask);
      EXPECT_TRUE(stream);
      if (!stream) co_return;
      auto first = co_await stream->next();
      EXPECT_TRUE(first && *first);
    }  // left before the end
    auto next = co_await client.get("/v1/hello");
    EXPECT_TRUE(next && next->status == 200);
    EXPECT_EQ(client.connects(), 2u);
    server.stop();
  });
}

std::string chunk(std::string_view s) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", s.size());
  return size + std::string(s) + "\r\n";
}

TEST(ClientTest, ChunkedEventsSplitAnywhere) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const auto port = acceptor.local_endpoint().port();
    asio::co_spawn(
        io,
        [&acceptor, &io]() -> asio::awaitable<void> {
          auto socket = co_await acceptor.async_accept(use_awaitable);
          beast::flat_buffer buffer;
          bhttp::request<bhttp::string_body> req;
          co_await bhttp::async_read(socket, buffer, req, use_awaitable);
          std::string head =
              "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
          co_await asio::async_write(socket, asio::buffer(head), use_awaitable);
          for (std::string_view piece :
               {": ping\r\n\r\ndata: hel", "lo\r\n\r\ndata: a\r\ndata: b\r", "\n\r\n", "data: [DONE]\n\n"}) {
            std::string bytes = chunk(piece);
            co_await asio::async_write(socket, asio::buffer(bytes), use_awaitable);
            co_await pause(io, std::chrono::milliseconds(5));
          }
          std::string last = "0\r\n\r\n";
          co_await asio::async_write(socket, asio::buffer(last), use_awaitable);
          co_await pause(io, std::chrono::milliseconds(500));
        },
        asio::detached);

    Client client(io.get_executor(), *parse_url("http://127.0.0.1:" + std::to_string(port)));
    const json body = json::object();
    auto stream = co_await client.post_sse("/v1/chat/completions", body);
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    std::vector<std::string> events;
    for (;;) {
      auto event = co_await stream->next();
      EXPECT_TRUE(event);
      if (!event || !*event) break;
      events.push_back((*event)->data);
    }
    const std::vector<std::string> expected{"hello", "a\nb", "[DONE]"};
    EXPECT_EQ(events, expected);
    EXPECT_TRUE(client.connected());  // the whole body was read: the connection may serve again
  });
}

TEST(ClientTest, ReconnectsWhenTheServerClosedAnIdleConnection) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const auto port = acceptor.local_endpoint().port();
    asio::co_spawn(
        io,
        [&acceptor]() -> asio::awaitable<void> {
          for (int i = 0; i < 2; ++i) {
            beast::tcp_stream stream(co_await acceptor.async_accept(use_awaitable));
            beast::flat_buffer buffer;
            bhttp::request<bhttp::string_body> req;
            co_await bhttp::async_read(stream, buffer, req, use_awaitable);
            bhttp::response<bhttp::string_body> res{bhttp::status::ok, 11};
            res.keep_alive(true);  // says keep-alive, then closes anyway
            res.body() = "{}";
            res.prepare_payload();
            co_await bhttp::async_write(stream, res, use_awaitable);
            beast::error_code ignored;
            stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
            stream.close();
          }
        },
        asio::detached);
    Client client(io.get_executor(), *parse_url("http://127.0.0.1:" + std::to_string(port)));
    auto first = co_await client.get("/a");
    EXPECT_TRUE(first && first->status == 200);
    co_await pause(io, std::chrono::milliseconds(50));
    auto second = co_await client.get("/b");
    EXPECT_TRUE(second) << (second ? "" : second.error().message);
    EXPECT_EQ(client.connects(), 2u);
  });
}

// A server of raw bytes: for each connection, one answer per request read (`answers[connection][request]`),
// each written as it is; then the connection stays open until the test ends.
struct ScriptedServer {
  tcp::acceptor acceptor;
  std::vector<std::vector<std::string>> answers;
  std::size_t connections = 0;

  ScriptedServer(asio::io_context& io, std::vector<std::vector<std::string>> a)
      : acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), answers(std::move(a)) {}
  unsigned short port() const { return acceptor.local_endpoint().port(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }

  asio::awaitable<void> run(asio::io_context& io) {
    for (const auto& script : answers) {
      auto socket = std::make_shared<tcp::socket>(co_await acceptor.async_accept(use_awaitable));
      ++connections;
      asio::co_spawn(
          io,
          [socket, script]() -> asio::awaitable<void> {
            beast::flat_buffer buffer;
            for (const auto& answer : script) {
              bhttp::request_parser<bhttp::string_body> parser;
              auto [ec, n] =
                  co_await bhttp::async_read(*socket, buffer, parser, asio::as_tuple(use_awaitable));
              if (ec) co_return;
              co_await asio::async_write(*socket, asio::buffer(answer), use_awaitable);
            }
            std::array<char, 64> sink{};
            co_await socket->async_read_some(asio::buffer(sink), asio::as_tuple(use_awaitable));
          },
          asio::detached);
    }
  }
};

TEST(ClientTest, InterimAnswersAreSkipped) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    ScriptedServer server(io,
                          {{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"n\": 1}\n",
                            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"n\": 2}\n"}});
    asio::co_spawn(io, server.run(io), asio::detached);
    Client client(io.get_executor(), *parse_url(server.url()));
    auto first = co_await client.post_json("/v1/x", json::object());
    EXPECT_TRUE(first) << (first ? "" : first.error().message);
    if (!first) co_return;
    EXPECT_EQ(first->status, 200);
    EXPECT_EQ(first->body, "{\"n\": 1}\n");
    // The next request gets its own answer, not one left over from the first.
    auto second = co_await client.post_json("/v1/x", json::object());
    EXPECT_TRUE(second);
    if (!second) co_return;
    EXPECT_EQ(second->status, 200);
    EXPECT_EQ(second->body, "{\"n\": 2}\n");
    EXPECT_EQ(client.connects(), 1u);
  });
}

TEST(ClientTest, AnswerToHeadHasNoBody) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    ScriptedServer server(
        io, {{"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1234\r\n\r\n",
              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"}});
    asio::co_spawn(io, server.run(io), asio::detached);
    ClientOptions options;
    options.read_timeout = std::chrono::milliseconds(3000);
    Client client(io.get_executor(), *parse_url(server.url()), options);
    const auto started = std::chrono::steady_clock::now();
    auto head = co_await client.send(bhttp::verb::head, "/v1/models", std::string(), bhttp::fields());
    EXPECT_TRUE(head) << (head ? "" : head.error().message);
    if (!head) co_return;
    EXPECT_EQ(head->status(), 200);
    std::string body;
    std::array<char, 256> scratch{};
    auto rest = co_await head->read_rest(body, scratch.data(), scratch.size());
    EXPECT_TRUE(rest) << (rest ? "" : rest.error().message);  // before: timed out waiting for 1234 bytes
    EXPECT_TRUE(body.empty());
    EXPECT_TRUE(head->done());
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(2500));
    auto next = co_await client.get("/v1/models");  // the same connection serves on
    EXPECT_TRUE(next && next->body == "{}");
    EXPECT_EQ(client.connects(), 1u);
  });
}

TEST(ClientTest, BytesAfterTheAnswerRetireTheConnection) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    // The first answer comes with a second one nobody asked for; the next request must not read that one.
    ScriptedServer server(io, {{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 "
                                "OK\r\nContent-Length: 5\r\n\r\nstale"},
                               {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"}});
    asio::co_spawn(io, server.run(io), asio::detached);
    Client client(io.get_executor(), *parse_url(server.url()));
    auto first = co_await client.get("/a");
    EXPECT_TRUE(first && first->body == "first");
    auto second = co_await client.get("/b");
    EXPECT_TRUE(second) << (second ? "" : second.error().message);
    if (!second) co_return;
    EXPECT_EQ(second->body, "fresh");
    EXPECT_EQ(client.connects(), 2u);
  });
}

TEST(ClientTest, EndlessChunkExtensionIsCutOff) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    // 1 MiB of one chunk extension, never ended: before, the client kept all of it and waited for more.
    ScriptedServer server(
        io, {{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=" + std::string(1u << 20, 'e')}});
    asio::co_spawn(io, server.run(io), asio::detached);
    ClientOptions options;
    options.read_timeout = std::chrono::milliseconds(3000);
    Client client(io.get_executor(), *parse_url(server.url()), options);
    auto r = co_await client.get("/v1/models");
    EXPECT_FALSE(r);
    if (r) co_return;
    EXPECT_EQ(r.error().code, bhttp::error::buffer_overflow) << r.error().message;
  });
}

TEST(ClientTest, RefusedConnectionNamesTheUrl) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    unsigned short port = 0;
    {
      tcp::acceptor probe(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
      port = probe.local_endpoint().port();
    }  // closed again: nothing listens there
    Client client(io.get_executor(), *parse_url("http://127.0.0.1:" + std::to_string(port)));
    auto r = co_await client.get("/v1/models");
    EXPECT_FALSE(r);
    if (r) co_return;
    EXPECT_EQ(r.error().code, asio::error::connection_refused);
    EXPECT_NE(r.error().message.find("http://127.0.0.1:" + std::to_string(port)), std::string::npos);
    EXPECT_NE(r.error().message.find("connection refused"), std::string::npos) << r.error().message;
  });
}

TEST(ClientTest, SilentServerTimesOut) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const auto port = acceptor.local_endpoint().port();
    asio::co_spawn(
        io,
        [&acceptor, &io]() -> asio::awaitable<void> {
          auto socket = co_await acceptor.async_accept(use_awaitable);
          co_await pause(io, std::chrono::seconds(5));  // reads nothing, answers nothing
        },
        asio::detached);
    ClientOptions options;
    options.read_timeout = std::chrono::milliseconds(200);
    Client client(io.get_executor(), *parse_url("http://127.0.0.1:" + std::to_string(port)), options);
    auto r = co_await client.get("/v1/models");
    EXPECT_FALSE(r);
    if (r) co_return;
    EXPECT_EQ(r.error().code, beast::error::timeout);
    EXPECT_NE(r.error().message.find("sent nothing for 200 ms"), std::string::npos) << r.error().message;
  });
}

}  // namespace
}  // namespace clawbot::http
