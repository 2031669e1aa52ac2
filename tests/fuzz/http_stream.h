// Shared by the HTTP fuzz targets: bytes from the fuzzer arrive on an in-memory stream (Beast's test stream,
// in reads of a size the input chooses, then end of stream), and a coroutine runs to completion on one
// io_context. No sockets, so each input costs microseconds.
#pragma once

#include <cstddef>
#include <string_view>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>

namespace clawbot::fuzz {

inline boost::asio::io_context& io() {
  static boost::asio::io_context context;
  return context;
}

// A stream that yields `bytes` in reads of at most `read_size` bytes, then end of stream.
inline boost::beast::test::stream stream_of(std::string_view bytes, std::size_t read_size) {
  boost::beast::test::stream stream(io(), bytes);
  stream.read_size(read_size == 0 ? 1 : read_size);
  stream.close_remote();
  return stream;
}

// Runs the coroutine `make()` returns to its end.
template <class MakeAwaitable>
void run(MakeAwaitable make) {
  auto& context = io();
  boost::asio::co_spawn(context, make(), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  context.restart();
  context.run();
}

}  // namespace clawbot::fuzz
