// The alert engine: each rule's condition on each sample, the for_s wait (pending), firing and resolved, one
// log line per transition, and the notices for the webhooks.
#include "monitor/alerts.h"

#include <algorithm>
#include <cmath>

#include <spdlog/spdlog.h>

namespace clawbot::monitor {

using nlohmann::json;

namespace {

bool holds(double value, AlertOp op, double threshold) {
  switch (op) {
    case AlertOp::greater:
      return value > threshold;
    case AlertOp::greater_equal:
      return value >= threshold;
    case AlertOp::less:
      return value < threshold;
    case AlertOp::less_equal:
      return value <= threshold;
  }
  return false;
}

std::string render_summary(const AlertRule& rule, const std::string& upstream, double value) {
  std::string out;
  const std::string_view text = rule.summary;
  for (std::size_t i = 0; i < text.size();) {
    const auto open = text.find('{', i);
    if (open == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    out.append(text.substr(i, open - i));
    const auto close = text.find('}', open);
    if (close == std::string_view::npos) {
      out.append(text.substr(open));
      break;
    }
    const std::string_view field = text.substr(open + 1, close - open - 1);
    if (field == "value")
      out += format_series_value(rule.series, value);
    else if (field == "threshold")
      out += format_series_value(rule.series, rule.threshold);
    else if (field == "upstream")
      out += upstream;
    else if (field == "name")
      out += rule.name;
    else
      out.append(text.substr(open, close - open + 1));  // not ours: as written
    i = close + 1;
  }
  return out;
}

std::string where(const Alert& alert) {
  return alert.upstream.empty() ? std::string() : " (upstream " + alert.upstream + ")";
}

}  // namespace

Alerts::Alerts(std::string role, AlertConfig config)
    : role_(std::move(role)), rules_(std::move(config.rules)) {
  if (!config.webhooks.empty()) sender_ = std::make_unique<WebhookSender>(std::move(config.webhooks));
}

Alerts::~Alerts() = default;

void Alerts::set_source(AlertSource source) {
  std::lock_guard lock(mutex_);
  source_ = std::move(source);
}

void Alerts::on_transition(std::function<void(const Alert&)> callback) {
  std::lock_guard lock(mutex_);
  callback_ = std::move(callback);
}

std::optional<double> Alerts::value_of(const AlertRule& rule, const Sample& sample,
                                       const Sample::Upstream* upstream) {
  std::optional<double> value;
  if (upstream != nullptr) {
    const std::string_view name = std::string_view(rule.series).substr(9);  // after "upstream."
    if (name == "up") {
      value = upstream->state == "healthy" || upstream->state == "standby" ? 1.0 : 0.0;
    } else if (auto it = upstream->values.find(name); it != upstream->values.end()) {
      value = it->second;
    }
  } else if (auto it = sample.values.find(rule.series); it != sample.values.end()) {
    value = it->second;
  }
  if (value && !std::isfinite(*value)) return std::nullopt;  // unknown, as absent
  return value;
}

void Alerts::evaluate(const Sample& sample) {
  std::vector<Alert> notices;
  std::function<void(const Alert&)> callback;
  AlertSource source;
  {
    std::lock_guard lock(mutex_);
    const double now = sample.time;
    for (const auto& rule : rules_) {
      if (!rule.per_upstream()) {
        step(rule, "", value_of(rule, sample, nullptr), now, notices);
        continue;
      }
      for (const auto& [name, upstream] : sample.upstreams)
        step(rule, name, value_of(rule, sample, &upstream), now, notices);
      // An upstream the sample no longer names: its condition is unknown, so it ends.
      for (auto it = active_.lower_bound({rule.name, ""});
           it != active_.end() && it->first.first == rule.name;) {
        const std::string upstream = (it++)->first.second;
        if (!sample.upstreams.contains(upstream)) step(rule, upstream, std::nullopt, now, notices);
      }
    }
    const auto expired = std::find_if(resolved_.begin(), resolved_.end(), [&](const Alert& a) {
      return now - a.resolved_at.value_or(now) <= resolved_kept_s;
    });
    resolved_.erase(resolved_.begin(), expired);
    callback = callback_;
    source = source_;
  }
  for (const auto& alert : notices) {
    if (sender_) sender_->notify(alert, source);
    if (callback) callback(alert);
  }
}

void Alerts::step(const AlertRule& rule, const std::string& upstream, std::optional<double> value, double now,
                  std::vector<Alert>& notices) {
  const bool condition = value && holds(*value, rule.op, rule.threshold);
  const auto key = std::make_pair(rule.name, upstream);
  auto it = active_.find(key);
  if (it == active_.end()) {
    if (!condition) return;
    Alert alert{.name = rule.name,
                .severity = rule.severity,
                .state = AlertState::pending,
                .summary = render_summary(rule, upstream, *value),
                .series = rule.series,
                .upstream = upstream,
                .value = *value,
                .threshold = rule.threshold,
                .op = rule.op,
                .for_s = rule.for_s,
                .since = now,
                .fired_at = std::nullopt,
                .resolved_at = std::nullopt};
    it = active_.emplace(key, std::move(alert)).first;
    if (rule.for_s > 0) {
      spdlog::info("alert {} pending{}: {} (firing if it holds for {:g} s)", rule.name, where(it->second),
                   it->second.summary, rule.for_s);
      return;
    }
  }
  Alert& alert = it->second;
  if (value) {
    alert.value = *value;
    alert.summary = render_summary(rule, upstream, *value);
  }
  if (condition) {
    if (alert.state == AlertState::pending && now - alert.since >= rule.for_s) {
      alert.state = AlertState::firing;
      alert.fired_at = now;
      spdlog::warn("alert {} firing{}: {}", rule.name, where(alert), alert.summary);
      notices.push_back(alert);
    }
    return;
  }
  if (alert.state == AlertState::pending) {
    spdlog::info("alert {} no longer pending{}: the condition ended before {:g} s", rule.name, where(alert),
                 rule.for_s);
    active_.erase(it);
    return;
  }
  alert.state = AlertState::resolved;
  alert.resolved_at = now;
  spdlog::info("alert {} resolved{} after {:.0f} s: {} is {} (rule: {} {})", rule.name, where(alert),
               now - alert.fired_at.value_or(alert.since), rule.series,
               value ? format_series_value(rule.series, *value) : std::string("no longer known"),
               to_string(rule.op), format_series_value(rule.series, rule.threshold));
  notices.push_back(alert);
  resolved_.push_back(std::move(alert));
  active_.erase(it);
}

std::vector<Alert> Alerts::alerts() const {
  std::lock_guard lock(mutex_);
  std::vector<Alert> out;
  for (const auto state : {AlertState::firing, AlertState::pending})
    for (const auto& [key, alert] : active_)
      if (alert.state == state) out.push_back(alert);
  out.insert(out.end(), resolved_.rbegin(), resolved_.rend());
  return out;
}

json Alerts::to_json() const {
  json alerts = json::array();
  for (const auto& alert : this->alerts()) alerts.push_back(monitor::to_json(alert));
  json rules = json::array();
  for (const auto& rule : rules_)
    rules.push_back({{"name", rule.name},
                     {"series", rule.series},
                     {"op", to_string(rule.op)},
                     {"threshold", rule.threshold},
                     {"for_s", rule.for_s},
                     {"severity", rule.severity}});
  return {{"alerts", std::move(alerts)}, {"rules", std::move(rules)}};
}

std::map<std::string, double, std::less<>> Alerts::thresholds() const {
  std::map<std::string, double, std::less<>> out;
  for (const auto& rule : rules_)
    if (!rule.per_upstream()) out.emplace(rule.series, rule.threshold);
  return out;
}

}  // namespace clawbot::monitor
