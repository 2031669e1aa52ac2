// HTTP requests as our server and the gateway read them: src/common/http_read.h feeding Beast's
// request_parser with the server's limits (http::ServerLimits), a read size the input chooses, pipelined
// requests until the stream ends or a request is refused. The gateway's way (the header first, then the
// body with the same parser) is taken when the input asks for it.
//
// Input: byte 0 = read size (0: all at once) and flags, then the bytes the client sends.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "common/http_read.h"
#include "common/http_server.h"
#include "http_stream.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;

// What the server relies on about a request the parser accepted.
void check_request(const http::request_parser<http::string_body>& parser, std::size_t body_limit) {
  const auto& request = parser.get();
  if (request.body().size() > body_limit) std::abort();  // the limit must hold, chunked or not
  if (const auto length = parser.content_length();
      length && !parser.chunked() && request.body().size() != *length)
    std::abort();
  std::string_view target(request.target().data(), request.target().size());
  (void)target.substr(0, target.find('?'));  // Exchange::path()
  (void)request.keep_alive();
  for (const auto& field : request) (void)field.value().size();
}

boost::asio::awaitable<void> read_requests(beast::test::stream& stream,
                                           const clawbot::http::ServerLimits limits, bool header_first) {
  beast::flat_buffer buffer;
  for (int i = 0; i < 16; ++i) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(limits.max_body_bytes);
    parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    beast::error_code ec;
    if (header_first) {
      ec = co_await clawbot::http::detail::read_message(stream, buffer, parser, true);
      if (ec) co_return;
      if (!parser.is_header_done()) std::abort();
    }
    // A request without a body is done with its header: read_message must not be called again on it (Beast
    // asserts, or answers stale_parser, once the next pipelined request is in the buffer), as the server
    // checks is_done() before it reads a body.
    if (!parser.is_done()) {
      ec = co_await clawbot::http::detail::read_message(stream, buffer, parser, false);
      if (ec) co_return;  // the server answers 400/413/431 (or nothing, at the end) and closes
    }
    if (!parser.is_done()) std::abort();
    check_request(parser, limits.max_body_bytes);
    if (!parser.get().keep_alive()) co_return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t control = data[0];
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t read_size = (control & 0x3f) == 0 ? 65536 : (control & 0x3f);
  const bool header_first = (control & 0x40) != 0;
  clawbot::http::ServerLimits limits;  // the server's own
  if (control & 0x80) {                // small limits, so that inputs of a few KiB reach them
    limits.max_body_bytes = 256;
    limits.max_header_bytes = 512;
  }
  auto stream = clawbot::fuzz::stream_of(bytes, read_size);
  clawbot::fuzz::run([&] { return read_requests(stream, limits, header_first); });
  return 0;
}
