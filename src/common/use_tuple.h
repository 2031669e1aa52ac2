// The completion token of our coroutines that take I/O errors as values: `auto [ec, n] = co_await
// op(use_tuple);`
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace clawbot {

inline constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);

}  // namespace clawbot
