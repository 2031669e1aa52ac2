// The browser pages compiled into the binary (web/, bundled by esbuild at build time: web/build.mjs), and how
// serve and the gateway answer them: a strong ETag with 304s, a Content-Security-Policy that allows only the
// server's own files (no inline script, no CDN), nosniff.
#pragma once

#include <span>
#include <string_view>

#include <boost/asio/awaitable.hpp>

namespace clawbot::http {
class Exchange;
}

namespace clawbot::web {

struct Asset {
  std::string_view path;  // the URL path it answers ("/dashboard", "/dashboard/app.js")
  std::string_view content_type;
  std::string_view body;
  std::string_view etag;  // strong, quoted: a hash of the body
};

// Every asset, in the order web/build.mjs wrote them.
std::span<const Asset> assets();
// The asset at `path` (a URL path without its query), or null.
const Asset* find_asset(std::string_view path);

// 200 with the body, or 304 when the request's If-None-Match names the asset's ETag; with the page's
// security headers either way.
boost::asio::awaitable<void> respond_asset(http::Exchange& exchange, const Asset& asset);

}  // namespace clawbot::web
