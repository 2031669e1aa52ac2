#include "ops/http_fetch.h"

#include <stdexcept>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "common/error.h"
#include "common/http_client.h"

namespace clawbot::ops {
namespace {

namespace asio = boost::asio;

constexpr int max_redirects = 8;

// The client takes a base URL without a query; the query travels in the request target instead.
struct SplitUrl {
  http::Url base;
  std::string target;
};

SplitUrl split_url(const std::string& url) {
  const auto query = url.find('?');
  const std::string without_query = url.substr(0, query);
  auto parsed = http::parse_url(without_query);
  if (!parsed) throw ClawbotError(ErrorKind::internal, parsed.error().message);
  SplitUrl out{*parsed, {}};
  if (out.base.path.empty()) out.target = "/";
  if (query != std::string::npos) out.target += url.substr(query);
  return out;
}

// A Location header may be absolute, or a path on the same origin.
std::string resolve_location(const std::string& from, const std::string& location) {
  if (location.find("://") != std::string::npos) return location;
  const auto parsed = split_url(from);
  if (!location.empty() && location.front() == '/') return parsed.base.origin() + location;
  const auto slash = parsed.base.path.rfind('/');
  return parsed.base.origin() + parsed.base.path.substr(0, slash == std::string::npos ? 0 : slash + 1) +
         location;
}

std::uint64_t parse_u64(std::string_view text) {
  std::uint64_t value = 0;
  bool any = false;
  for (char c : text) {
    if (c < '0' || c > '9') break;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
    any = true;
  }
  return any ? value : 0;
}

}  // namespace

RangeResponse http_get_range(const std::string& url, std::uint64_t first, std::optional<std::uint64_t> last,
                             std::uint64_t max_body) {
  std::string current = url;
  for (int hop = 0; hop <= max_redirects; ++hop) {
    const SplitUrl split = split_url(current);
    http::ClientOptions options;
    options.max_body_bytes = static_cast<std::size_t>(max_body);
    options.read_timeout = std::chrono::milliseconds(60'000);
    options.headers.emplace_back(
        "Range", "bytes=" + std::to_string(first) + "-" + (last ? std::to_string(*last) : std::string()));
    asio::io_context io;
    std::optional<http::Result<http::Response>> result;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          http::Client client(io.get_executor(), split.base, options);
          result = co_await client.get(split.target);
        },
        asio::detached);
    io.run();
    if (!result) throw ClawbotError(ErrorKind::internal, "the request to " + current + " did not complete");
    if (!*result) throw ClawbotError(ErrorKind::internal, result->error().message);
    http::Response& response = **result;
    if (response.status >= 300 && response.status < 400) {
      auto location = response.headers.find(boost::beast::http::field::location);
      if (location == response.headers.end()) {
        throw ClawbotError(ErrorKind::internal, current + " answered " + std::to_string(response.status) +
                                                    " without a Location header");
      }
      current = resolve_location(current, std::string(location->value()));
      continue;
    }
    RangeResponse out;
    out.status = response.status;
    out.url = current;
    if (auto etag = response.headers.find(boost::beast::http::field::etag); etag != response.headers.end()) {
      out.etag = std::string(etag->value());
    }
    if (response.status == 206) {
      // Content-Range: bytes first-last/total
      auto range = response.headers.find(boost::beast::http::field::content_range);
      if (range != response.headers.end()) {
        const std::string_view value = range->value();
        if (auto slash = value.rfind('/'); slash != std::string_view::npos) {
          out.total_size = parse_u64(value.substr(slash + 1));
        }
      }
    } else if (response.status == 200) {
      out.total_size = response.body.size();
    } else if (response.status == 416) {
      auto range = response.headers.find(boost::beast::http::field::content_range);
      if (range != response.headers.end()) {
        const std::string_view value = range->value();
        if (auto slash = value.rfind('/'); slash != std::string_view::npos) {
          out.total_size = parse_u64(value.substr(slash + 1));
        }
      }
      return out;
    } else {
      std::string detail = response.body.substr(0, 200);
      throw HttpStatusError(response.status,
                            current + " answered HTTP " + std::to_string(response.status) +
                                (response.status == 404 ? " (not found: check the URL)" : "") +
                                (response.status == 401 || response.status == 403
                                     ? " (access denied: the file may need a login or a token)"
                                     : "") +
                                (detail.empty() ? "" : ": " + detail));
    }
    out.body = std::move(response.body);
    return out;
  }
  throw ClawbotError(ErrorKind::internal,
                     url + ": more than " + std::to_string(max_redirects) + " redirects");
}

}  // namespace clawbot::ops
