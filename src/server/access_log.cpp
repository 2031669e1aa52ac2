#include "server/access_log.h"

#include <algorithm>
#include <cmath>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "monitor/history.h"
#include "server/kb_routes.h"

namespace clawbot::server {
namespace {

using ordered_json = nlohmann::ordered_json;

// %j: the message as a JSON string (the JSON format's "msg").
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string text = nlohmann::json(std::string(msg.payload.data(), msg.payload.size()))
                                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

std::unique_ptr<spdlog::formatter> json_formatter(bool fields) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<JsonMessageFlag>('j');
  // Access lines bring their own fields (a JSON object's members); other lines their message as "msg".
  formatter->set_pattern(fields ? R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})"
                                : R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","msg":%j})");
  return formatter;
}

std::shared_ptr<spdlog::logger> stderr_logger(const std::string& name, LogFormat format) {
  if (auto existing = spdlog::get(name)) spdlog::drop(name);
  if (format == LogFormat::json) return spdlog::stderr_logger_mt(name);
  return spdlog::stderr_color_mt(name);
}

// A client-chosen text (a path) bounded, for a log line.
std::string bounded(std::string_view text, std::size_t max) {
  return std::string(text.size() > max ? text.substr(0, max) : text);
}

std::string route_label(std::string_view path, const std::vector<std::string>& routes) {
  for (const auto& route : routes) {
    if (route == path) return route;
  }
  if (auto kb = kb_route_label(path)) return *kb;
  return "other";
}

// The fields of an access line, in the order they are printed.
ordered_json access_fields(const http::Exchange& ex, double duration_ms, const AccessLogOptions& options) {
  ordered_json f;
  f["event"] = "access";
  const auto& remote = ex.remote_address();
  f["client"] = remote.is_unspecified() ? std::string("-") : remote.to_string();
  const auto method = ex.request().method_string();
  f["method"] = method.empty() ? std::string("-") : std::string(method.data(), method.size());
  f["path"] = ex.path().empty() ? std::string("-") : bounded(ex.path(), 200);
  f["status"] = ex.status() == 0 ? 499 : ex.status();  // no answer: the client left first (nginx's 499)
  f["duration_ms"] = std::round(duration_ms * 10) / 10;
  const auto& noted = ex.log_fields();
  for (const char* key : {"prompt_tokens", "cached_tokens", "completion_tokens", "ttft_ms", "error"}) {
    if (noted.is_object() && noted.contains(key)) f[key] = noted[key];
  }
  if (noted.is_object() && noted.contains("requested_model")) {
    f["requested_model"] = noted["requested_model"];
    f["model"] = options.model_id;  // the one that answered
  }
  return f;
}

}  // namespace

std::optional<LogFormat> parse_log_format(std::string_view name) {
  if (name == "text") return LogFormat::text;
  if (name == "json") return LogFormat::json;
  return std::nullopt;
}

void setup_logging(LogFormat format, bool verbose) {
  auto main_logger = stderr_logger("serve", format);
  auto access_logger = stderr_logger("access", format);
  if (format == LogFormat::json) {
    main_logger->set_formatter(json_formatter(false));
    access_logger->set_formatter(json_formatter(true));
  } else {
    main_logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
    access_logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  }
  spdlog::set_default_logger(main_logger);
  spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);
  access_logger->set_level(verbose ? spdlog::level::debug : spdlog::level::info);
}

std::string access_line(const http::Exchange& ex, double duration_ms, const AccessLogOptions& options) {
  const ordered_json fields = access_fields(ex, duration_ms, options);
  if (options.format == LogFormat::json) {
    const std::string object = fields.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
    return object.substr(1, object.size() - 2);  // the members: the pattern adds time and level around them
  }
  // logfmt: key=value, strings quoted (JSON escapes) when they hold a space, a quote or a control character.
  std::string line = "access";
  for (const auto& [key, value] : fields.items()) {
    if (key == "event") continue;
    line += ' ';
    line += key;
    line += '=';
    if (value.is_string()) {
      const auto& text = value.get_ref<const std::string&>();
      const bool plain = !text.empty() && text.find_first_of(" \"=\\") == std::string::npos &&
                         std::none_of(text.begin(), text.end(), [](char c) { return c < 0x20 || c == 0x7f; });
      line += plain ? text : value.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
    } else {
      line += value.dump();
    }
  }
  return line;
}

http::ExchangeObserver access_observer(monitor::Registry* metrics, AccessLogOptions options) {
  http::ExchangeObserver observer;
  auto shared = std::make_shared<const AccessLogOptions>(std::move(options));
  auto count = [metrics, shared](const http::Exchange& ex, int status) {
    if (!metrics) return;
    metrics->counter_add(
        "clawbot_http_requests_total", "HTTP requests by route and status",
        {{"route", route_label(ex.path(), shared->routes)}, {"status", std::to_string(status)}});
  };
  // Counted when the answer starts, so that a client that has read it finds it counted.
  observer.answering = [count](const http::Exchange& ex) { count(ex, ex.status()); };
  observer.ended = [count, shared](const http::Exchange& ex, std::chrono::steady_clock::duration elapsed) {
    if (ex.status() == 0) count(ex, 499);
    if (!shared->enabled) return;
    auto logger = spdlog::get("access");
    if (!logger) logger = spdlog::default_logger();
    // Probes, scrapes and a dashboard's polls come every few seconds: at debug level, so that they do not
    // drown the requests.
    const auto method = ex.request().method();
    const bool probe =
        (method == http::Verb::get || method == http::Verb::head) && monitor::monitoring_route(ex.path());
    const auto level = probe ? spdlog::level::debug : spdlog::level::info;
    if (!logger->should_log(level)) return;
    logger->log(level, "{}",
                access_line(ex, std::chrono::duration<double, std::milli>(elapsed).count(), *shared));
  };
  return observer;
}

}  // namespace clawbot::server
