// WebSocket over the server's PlainOrTlsStream (a connection an HTTP handler takes over with
// Exchange::take_over()): Beast's websocket::stream<tls::PlainOrTlsStream&> needs to know how to tear the
// connection down, which these overloads (found by argument-dependent lookup) tell it.
#pragma once

#include <boost/beast/websocket.hpp>

#include "common/tls.h"

namespace clawbot::tls {

// What a timed-out or failed websocket operation does to the connection: close it.
inline void beast_close_socket(PlainOrTlsStream& stream) {
  boost::beast::error_code ignored;
  stream.tcp().socket().close(ignored);
}

inline void teardown(boost::beast::role_type role, PlainOrTlsStream& stream, boost::beast::error_code& ec) {
  boost::beast::websocket::teardown(role, stream.tcp().socket(), ec);
}

template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, PlainOrTlsStream& stream, TeardownHandler&& handler) {
  // The TCP connection's own teardown: a TLS peer sees the close frame, then the end of the connection.
  boost::beast::websocket::async_teardown(role, stream.tcp().socket(),
                                          std::forward<TeardownHandler>(handler));
}

}  // namespace clawbot::tls
