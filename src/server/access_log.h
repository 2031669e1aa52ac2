// The node's record of each HTTP exchange: clawbot_http_requests_total by route and status (every status: the
// routes' answers, the router's 404 and 405, the server's 400, 413 and 431, and 499 for a client that left
// before its answer) and one access-log line per request: time, client address, method and path, status,
// prompt/cached/generated tokens, time to first token, duration, and a model name the node does not serve.
// Never the prompt or the answer.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/logger.h>

#include "common/http_server.h"
#include "monitor/metrics.h"

namespace clawbot::server {

enum class LogFormat { text, json };

// "text" or "json"; nullopt for anything else.
std::optional<LogFormat> parse_log_format(std::string_view name);

// Sets up the process's logging on stderr: the default logger, and the "access" logger the access log writes
// to. JSON: one object a line ({"time","level","msg"}; access lines carry their fields instead of "msg"), in
// UTC, for collectors.
void setup_logging(LogFormat format, bool verbose);

struct AccessLogOptions {
  bool enabled = true;
  LogFormat format = LogFormat::text;
  std::string model_id;             // the model this node serves (a mismatch is noted against it)
  std::vector<std::string> routes;  // paths counted under their own name; anything else is "other"
};

// The line (without time and level) for an exchange that ended `duration_ms` after its request was read.
std::string access_line(const http::Exchange& ex, double duration_ms, const AccessLogOptions& options);

// The observer to give the node's HTTP server.
http::ExchangeObserver access_observer(monitor::Registry* metrics, AccessLogOptions options);

}  // namespace clawbot::server
