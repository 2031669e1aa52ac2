// Internal to common: reading one HTTP message (or its header) into a Beast parser with plain reads.
//
// Beast's http::async_read and async_read_header wrap every read in two composed operations of their own;
// for a proxy that forwards tens of thousands of small requests a second, those layers cost more than the
// parsing. Here the parser is fed synchronously from the buffer, and the stream is read only when it needs
// more bytes: the same results and errors as Beast's functions (end_of_stream before any byte, put_eof
// after some), one read per round trip.
#pragma once

#include <algorithm>
#include <cstddef>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

namespace clawbot::http::detail {

// Feeds `parser` from `buffer`, reading `stream` whenever the buffer runs dry, until the whole message
// (`header_only`: its header) is parsed. A body that the parser stores elsewhere (string_body) leaves the
// buffer; bytes after the message stay in it for the next one.
template <class Stream, bool isRequest>
boost::asio::awaitable<boost::beast::error_code> read_message(
    Stream& stream, boost::beast::flat_buffer& buffer, boost::beast::http::basic_parser<isRequest>& parser,
    bool header_only) {
  namespace http = boost::beast::http;
  parser.eager(!header_only);
  auto finished = [&] { return header_only ? parser.is_header_done() : parser.is_done(); };
  for (;;) {
    if (buffer.size() > 0) {
      boost::beast::error_code ec;
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (ec && ec != http::error::need_more) co_return ec;
      if (finished()) co_return boost::beast::error_code{};
      if (!ec && used > 0) continue;  // more of the buffer may parse now
    } else if (finished()) {
      co_return boost::beast::error_code{};
    }
    // Room for the next read: what the buffer has spare, at least 1 KiB, at most 64 KiB.
    const std::size_t room = std::clamp<std::size_t>(buffer.capacity() - buffer.size(), 1024, 65536);
    if (buffer.size() >= buffer.max_size()) co_return http::error::buffer_overflow;
    auto [ec, n] =
        co_await stream.async_read_some(buffer.prepare(std::min(room, buffer.max_size() - buffer.size())),
                                        boost::asio::as_tuple(boost::asio::use_awaitable));
    if (ec == boost::asio::error::eof) {
      if (!parser.got_some()) co_return http::error::end_of_stream;
      boost::beast::error_code eof_ec;
      parser.put_eof(eof_ec);
      if (eof_ec) co_return eof_ec;
      co_return finished() ? boost::beast::error_code{}
                           : boost::beast::error_code(http::error::partial_message);
    }
    if (ec) co_return ec;
    buffer.commit(n);
  }
}

}  // namespace clawbot::http::detail
