// Blocking HTTP GETs of byte ranges on the project's HTTP client (src/common/http_client.h), for reading a
// GGUF header over the network and for `models pull`. Follows redirects (Hugging Face answers a download
// with a redirect to its CDN, whose signed URL carries a query string).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace clawbot::ops {

struct RangeResponse {
  int status = 0;  // 206 for a range, 200 when the server sent the whole file instead
  std::string body;
  std::uint64_t total_size = 0;  // the whole file's size, from Content-Range (206) or Content-Length (200)
  std::string url;               // after redirects
  std::string etag;              // empty when none
};

// GET `url` with `Range: bytes=first-last` (last: nullopt for "to the end"). A body larger than `max_body`
// fails. Throws std::runtime_error naming the URL and the problem (connection, HTTP status, too many
// redirects); a 416 (range past the end) is returned, not thrown.
RangeResponse http_get_range(const std::string& url, std::uint64_t first, std::optional<std::uint64_t> last,
                             std::uint64_t max_body);

}  // namespace clawbot::ops
