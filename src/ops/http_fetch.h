// Blocking HTTP GETs of byte ranges on the project's HTTP client (src/common/http_client.h), for reading a
// GGUF header over the network and for `models pull`. Follows redirects (Hugging Face answers a download
// with a redirect to its CDN, whose signed URL carries a query string).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "common/error.h"

namespace clawbot::ops {

// The server answered with an HTTP error status (404, 403, 500, ...): asking again will not help.
class HttpStatusError : public ClawbotError {
 public:
  HttpStatusError(int status, const std::string& message)
      : ClawbotError(ErrorKind::internal, message), status_(status) {}
  int status() const noexcept { return status_; }

 private:
  int status_;
};

struct RangeResponse {
  int status = 0;  // 206 for a range, 200 when the server sent the whole file instead
  std::string body;
  std::uint64_t total_size = 0;  // the whole file's size, from Content-Range (206) or Content-Length (200)
  std::string url;               // after redirects
  std::string etag;              // empty when none
};

// GET `url` with `Range: bytes=first-last` (last: nullopt for "to the end"). A body larger than `max_body`
// fails. Throws HttpStatusError for an error status, ClawbotError naming the URL and the problem for
// the rest (connection, too many redirects); a 416 (range past the end) is returned, not thrown.
RangeResponse http_get_range(const std::string& url, std::uint64_t first, std::optional<std::uint64_t> last,
                             std::uint64_t max_body);

}  // namespace clawbot::ops
