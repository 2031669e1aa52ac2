// HTTP responses as our client (and the gateway's upstream client) reads them: src/common/http_read.h for
// the header with the client's 64 KiB header limit, then the body through Beast's buffer_body in 16 KiB
// pieces (Client::read_some), an event stream through SseParser. A connection is reused for the next
// response only when this one was read to its end and keeps alive, as the pool does; 1xx interim answers
// are skipped; a HEAD's answer has no body.
//
// Input: byte 0 = read size and flags, then the bytes the server sends.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include "common/http_client.h"
#include "common/http_read.h"
#include "http_stream.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using Parser = http::response_parser<http::buffer_body>;

constexpr std::size_t max_body_bytes = 1u << 20;  // small enough to be reached; the client's is larger

// One response; false when the connection may not carry another.
boost::asio::awaitable<bool> read_response(beast::test::stream& stream, beast::flat_buffer& buffer,
                                           bool head) {
  std::optional<Parser> interim;
  for (;;) {  // interim 1xx answers come before the real one
    Parser& parser = interim.emplace();
    parser.header_limit(64u << 10);
    parser.body_limit(boost::none);
    if (head) parser.skip(true);
    if (co_await clawbot::http::detail::read_message(stream, buffer, parser, true)) co_return false;
    const unsigned status = parser.get().result_int();
    if (status > 999) std::abort();  // (Beast takes any three digits: "002" is status 2)
    if (status >= 200 || status == 101) break;
  }
  Parser& parser = *interim;
  const auto& header = parser.get();
  const auto content_type = header[http::field::content_type];
  const bool event_stream = content_type.substr(0, 17) == "text/event-stream";
  clawbot::http::SseParser sse(4096);
  std::vector<clawbot::http::SseEvent> events;
  std::array<char, 16384> chunk{};
  std::size_t total = 0;
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    auto [ec, read] = co_await http::async_read_some(stream, buffer, parser,
                                                     boost::asio::as_tuple(boost::asio::use_awaitable));
    (void)read;
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return false;
    const std::size_t got = chunk.size() - parser.get().body().size;
    total += got;
    if (total > max_body_bytes) co_return false;  // read_body's limit: the connection is dropped
    if (event_stream && !sse.feed(std::string_view(chunk.data(), got), events)) co_return false;
    events.clear();
  }
  if (event_stream) sse.finish(events);
  // A response read "to its end" must be exactly as long as it said (1xx, 204 and 304 have no body whatever
  // their Content-Length says, and neither has the answer to a HEAD).
  const unsigned status = parser.get().result_int();
  const bool bodiless = head || status < 200 || status == 204 || status == 304;
  if (const auto length = parser.content_length();
      length && !bodiless && !parser.chunked() && total != *length)
    std::abort();
  co_return parser.keep_alive();
}

boost::asio::awaitable<void> read_responses(beast::test::stream& stream, std::uint8_t heads) {
  beast::flat_buffer buffer;
  for (int i = 0; i < 8; ++i)
    if (!co_await read_response(stream, buffer, (heads >> i) & 1)) co_return;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t read_size = data[0] == 0 ? 65536 : data[0];
  const std::uint8_t heads = data[1];  // which of the requests were HEAD
  const std::string_view bytes(reinterpret_cast<const char*>(data + 2), size - 2);
  auto stream = clawbot::fuzz::stream_of(bytes, read_size);
  clawbot::fuzz::run([&] { return read_responses(stream, heads); });
  return 0;
}
