// Alerts evaluated in the process, on the history's samples (monitor/history.h): a rule compares one series
// with a threshold, and fires only after it has held for `for_s` seconds, so that a spike pages nobody.
//
// CONTRACT (issue 20).
// Rules file (`serve --alerts FILE`; the same object under "alerts" in gateway.json), read with json_read:
//   {
//     "defaults": true,            // keep the built-in rules (a rule of the same name replaces one)
//     "rules": [ { "name": "memory_high", "series": "memory_used_ratio", "op": ">=", "threshold": 0.9,
//                  "for_s": 60, "severity": "critical", "summary": "memory used {value} >= {threshold}" } ],
//     "webhooks": [ { "url": "http://127.0.0.1:9/hook", "format": "json" | "slack",
//                     "headers": { "Authorization": "..." }, "timeout_s": 5, "retries": 3 } ]
//   }
// Built-in rules: memory_high (memory_used_ratio >= 0.9, the deployment guide's figure), ttft_p99_high
// (ttft_p99_s > 0.2), e2e_p99_high (e2e_p99_s > a threshold), error_rate_high (error_ratio > 0.05),
// queue_full (queue_full_ratio >= 1), upstream_down (gateway: one alert per upstream not healthy),
// cert_expiring (tls_cert_days_left < 14).
//
// GET /api/alerts:
//   { "alerts": [ { "name", "severity", "state": "pending" | "firing" | "resolved", "summary", "series",
//                   "upstream" (only for per-upstream rules), "value", "threshold", "op", "for_s",
//                   "since" (unix s, when the condition began), "fired_at", "resolved_at" (unix s or null) }
//                   ],
//     "rules": [ { "name", "series", "op", "threshold", "for_s", "severity" } ] }
//   Resolved alerts stay listed for an hour.
// Webhook "json": Alertmanager's webhook payload (version "4", status firing|resolved, alerts[] with labels
// {alertname, severity, instance, role, upstream?}, annotations {summary}, startsAt, endsAt), so receivers
// written for Alertmanager work unchanged. "slack": {"text": "..."}. Sent on firing and on resolved, retried
// with backoff. Every transition is also one log line (spdlog warn when firing, info when resolved).
//
// Beyond the contract's fields: a rule may say "enabled": false (a built-in rule turned off), and a series
// "upstream.<series>" (the upstream's own series, or "upstream.up": 1 while healthy or standby, 0 while its
// circuit is open or it is down) makes one alert per upstream, labelled "upstream".
//
// Evaluation has no clock of its own: each Sample's time is "now", so tests drive it with hand-made samples.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "monitor/history.h"

namespace clawbot::monitor {

enum class AlertOp { greater, greater_equal, less, less_equal };
std::string_view to_string(AlertOp op);

struct AlertRule {
  std::string name;
  std::string series;  // a series::name, or "upstream.<name>" (one alert per upstream)
  AlertOp op = AlertOp::greater;
  double threshold = 0;
  double for_s = 0;
  std::string severity = "warning";  // critical | warning | info
  std::string summary;               // {name} {value} {threshold} {upstream} are filled in
  bool per_upstream() const { return series.starts_with("upstream."); }
};

enum class WebhookFormat { json, slack };

struct Webhook {
  std::string url;
  WebhookFormat format = WebhookFormat::json;
  std::vector<std::pair<std::string, std::string>> headers;
  double timeout_s = 5;
  int retries = 3;  // tries after the first one fails (a connection error, 5xx or 429)
};

struct AlertConfig {
  std::vector<AlertRule> rules;  // the built-in ones (unless "defaults": false) with the file's changes
  std::vector<Webhook> webhooks;
};

// The built-in rules of a role ("serve" or "gateway"): the deployment guide's figures.
std::vector<AlertRule> builtin_alert_rules(std::string_view role);

// The rules object (a rules file's, or gateway.json's "alerts"). Errors throw config::ConfigError naming
// `origin` and the field ("<key_prefix>rules[1].threshold"); unknown keys go to `warnings`.
AlertConfig parse_alert_config(const nlohmann::json& object, std::string_view role, const std::string& origin,
                               const std::string& key_prefix, std::vector<std::string>& warnings);
// `serve --alerts FILE`: the file read (comments allowed) and parsed. Throws config::ConfigError.
AlertConfig load_alert_config(const std::filesystem::path& file, std::string_view role,
                              std::vector<std::string>& warnings);

enum class AlertState { pending, firing, resolved };
std::string_view to_string(AlertState state);

struct Alert {
  std::string name;
  std::string severity;
  AlertState state = AlertState::pending;
  std::string summary;
  std::string series;
  std::string upstream;  // per-upstream rules only
  double value = 0;      // the last value seen while the condition held
  double threshold = 0;
  AlertOp op = AlertOp::greater;
  double for_s = 0;
  double since = 0;  // unix seconds: when the condition began
  std::optional<double> fired_at;
  std::optional<double> resolved_at;
};
nlohmann::json to_json(const Alert& alert);

// A series value as a person reads it: "93.1%" for a ratio, "250 ms" for seconds, "12.5 GiB" for bytes.
std::string format_series_value(std::string_view series, double value);

// Who sends the notices: the labels every webhook payload carries.
struct AlertSource {
  std::string role;      // serve | gateway
  std::string instance;  // host:port of the first listener
  std::string url;       // http(s)://host:port, Alertmanager's externalURL and generatorURL
};

// The source of a server listening on host:port.
AlertSource alert_source(std::string role, const std::string& host, unsigned short port, bool https);

// Alertmanager's webhook payload (version 4) for one alert's transition, and Slack's {"text"}.
nlohmann::json alertmanager_payload(const Alert& alert, const AlertSource& source);
nlohmann::json slack_payload(const Alert& alert, const AlertSource& source);

// Posts notices to webhooks from a thread of its own, never from the caller's: notify() only queues (a
// bounded queue per webhook, the oldest notice dropped when full). Each notice is tried 1 + retries times,
// waiting backoff, 2 × backoff, ... (at most 60 s) between tries.
class WebhookSender {
 public:
  struct Options {
    std::size_t queue_capacity = 256;
    double backoff_s = 1;
  };
  struct Stats {
    std::size_t delivered = 0;
    std::size_t failed = 0;   // given up after every try
    std::size_t dropped = 0;  // the queue was full
    std::size_t retries = 0;
  };
  WebhookSender(std::vector<Webhook> webhooks, Options options);
  explicit WebhookSender(std::vector<Webhook> webhooks) : WebhookSender(std::move(webhooks), Options{}) {}
  ~WebhookSender();  // stops: notices still queued are dropped
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  void notify(const Alert& alert, const AlertSource& source);
  Stats stats() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The rules evaluated on each sample (a History listener), the alerts they raise, and their notices.
class Alerts {
 public:
  Alerts(std::string role, AlertConfig config);
  ~Alerts();

  // Where notices come from (set once the listener is bound).
  void set_source(AlertSource source);
  // Called with a copy of each alert that starts firing or resolves (tests; the webhooks are called too).
  void on_transition(std::function<void(const Alert&)> callback);

  void evaluate(const Sample& sample);

  // Pending and firing alerts, then those resolved within the last hour (newest first).
  std::vector<Alert> alerts() const;
  const std::vector<AlertRule>& rules() const { return rules_; }
  // GET /api/alerts.
  nlohmann::json to_json() const;
  // The threshold of each enabled rule over a top-level series (the dashboard's lines).
  std::map<std::string, double, std::less<>> thresholds() const;
  const WebhookSender* webhooks() const { return sender_.get(); }

  static constexpr double resolved_kept_s = 3600;

 private:
  void step(const AlertRule& rule, const std::string& upstream, std::optional<double> value, double now,
            std::vector<Alert>& notices);
  static std::optional<double> value_of(const AlertRule& rule, const Sample& sample,
                                        const Sample::Upstream* upstream);

  std::string role_;
  std::vector<AlertRule> rules_;
  std::unique_ptr<WebhookSender> sender_;
  mutable std::mutex mutex_;
  AlertSource source_;
  std::function<void(const Alert&)> callback_;
  std::map<std::pair<std::string, std::string>, Alert> active_;  // (rule, upstream) -> pending or firing
  std::vector<Alert> resolved_;                                  // oldest first
};

}  // namespace clawbot::monitor
