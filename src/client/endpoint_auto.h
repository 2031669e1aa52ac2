// model_endpoint "auto": the node or gateway to use, found with mDNS/DNS-SD (discovery.h).
//
// Choice: a gateway over a node, a reachable one (it answered GET /health) over one that did not, then the
// lower latency. The choice is cached with its DNS TTL in ${XDG_CACHE_HOME:-~/.cache}/clawbot/endpoint.json
// and reused until it expires or stops answering (checked with one quick GET /health), so a question does not
// wait for mDNS every time.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace clawbot::client {

struct AutoEndpoint {
  std::string url;       // base URL: http(s)://address:port
  std::string instance;  // DNS-SD instance name
  std::string role;      // node | gateway
  std::string source;    // "cache", or the mDNS back-end that found it ("builtin", "avahi")
  bool reachable = false;
  double latency_ms = 0;
  int candidates = 0;             // services that answered (0 for a cache hit)
  std::int64_t expires_unix = 0;  // when the cached choice expires (seconds since the epoch)

  std::string describe()
      const;  // "http://10.0.0.5:5000 ('clawbot node on mini', node; found now via builtin mDNS)"
  nlohmann::json to_json() const;
};

struct AutoOptions {
  std::chrono::milliseconds browse_wait{2000};
  bool use_cache = true;
};

// Throws ConfigError when nothing answers, with a message that says what to set instead.
AutoEndpoint resolve_auto_endpoint(const AutoOptions& options = {});

std::filesystem::path endpoint_cache_path();  // ${XDG_CACHE_HOME:-~/.cache}/clawbot/endpoint.json

}  // namespace clawbot::client
