#include "web/respond.h"

#include <string>
#include <utility>
#include <vector>

#include "common/http_server.h"

namespace clawbot::web {
namespace {

// The pages load their script, style and icon from the server that sent them and talk only to it: no inline
// script or style, no other origin, no framing by another site.
constexpr std::string_view content_security_policy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// If-None-Match: "*" or a list of entity tags, compared weakly (RFC 9110 13.1.2: W/"x" matches "x").
bool none_match(std::string_view header, std::string_view etag) {
  if (header.find('*') != std::string_view::npos) return true;
  std::size_t at = 0;
  while ((at = header.find(etag, at)) != std::string_view::npos) {
    const std::size_t end = at + etag.size();
    const bool starts = at == 0 || header[at - 1] == ' ' || header[at - 1] == ',' || header[at - 1] == '/';
    const bool ends = end == header.size() || header[end] == ' ' || header[end] == ',';
    if (starts && ends) return true;
    at = end;
  }
  return false;
}

}  // namespace

boost::asio::awaitable<void> respond_asset(http::Exchange& exchange, const Asset& asset) {
  std::vector<std::pair<std::string, std::string>> headers = {
      {"ETag", std::string(asset.etag)},
      // Asked again each time (a 304 when unchanged): a new binary's page is seen at once.
      {"Cache-Control", "no-cache"},
      {"Content-Security-Policy", std::string(content_security_policy)},
      {"X-Content-Type-Options", "nosniff"},
      {"Referrer-Policy", "no-referrer"},
  };
  const auto& request = exchange.request();
  if (auto it = request.find(boost::beast::http::field::if_none_match);
      it != request.end() &&
      none_match(std::string_view(it->value().data(), it->value().size()), asset.etag)) {
    co_await exchange.respond_text(304, std::string(), std::string(asset.content_type), std::move(headers));
    co_return;
  }
  co_await exchange.respond_text(200, std::string(asset.body), std::string(asset.content_type),
                                 std::move(headers));
}

}  // namespace clawbot::web
