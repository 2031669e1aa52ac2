// What the HTTP client does with a request once it may have been read: a connection that breaks after the
// whole request was written (here: the server reads it, then closes) fails with request_sent set and is not
// sent again, even on a kept-alive connection (a proxy must know that the server may have acted on it); a
// kept-alive connection the server closed while idle is replaced before sending, never sent on.
#include "common/http_client.h"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "../support/run_async.h"

namespace clawbot::http {
namespace {

using tcp = asio::ip::tcp;
namespace bhttp = beast::http;
using asio::use_awaitable;
using testing::run_async;

constexpr auto use_tuple = asio::as_tuple(use_awaitable);

// One connection: each request is counted in `requests` and answered, unless it is the `fatal`-th (1-based,
// over all connections): then the connection is closed after reading it.
asio::awaitable<void> serve_connection(tcp::socket socket, int* requests, int fatal) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    bhttp::request<bhttp::string_body> req;
    auto [rec, n] = co_await bhttp::async_read(stream, buffer, req, use_tuple);
    if (rec) co_return;
    if (++*requests == fatal) {
      beast::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream.close();
      co_return;
    }
    bhttp::response<bhttp::string_body> res{bhttp::status::ok, 11};
    res.keep_alive(true);
    res.body() = "{}";
    res.prepare_payload();
    co_await bhttp::async_write(stream, res, use_tuple);
  }
}

asio::awaitable<void> serve(tcp::acceptor* acceptor, int* requests, int fatal) {
  for (;;) {
    auto [aec, socket] = co_await acceptor->async_accept(use_tuple);
    if (aec) co_return;
    asio::co_spawn(acceptor->get_executor(), serve_connection(std::move(socket), requests, fatal),
                   asio::detached);
  }
}

TEST(ClientResendTest, ARequestReadThenDroppedIsNotSentAgainAndSaysItWasSent) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    int requests = 0;
    asio::co_spawn(io, serve(&acceptor, &requests, 2), asio::detached);
    Client client(io.get_executor(),
                  *parse_url("http://127.0.0.1:" + std::to_string(acceptor.local_endpoint().port())));
    auto first = co_await client.get("/a");
    EXPECT_TRUE(first && first->status == 200);
    const nlohmann::json body = {{"x", 1}};  // (named: no braced temporaries in co_await, for GCC 12)
    auto second = co_await client.post_json("/b", body);  // on the kept-alive connection
    EXPECT_FALSE(second);
    if (second) co_return;
    EXPECT_TRUE(second.error().request_sent) << second.error().message;
    EXPECT_EQ(requests, 2) << "the request was sent again";
    EXPECT_EQ(client.connects(), 1u);
    // A connection that cannot be made at all: nothing was sent.
    acceptor.close();
    auto third = co_await client.get("/c");
    EXPECT_FALSE(third);
    if (third) co_return;
    EXPECT_FALSE(third.error().request_sent);
  });
}

asio::awaitable<void> close_after_one_answer(tcp::acceptor* acceptor, int* requests) {
  beast::tcp_stream stream(co_await acceptor->async_accept(use_awaitable));
  beast::flat_buffer buffer;
  bhttp::request<bhttp::string_body> req;
  co_await bhttp::async_read(stream, buffer, req, use_awaitable);
  ++*requests;
  bhttp::response<bhttp::string_body> res{bhttp::status::ok, 11};
  res.keep_alive(true);
  res.body() = "{}";
  res.prepare_payload();
  co_await bhttp::async_write(stream, res, use_awaitable);
  stream.close();
  co_await serve(acceptor, requests, 0);
}

TEST(ClientResendTest, AnIdleConnectionTheServerClosedIsReplacedBeforeSending) {
  run_async([](asio::io_context& io) -> asio::awaitable<void> {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    int requests = 0;
    // The first connection closes after its first answer (the server's idle timeout, say).
    asio::co_spawn(io, close_after_one_answer(&acceptor, &requests), asio::detached);
    Client client(io.get_executor(),
                  *parse_url("http://127.0.0.1:" + std::to_string(acceptor.local_endpoint().port())));
    EXPECT_TRUE(co_await client.get("/a"));
    asio::steady_timer timer(io, std::chrono::milliseconds(50));
    co_await timer.async_wait(use_awaitable);
    const nlohmann::json body = {{"x", 1}};
    auto second = co_await client.post_json("/b", body);
    EXPECT_TRUE(second) << (second ? "" : second.error().message);
    EXPECT_EQ(requests, 2);
    EXPECT_EQ(client.connects(), 2u);
  });
}

}  // namespace
}  // namespace clawbot::http
