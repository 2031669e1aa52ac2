// How serve and the gateway answer the pages' files: a strong ETag with 304s, a Content-Security-Policy that
// allows only the server's own files (no inline script, no CDN), nosniff.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "web/assets.h"

namespace clawbot::http {
class Exchange;
}

namespace clawbot::web {

// 200 with the body, or 304 when the request's If-None-Match names the asset's ETag; with the page's
// security headers either way.
boost::asio::awaitable<void> respond_asset(http::Exchange& exchange, const Asset& asset);

}  // namespace clawbot::web
