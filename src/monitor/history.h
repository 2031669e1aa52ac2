// The in-process metrics history: serve and gateway sample their own Registry every few seconds into a ring
// buffer (the last hour at 5 s by default, memory fixed at construction, nothing on disk), so a dashboard
// opened now shows the last hour, and the alert rules read the same samples.
//
// CONTRACT (issue 20). The JSON of GET /api/metrics/history?since=<unix seconds, optional>:
//   {
//     "role": "serve" | "gateway",
//     "interval_s": 5, "retention_s": 3600,
//     "now": 1764763200.5,                       // unix seconds, the server's clock
//     "t": [1764763195.0, ...],                  // sample times (unix s), ascending, each > since
//     "series": { "<series::name>": [number | null, ...] },   // every array as long as "t"
//     "upstreams": { "<name>": { "state": ["healthy" | "open" | "standby" | "down", ...],
//                                "series": { "<series::upstream_*>": [...] } } },   // gateway only
//     "keys": [ { "id", "name", "requests", "prompt_tokens", "completion_tokens" } ],   // gateway only
//     "thresholds": { "<series name>": number }  // from the alert rules (the 90% memory line, 0.2 s TTFT)
//   }
// On the gateway the route is behind the same keys as every route.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace clawbot::monitor {

class Registry;

// One sampling instant. A series that cannot be known at that instant is absent from `values`.
struct Sample {
  double time = 0;  // unix seconds
  std::map<std::string, double, std::less<>> values;
  struct Upstream {
    std::string state;  // healthy | open | standby | down
    std::map<std::string, double, std::less<>> values;
  };
  std::map<std::string, Upstream, std::less<>> upstreams;  // gateway only
};

}  // namespace clawbot::monitor
