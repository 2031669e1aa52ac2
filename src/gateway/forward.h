// The forwarding rules of the proxy that need no I/O: which request headers go upstream (and the gateway's
// X-Forwarded-* and X-Request-Id), which request targets may go at all, what an upstream's Retry-After asks
// for, and which first events of a stream carry nothing yet (so that a stream that ends there may be retried
// on another upstream).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/fields.hpp>

#include "gateway/upstream_pool.h"

namespace clawbot::gateway {

// The client's request headers as the upstream gets them, appended to `out` as "Name: value\r\n" lines:
// without hop-by-hop headers (RFC 9110 7.6.1: Connection and every header it names, Keep-Alive, TE, Trailer,
// Transfer-Encoding, Upgrade, Proxy-*), without Expect (the gateway's own server answered any
// 100-continue; forwarded, an upstream's interim 100 could be taken as the answer), without Host and
// Content-Length (the client sets them), without the client's credentials for the gateway (Authorization,
// x-api-key), and with X-Forwarded-For set to `client` alone: a client's own X-Forwarded-For is dropped,
// never passed ahead of the real address (the gateway trusts no proxy in front of it). X-Forwarded-Proto
// says `tls`. Returns the client's X-Request-Id, or empty when it sent none.
std::string_view append_upstream_headers(std::string& out, const boost::beast::http::fields& request,
                                         std::string_view client, bool tls);

// True for an origin-form target ("/v1/chat/completions?x=1"): the only form the proxy forwards. An
// absolute-form target ("http://elsewhere/...") would make an upstream that is itself a proxy send the
// request, with this gateway's api_key for it, wherever the client chose.
bool forwardable_target(std::string_view target) noexcept;

// An upstream's Retry-After: delay-seconds (capped at `cap`); nullopt when absent or not a number (an
// HTTP-date is rare from a busy server and read as absent).
std::optional<Clock::duration> retry_after(std::string_view value,
                                           Clock::duration cap = std::chrono::minutes(5));

// What one event of an upstream's OpenAI-style stream means for a retry, read with the bounded JSON reader.
enum class StreamEvent {
  preamble,     // a chunk that gives the client nothing yet: the role-only first delta, an empty delta
  unavailable,  // the upstream's error event saying it cannot serve now ("unavailable": shutting down, full)
  other,        // content, a finish, usage, any other error, [DONE], or something unreadable
};
StreamEvent classify_stream_event(std::string_view data);

}  // namespace clawbot::gateway
