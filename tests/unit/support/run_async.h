// Runs one coroutine test on a fresh io_context, with a deadline, and rethrows what it threw.
#pragma once

#include <chrono>
#include <exception>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

namespace clawbot::testing {

// `test(io)` returns an awaitable; everything on `io` stops when it returns.
template <class Test>
void run_async(Test test) {
  boost::asio::io_context io;
  bool finished = false;
  std::exception_ptr failure;
  boost::asio::co_spawn(io, test(io), [&](std::exception_ptr e) {
    finished = true;
    failure = e;
    io.stop();
  });
  io.run_for(std::chrono::seconds(20));
  ASSERT_TRUE(finished) << "the test did not finish in 20 s";
  if (failure) std::rethrow_exception(failure);
}

}  // namespace clawbot::testing
