// The alert rules: the built-in ones, the rules file (or gateway.json's "alerts") that changes them, and how
// an alert reads as JSON and as text.
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "common/http_client.h"
#include "common/json_config.h"
#include "monitor/alerts.h"
#include "monitor/series.h"

namespace clawbot::monitor {

using nlohmann::json;

namespace {

// Every series a rule may read (series.h), and the per-upstream ones after "upstream.".
constexpr std::array kSeries = {series::requests_per_s,
                                series::errors_per_s,
                                series::error_ratio,
                                series::output_tokens_per_s,
                                series::prompt_tokens_per_s,
                                series::e2e_p50_s,
                                series::e2e_p99_s,
                                series::process_rss_bytes,
                                series::memory_total_bytes,
                                series::memory_available_bytes,
                                series::memory_used_ratio,
                                series::tls_cert_days_left,
                                series::ttft_p50_s,
                                series::ttft_p99_s,
                                series::itl_p50_s,
                                series::itl_p99_s,
                                series::requests_running,
                                series::requests_waiting,
                                series::queue_full_ratio,
                                series::slots_total,
                                series::kv_cache_usage_ratio,
                                series::prefix_cache_hit_ratio,
                                series::gpu_utilization_ratio,
                                series::gpu_memory_used_bytes,
                                series::gpu_memory_total_bytes,
                                series::gpu_gtt_used_bytes,
                                series::gpu_gtt_total_bytes,
                                series::gpu_temperature_c,
                                series::gpu_power_w,
                                series::requests_in_flight,
                                series::queue_length,
                                series::upstreams_down};
constexpr std::array kUpstreamSeries = {std::string_view("up"), series::upstream_requests_per_s,
                                        series::upstream_errors_per_s, series::upstream_e2e_p99_s,
                                        series::upstream_in_flight};

const std::vector<std::string> kTopKeys = {"defaults", "rules", "webhooks"};
// (for_s before op: "for" is as near to either, and means for_s)
const std::vector<std::string> kRuleKeys = {"name",      "series",   "for_s",   "op",
                                            "threshold", "severity", "summary", "enabled"};
const std::vector<std::string> kWebhookKeys = {"url", "format", "headers", "timeout_s", "retries"};

constexpr std::size_t kMaxRules = 64;
constexpr std::size_t kMaxWebhooks = 16;

std::vector<std::string> known_series() {
  std::vector<std::string> names(kSeries.begin(), kSeries.end());
  for (auto name : kUpstreamSeries) names.push_back("upstream." + std::string(name));
  return names;
}

bool is_known_series(const std::string& name) {
  const auto all = known_series();
  return std::find(all.begin(), all.end(), name) != all.end();
}

std::optional<AlertOp> op_from(std::string_view text) {
  if (text == ">") return AlertOp::greater;
  if (text == ">=") return AlertOp::greater_equal;
  if (text == "<") return AlertOp::less;
  if (text == "<=") return AlertOp::less_equal;
  return std::nullopt;
}

class RulesParser {
 public:
  RulesParser(std::string_view role, const std::string& origin, std::string prefix,
              std::vector<std::string>& warnings)
      : role_(role), v_(origin, warnings), prefix_(std::move(prefix)) {}

  AlertConfig parse(const json& object) {
    v_.object(prefix_.empty() ? "(top level)" : prefix_.substr(0, prefix_.size() - 1), object,
              "{\"rules\": [{\"name\": \"memory_high\", \"for_s\": 120}], \"webhooks\": [{\"url\": "
              "\"http://127.0.0.1:9093/hook\"}]}");
    bool defaults = true;
    const json* rules = nullptr;
    const json* webhooks = nullptr;
    for (const auto& [key, value] : object.items()) {
      if (key == "defaults")
        defaults = v_.boolean(prefix_ + key, value);
      else if (key == "rules")
        rules = &value;
      else if (key == "webhooks")
        webhooks = &value;
      else
        v_.warn(prefix_ + key, kTopKeys);
    }
    AlertConfig config;
    if (defaults) config.rules = builtin_alert_rules(role_);
    if (rules) read_rules(*rules, config.rules);
    if (webhooks) read_webhooks(*webhooks, config.webhooks);
    return config;
  }

 private:
  void read_rules(const json& list, std::vector<AlertRule>& rules) {
    const std::string key = prefix_ + "rules";
    if (!list.is_array() || list.size() > kMaxRules)
      v_.fail(key, list,
              "an array of at most " + std::to_string(kMaxRules) +
                  " rules such as [{\"name\": \"memory_high\", \"threshold\": 0.85}]");
    const std::vector<AlertRule> builtin = builtin_alert_rules(role_);
    std::set<std::string> seen;
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string at = key + "[" + std::to_string(i) + "]";
      const json& item = list[i];
      v_.object(at, item,
                "{\"name\": \"memory_high\", \"series\": \"memory_used_ratio\", \"op\": \">=\", "
                "\"threshold\": 0.9, \"for_s\": 60}");
      auto name_it = item.find("name");
      if (name_it == item.end()) v_.fail(at, item, "an object with a \"name\"");
      const std::string name = v_.string(at + ".name", *name_it, false);
      const bool name_ok = name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
                             return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
                           });
      if (!name_ok)
        v_.fail(at + ".name", *name_it, "at most 64 letters, digits, '_' or '-' (it is the alertname label)");
      if (!seen.insert(name).second) v_.fail(at + ".name", *name_it, "a name no other rule in this list has");
      // A rule named like a built-in one changes it: what it does not say is the built-in's.
      auto base = std::find_if(builtin.begin(), builtin.end(), [&](const auto& r) { return r.name == name; });
      AlertRule rule = base != builtin.end() ? *base : AlertRule{};
      rule.name = name;
      bool has_series = base != builtin.end(), has_threshold = has_series, enabled = true;
      for (const auto& [field, value] : item.items()) {
        const std::string fkey = at + "." + field;
        if (field == "name") {
          continue;
        } else if (field == "series") {
          rule.series = v_.string(fkey, value, false);
          if (!is_known_series(rule.series)) {
            const std::string near = config::closest(rule.series, known_series());
            v_.fail(
                fkey, value,
                "the name of a series the history keeps, such as \"memory_used_ratio\", \"ttft_p99_s\" or "
                "\"upstream.up\"" +
                    (near.empty() ? std::string() : " (did you mean \"" + near + "\"?)"));
          }
          has_series = true;
        } else if (field == "op") {
          auto op = value.is_string() ? op_from(value.get<std::string>()) : std::nullopt;
          if (!op) v_.fail(fkey, value, "\">\", \">=\", \"<\" or \"<=\"");
          rule.op = *op;
        } else if (field == "threshold") {
          rule.threshold = v_.number(fkey, value, -1e15, 1e15);
          has_threshold = true;
        } else if (field == "for_s") {
          rule.for_s = v_.number(fkey, value, 0, 7 * 86400);
        } else if (field == "severity") {
          rule.severity = v_.string(fkey, value, false);
          if (rule.severity != "critical" && rule.severity != "warning" && rule.severity != "info")
            v_.fail(fkey, value, "\"critical\", \"warning\" or \"info\"");
        } else if (field == "summary") {
          rule.summary = v_.string(fkey, value);
          if (rule.summary.size() > 512) v_.fail(fkey, value, "a text of at most 512 bytes");
        } else if (field == "enabled") {
          enabled = v_.boolean(fkey, value);
        } else {
          v_.warn(fkey, kRuleKeys);
        }
      }
      if (!has_series || !has_threshold) {
        std::string names;
        for (const auto& r : builtin) names += (names.empty() ? "" : ", ") + r.name;
        v_.fail(at, item,
                "a rule with a \"series\" and a \"threshold\", or the name of a built-in rule to change (" +
                    names + ")");
      }
      if (rule.summary.empty())
        rule.summary = "{name}: " + rule.series + " is {value} (" + std::string(to_string(rule.op)) +
                       " {threshold})" + (rule.per_upstream() ? " on {upstream}" : "");
      auto existing = std::find_if(rules.begin(), rules.end(), [&](const auto& r) { return r.name == name; });
      if (!enabled) {
        if (existing != rules.end()) rules.erase(existing);
      } else if (existing != rules.end()) {
        *existing = std::move(rule);
      } else {
        rules.push_back(std::move(rule));
      }
    }
  }

  void read_webhooks(const json& list, std::vector<Webhook>& webhooks) {
    const std::string key = prefix_ + "webhooks";
    if (!list.is_array() || list.size() > kMaxWebhooks)
      v_.fail(key, list,
              "an array of at most " + std::to_string(kMaxWebhooks) +
                  " webhooks such as [{\"url\": \"http://127.0.0.1:9093/hook\", \"format\": \"json\"}]");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string at = key + "[" + std::to_string(i) + "]";
      const json& item = list[i];
      v_.object(at, item, "{\"url\": \"https://hooks.slack.com/services/...\", \"format\": \"slack\"}");
      Webhook hook;
      for (const auto& [field, value] : item.items()) {
        const std::string fkey = at + "." + field;
        if (field == "url") {
          hook.url = v_.string(fkey, value, false);
          auto parsed = http::parse_url(hook.url);
          if (!parsed || hook.url.find("://") == std::string::npos)
            v_.fail(fkey, value,
                    "an http:// or https:// URL" +
                        (parsed ? std::string() : " (" + parsed.error().message + ")"));
        } else if (field == "format") {
          const std::string format = v_.string(fkey, value);
          if (format == "json")
            hook.format = WebhookFormat::json;
          else if (format == "slack")
            hook.format = WebhookFormat::slack;
          else
            v_.fail(fkey, value, "\"json\" (Alertmanager's webhook payload) or \"slack\" ({\"text\": ...})");
        } else if (field == "headers") {
          v_.object(fkey, value, "{\"Authorization\": \"Bearer ...\"}");
          for (const auto& [name, header] : value.items()) {
            const std::string hkey = fkey + "." + name;
            const std::string text = v_.string(hkey, header);
            const auto bad = [](char c) { return c == '\r' || c == '\n' || c == '\0'; };
            if (name.empty() || std::any_of(name.begin(), name.end(), bad) ||
                std::any_of(text.begin(), text.end(), bad) || name.find(':') != std::string::npos)
              v_.fail(hkey, header, "a header name and value without ':' in the name or line breaks");
            hook.headers.emplace_back(name, text);
          }
        } else if (field == "timeout_s") {
          hook.timeout_s = v_.number(fkey, value, 0.1, 300);
        } else if (field == "retries") {
          hook.retries = static_cast<int>(v_.integer(fkey, value, 0, 10));
        } else {
          v_.warn(fkey, kWebhookKeys);
        }
      }
      if (hook.url.empty()) v_.fail(at, item, "an object with a \"url\"");
      webhooks.push_back(std::move(hook));
    }
  }

  std::string role_;
  config::Validator v_;
  std::string prefix_;
};

}  // namespace

std::string_view to_string(AlertOp op) {
  switch (op) {
    case AlertOp::greater:
      return ">";
    case AlertOp::greater_equal:
      return ">=";
    case AlertOp::less:
      return "<";
    case AlertOp::less_equal:
      return "<=";
  }
  return ">";
}

std::string_view to_string(AlertState state) {
  switch (state) {
    case AlertState::pending:
      return "pending";
    case AlertState::firing:
      return "firing";
    case AlertState::resolved:
      return "resolved";
  }
  return "pending";
}

std::vector<AlertRule> builtin_alert_rules(std::string_view role) {
  const bool serve = role == "serve", gateway = role == "gateway";
  std::vector<AlertRule> rules;
  const auto add = [&](std::string name, std::string_view series_name, AlertOp op, double threshold,
                       double for_s, std::string severity, std::string summary) {
    rules.push_back(AlertRule{std::move(name), std::string(series_name), op, threshold, for_s,
                              std::move(severity), std::move(summary)});
  };
  // The deployment guide: alert at 90% memory; a minute of it, not a spike.
  add("memory_high", series::memory_used_ratio, AlertOp::greater_equal, 0.9, 60, "critical",
      "memory used is {value} of the machine (alert at {threshold})");
  // The guide's P99 response target of 200 ms, for the first token (the P99 of the last 60 s).
  if (serve)
    add("ttft_p99_high", series::ttft_p99_s, AlertOp::greater, 0.2, 120, "warning",
        "P99 time to first token is {value} (above {threshold})");
  // A whole answer takes seconds; a minute at P99 means requests wait or run far too long.
  add("e2e_p99_high", series::e2e_p99_s, AlertOp::greater, 60, 300, "warning",
      "P99 end-to-end latency is {value} (above {threshold})");
  add("error_rate_high", series::error_ratio, AlertOp::greater, 0.05, 120, "warning",
      "{value} of the requests of the last minute failed (5xx; alert above {threshold})");
  if (serve)
    add("queue_full", series::queue_full_ratio, AlertOp::greater_equal, 1, 30, "warning",
        "the wait queue is full ({value} of --queue-max): new requests get 503");
  if (gateway)
    add("upstream_down", "upstream.up", AlertOp::less, 1, 30, "critical",
        "upstream {upstream} is down or its circuit is open");
  add("cert_expiring", series::tls_cert_days_left, AlertOp::less, 14, 0, "warning",
      "the TLS certificate expires in {value} (alert under {threshold}); renew it");
  return rules;
}

AlertConfig parse_alert_config(const json& object, std::string_view role, const std::string& origin,
                               const std::string& key_prefix, std::vector<std::string>& warnings) {
  return RulesParser(role, origin, key_prefix, warnings).parse(object);
}

AlertConfig load_alert_config(const std::filesystem::path& file, std::string_view role,
                              std::vector<std::string>& warnings) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw config::ConfigError(file.string() + ": cannot read the alert rules (" +
                              (std::filesystem::exists(file) ? "permission denied" : "no such file") + ")");
  std::ostringstream text;
  text << in.rdbuf();
  const json object = config::parse_object(text.str(), file.string());
  return parse_alert_config(object, role, file.string(), "", warnings);
}

std::string format_series_value(std::string_view series_name, double value) {
  if (series_name.starts_with("upstream.")) series_name.remove_prefix(9);
  if (series_name.ends_with("_ratio")) return fmt::format("{:.1f}%", value * 100);
  if (series_name.ends_with("_bytes")) {
    if (std::abs(value) >= double(1 << 30)) return fmt::format("{:.1f} GiB", value / double(1 << 30));
    return fmt::format("{:.1f} MiB", value / double(1 << 20));
  }
  if (series_name == series::tls_cert_days_left) return fmt::format("{:.1f} days", value);
  if (series_name.ends_with("_s")) {
    if (std::abs(value) < 1) return fmt::format("{:.0f} ms", value * 1000);
    return fmt::format("{:.2f} s", value);
  }
  return fmt::format("{:g}", value);
}

json to_json(const Alert& alert) {
  const auto time_or_null = [](const std::optional<double>& t) { return t ? json(*t) : json(nullptr); };
  json out = {{"name", alert.name},
              {"severity", alert.severity},
              {"state", to_string(alert.state)},
              {"summary", alert.summary},
              {"series", alert.series},
              {"value", alert.value},
              {"threshold", alert.threshold},
              {"op", to_string(alert.op)},
              {"for_s", alert.for_s},
              {"since", alert.since},
              {"fired_at", time_or_null(alert.fired_at)},
              {"resolved_at", time_or_null(alert.resolved_at)}};
  if (!alert.upstream.empty()) out["upstream"] = alert.upstream;
  return out;
}

}  // namespace clawbot::monitor
