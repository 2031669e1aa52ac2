// Internal to common: reading one HTTP message (or its header) into a Beast parser with plain reads.
//
// Beast's http::async_read and async_read_header wrap every read in two composed operations of their own;
// for a proxy that forwards tens of thousands of small requests a second, those layers cost more than the
// parsing. Here the parser is fed synchronously from the buffer, and the stream is read only when it needs
// more bytes: the same results and errors as Beast's functions (end_of_stream before any byte, put_eof
// after some), one read per round trip.
//
// Every buffer has a maximum (flat_buffer's max_size): Beast bounds a message's header by header_limit, but
// not a chunk header, its extensions or the trailer section (it asks for more bytes until their line or
// block ends). Bytes the parser has not taken stay in the buffer, so a full buffer is one of those grown too
// long: read_message then fails with http::error::buffer_overflow.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

namespace clawbot::http::detail {

// What a reader of read_message may add: a check before each read (a deadline; an error stops the read)
// and a look at the raw bytes of the header once it is complete (`bytes` start with it; more may follow).
struct NoReadHooks {
  boost::beast::error_code before_read(std::size_t /*received*/) { return {}; }
  boost::beast::error_code on_header(std::string_view /*bytes*/) { return {}; }
};

// The free space of `buffer` for the next read: at least 1 KiB when the buffer is empty of spare room, at
// most 64 KiB, never past its maximum (empty when the buffer is full).
inline boost::beast::flat_buffer::mutable_buffers_type prepare_read(boost::beast::flat_buffer& buffer) {
  const std::size_t room = std::clamp<std::size_t>(buffer.capacity() - buffer.size(), 1024, 65536);
  return buffer.prepare(std::min(room, buffer.max_size() - buffer.size()));
}

// Feeds `parser` from `buffer`, reading `stream` whenever the buffer runs dry, until the whole message
// (`header_only`: its header) is parsed. A body that the parser stores elsewhere (string_body) leaves the
// buffer; bytes after the message stay in it for the next one. `hooks.before_read(received)` runs before
// each read (`received`: bytes read so far by this call).
template <class Stream, bool isRequest, class Hooks = NoReadHooks>
boost::asio::awaitable<boost::beast::error_code> read_message(
    Stream& stream, boost::beast::flat_buffer& buffer, boost::beast::http::basic_parser<isRequest>& parser,
    bool header_only, Hooks&& hooks = NoReadHooks{}) {
  namespace http = boost::beast::http;
  parser.eager(!header_only);
  auto finished = [&] { return header_only ? parser.is_header_done() : parser.is_done(); };
  std::size_t received = 0;
  for (;;) {
    if (buffer.size() > 0) {
      boost::beast::error_code ec;
      const bool had_header = parser.is_header_done();
      const auto data = buffer.data();
      const std::size_t used = parser.put(data, ec);
      if (!had_header && parser.is_header_done()) {
        if (auto hook_ec = hooks.on_header(std::string_view(static_cast<const char*>(data.data()), used)))
          co_return hook_ec;
      }
      buffer.consume(used);
      if (ec && ec != http::error::need_more) co_return ec;
      if (finished()) co_return boost::beast::error_code{};
      if (!ec && used > 0) continue;  // more of the buffer may parse now
    } else if (finished()) {
      co_return boost::beast::error_code{};
    }
    if (buffer.size() >= buffer.max_size()) co_return http::error::buffer_overflow;
    if (auto hook_ec = hooks.before_read(received)) co_return hook_ec;
    auto [ec, n] = co_await stream.async_read_some(prepare_read(buffer),
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
    received += n;
  }
}

}  // namespace clawbot::http::detail
