// The browser pages compiled into the binary (web/, bundled by esbuild at build time: web/build.mjs). How
// serve and the gateway answer them: web/respond.h.
#pragma once

#include <span>
#include <string_view>

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

}  // namespace clawbot::web
