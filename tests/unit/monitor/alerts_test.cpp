// The alert rules, their states on hand-made samples (each sample's time is the clock: no sleeping), and the
// webhook payloads and deliveries against a local receiver.
#include "monitor/alerts.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/http_server.h"
#include "common/json_config.h"
#include "monitor/series.h"

namespace clawbot::monitor {
namespace {

using nlohmann::json;

constexpr double t0 = 1'764'763'200;  // 2025-12-03 12:00:00 UTC

AlertConfig parse(const json& object, std::string_view role = "serve") {
  std::vector<std::string> warnings;
  return parse_alert_config(object, role, "rules.json", "", warnings);
}

// The message of the ConfigError that parsing `object` throws ("" when it does not).
std::string parse_error(const json& object, std::string_view role = "serve") {
  try {
    parse(object, role);
  } catch (const config::ConfigError& e) {
    return e.what();
  }
  return "";
}

const AlertRule* find_rule(const std::vector<AlertRule>& rules, std::string_view name) {
  for (const auto& rule : rules)
    if (rule.name == name) return &rule;
  return nullptr;
}

Sample memory_sample(double time, double used_ratio) {
  Sample sample;
  sample.time = time;
  sample.values[std::string(series::memory_used_ratio)] = used_ratio;
  return sample;
}

// ---------------------------------------------------------------- rules

TEST(AlertRules, BuiltInRulesFollowTheGuide) {
  const auto serve = builtin_alert_rules("serve");
  const auto* memory = find_rule(serve, "memory_high");
  ASSERT_NE(memory, nullptr);
  EXPECT_EQ(memory->series, series::memory_used_ratio);
  EXPECT_EQ(memory->op, AlertOp::greater_equal);
  EXPECT_DOUBLE_EQ(memory->threshold, 0.9);
  EXPECT_GT(memory->for_s, 0);
  const auto* ttft = find_rule(serve, "ttft_p99_high");
  ASSERT_NE(ttft, nullptr);
  EXPECT_DOUBLE_EQ(ttft->threshold, 0.2);
  for (const char* name : {"e2e_p99_high", "error_rate_high", "queue_full", "cert_expiring"})
    EXPECT_NE(find_rule(serve, name), nullptr) << name;
  EXPECT_EQ(find_rule(serve, "upstream_down"), nullptr);  // a node has no upstreams

  const auto gateway = builtin_alert_rules("gateway");
  const auto* down = find_rule(gateway, "upstream_down");
  ASSERT_NE(down, nullptr);
  EXPECT_TRUE(down->per_upstream());
  EXPECT_EQ(find_rule(gateway, "ttft_p99_high"), nullptr);
}

TEST(AlertRules, ARuleNamedLikeABuiltInChangesOnlyWhatItSays) {
  const auto config = parse({{"rules", {{{"name", "memory_high"}, {"for_s", 1}}}}});
  const auto* memory = find_rule(config.rules, "memory_high");
  ASSERT_NE(memory, nullptr);
  EXPECT_DOUBLE_EQ(memory->for_s, 1);
  EXPECT_DOUBLE_EQ(memory->threshold, 0.9);
  EXPECT_EQ(config.rules.size(), builtin_alert_rules("serve").size());
}

TEST(AlertRules, NewRulesDisabledRulesAndNoDefaults) {
  auto config = parse({{"rules",
                        {{{"name", "kv_full"},
                          {"series", "kv_cache_usage_ratio"},
                          {"op", ">"},
                          {"threshold", 0.95},
                          {"severity", "info"}},
                         {{"name", "ttft_p99_high"}, {"enabled", false}}}}});
  const auto* kv = find_rule(config.rules, "kv_full");
  ASSERT_NE(kv, nullptr);
  EXPECT_EQ(kv->severity, "info");
  EXPECT_EQ(kv->summary, "{name}: kv_cache_usage_ratio is {value} (> {threshold})");
  EXPECT_EQ(find_rule(config.rules, "ttft_p99_high"), nullptr);

  config = parse({{"defaults", false},
                  {"rules", {{{"name", "slow"}, {"series", "upstream.e2e_p99_s"}, {"threshold", 5}}}}},
                 "gateway");
  ASSERT_EQ(config.rules.size(), 1u);
  EXPECT_TRUE(config.rules[0].per_upstream());
}

TEST(AlertRules, ErrorsNameTheFieldAndWhatIsAllowed) {
  EXPECT_EQ(parse_error({{"rules", {{{"name", "m"}, {"series", "memory_used_ratoi"}, {"threshold", 1}}}}}),
            "rules.json: \"rules[0].series\" is \"memory_used_ratoi\" (a string); allowed: the name of a "
            "series the history keeps, such as \"memory_used_ratio\", \"ttft_p99_s\" or \"upstream.up\" (did "
            "you mean \"memory_used_ratio\"?)");
  EXPECT_NE(parse_error({{"rules", {{{"name", "memory_high"}, {"threshold", "90%"}}}}})
                .find("\"rules[0].threshold\" is \"90%\" (a string); allowed: a number"),
            std::string::npos);
  EXPECT_NE(parse_error({{"rules", {{{"name", "memory_high"}, {"op", "=>"}}}}}).find("\"rules[0].op\""),
            std::string::npos);
  EXPECT_NE(parse_error({{"rules", {{{"name", "mine"}, {"series", "error_ratio"}}}}})
                .find("\"rules[0]\" is {\"name\":\"mine\""),
            std::string::npos);
  EXPECT_NE(parse_error({{"rules", {{{"series", "error_ratio"}}}}}).find("an object with a \"name\""),
            std::string::npos);
  EXPECT_NE(parse_error({{"rules",
                          {{{"name", "a"}, {"series", "error_ratio"}, {"threshold", 1}},
                           {{"name", "a"}, {"series", "error_ratio"}, {"threshold", 2}}}}})
                .find("\"rules[1].name\""),
            std::string::npos);
  EXPECT_NE(parse_error({{"rules", {{{"name", "memory_high"}, {"for_s", -1}}}}}).find("\"rules[0].for_s\""),
            std::string::npos);
  EXPECT_NE(parse_error({{"webhooks", {{{"url", "ftp://x"}}}}}).find("\"webhooks[0].url\""),
            std::string::npos);
  EXPECT_NE(parse_error({{"webhooks", {{{"url", "http://h/x"}, {"format", "teams"}}}}})
                .find("\"webhooks[0].format\""),
            std::string::npos);
  EXPECT_NE(parse_error({{"webhooks", {{{"url", "http://h/x"}, {"headers", {{"X-A", "a\nb"}}}}}}})
                .find("\"webhooks[0].headers.X-A\""),
            std::string::npos);
  EXPECT_NE(parse_error({{"webhooks", {{{"format", "slack"}}}}}).find("an object with a \"url\""),
            std::string::npos);
}

TEST(AlertRules, UnknownKeysAreWarnedWithASuggestion) {
  std::vector<std::string> warnings;
  parse_alert_config({{"rules", {{{"name", "memory_high"}, {"for", 5}}}}, {"webhook", json::array()}},
                     "serve", "gateway.json", "alerts.", warnings);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_EQ(warnings[0],
            "gateway.json: unknown key \"alerts.webhook\" (ignored); did you mean \"webhooks\"?");
  EXPECT_EQ(warnings[1],
            "gateway.json: unknown key \"alerts.rules[0].for\" (ignored); did you mean \"for_s\"?");
}

TEST(AlertRules, WebhooksWithTheirDefaults) {
  const auto config = parse({{"webhooks",
                              {{{"url", "http://127.0.0.1:9/hook"}},
                               {{"url", "https://hooks.example/T/B/x"},
                                {"format", "slack"},
                                {"headers", {{"Authorization", "Bearer k"}}},
                                {"timeout_s", 2},
                                {"retries", 0}}}}});
  ASSERT_EQ(config.webhooks.size(), 2u);
  EXPECT_EQ(config.webhooks[0].format, WebhookFormat::json);
  EXPECT_EQ(config.webhooks[0].retries, 3);
  EXPECT_DOUBLE_EQ(config.webhooks[0].timeout_s, 5);
  EXPECT_EQ(config.webhooks[1].format, WebhookFormat::slack);
  ASSERT_EQ(config.webhooks[1].headers.size(), 1u);
  EXPECT_EQ(config.webhooks[1].headers[0].second, "Bearer k");
}

TEST(AlertRules, LoadsAFileWithComments) {
  const auto path =
      std::filesystem::temp_directory_path() / ("alerts_test_" + std::to_string(::getpid()) + ".json");
  {
    std::ofstream out(path);
    out << "// tighter than the guide\n{\"rules\": [{\"name\": \"memory_high\", \"threshold\": 0.8}]}\n";
  }
  std::vector<std::string> warnings;
  const auto config = load_alert_config(path, "serve", warnings);
  EXPECT_DOUBLE_EQ(find_rule(config.rules, "memory_high")->threshold, 0.8);
  {
    std::ofstream out(path);
    out << "{\"rules\": [{\"name\": \"memory_high\", \"threshold\": }]}";
  }
  try {
    load_alert_config(path, "serve", warnings);
    ADD_FAILURE() << "a file that is not JSON was read";
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON at line 1"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
  EXPECT_THROW(load_alert_config(path, "serve", warnings), config::ConfigError);
}

// ---------------------------------------------------------------- states

struct Recorder {
  std::vector<Alert> transitions;
  void attach(Alerts& alerts) {
    alerts.on_transition([this](const Alert& alert) { transitions.push_back(alert); });
  }
};

TEST(AlertStates, MemoryFiresAt90PercentAfterForAndResolves) {
  Alerts alerts("serve", parse({{"rules", {{{"name", "memory_high"}, {"for_s", 10}}}}}));
  Recorder recorder;
  recorder.attach(alerts);

  alerts.evaluate(memory_sample(t0, 0.89));
  EXPECT_TRUE(alerts.alerts().empty());  // 89%: nothing

  alerts.evaluate(memory_sample(t0 + 5, 0.90));  // 90%: pending
  auto list = alerts.alerts();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].state, AlertState::pending);
  EXPECT_DOUBLE_EQ(list[0].since, t0 + 5);
  EXPECT_FALSE(list[0].fired_at.has_value());
  EXPECT_TRUE(recorder.transitions.empty());

  alerts.evaluate(memory_sample(t0 + 10, 0.95));  // 5 s of 10: still pending
  EXPECT_EQ(alerts.alerts()[0].state, AlertState::pending);

  alerts.evaluate(memory_sample(t0 + 15, 0.93));  // 10 s: firing
  list = alerts.alerts();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].state, AlertState::firing);
  EXPECT_DOUBLE_EQ(*list[0].fired_at, t0 + 15);
  EXPECT_DOUBLE_EQ(list[0].value, 0.93);
  EXPECT_EQ(list[0].summary, "memory used is 93.0% of the machine (alert at 90.0%)");
  ASSERT_EQ(recorder.transitions.size(), 1u);
  EXPECT_EQ(recorder.transitions[0].state, AlertState::firing);

  alerts.evaluate(memory_sample(t0 + 20, 0.97));  // still firing: no second notice
  EXPECT_EQ(recorder.transitions.size(), 1u);
  EXPECT_DOUBLE_EQ(alerts.alerts()[0].value, 0.97);

  alerts.evaluate(memory_sample(t0 + 25, 0.5));  // resolved
  list = alerts.alerts();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].state, AlertState::resolved);
  EXPECT_DOUBLE_EQ(*list[0].resolved_at, t0 + 25);
  EXPECT_DOUBLE_EQ(list[0].value, 0.5);
  ASSERT_EQ(recorder.transitions.size(), 2u);
  EXPECT_EQ(recorder.transitions[1].state, AlertState::resolved);

  // Kept for an hour, then gone.
  alerts.evaluate(memory_sample(t0 + 25 + 3600, 0.5));
  EXPECT_EQ(alerts.alerts().size(), 1u);
  alerts.evaluate(memory_sample(t0 + 25 + 3601, 0.5));
  EXPECT_TRUE(alerts.alerts().empty());
}

TEST(AlertStates, ASpikeShorterThanForPagesNobody) {
  Alerts alerts("serve", parse({{"rules", {{{"name", "memory_high"}, {"for_s", 60}}}}}));
  Recorder recorder;
  recorder.attach(alerts);
  alerts.evaluate(memory_sample(t0, 0.99));
  alerts.evaluate(memory_sample(t0 + 55, 0.99));
  alerts.evaluate(memory_sample(t0 + 60 - 1e-3, 0.2));
  EXPECT_TRUE(alerts.alerts().empty());  // a pending alert that ends is not "resolved": it never fired
  EXPECT_TRUE(recorder.transitions.empty());
  // It begins again from the start.
  alerts.evaluate(memory_sample(t0 + 70, 0.99));
  alerts.evaluate(memory_sample(t0 + 129, 0.99));
  EXPECT_EQ(alerts.alerts()[0].state, AlertState::pending);
  alerts.evaluate(memory_sample(t0 + 130, 0.99));
  EXPECT_EQ(alerts.alerts()[0].state, AlertState::firing);
}

TEST(AlertStates, ForZeroFiresOnTheFirstSampleAndAnAbsentSeriesResolves) {
  Alerts alerts("serve",
                parse({{"defaults", false},
                       {"rules", {{{"name", "slow"}, {"series", "ttft_p99_s"}, {"threshold", 0.2}}}}}));
  Recorder recorder;
  recorder.attach(alerts);
  Sample sample;
  sample.time = t0;
  sample.values["ttft_p99_s"] = 0.25;
  alerts.evaluate(sample);
  ASSERT_EQ(recorder.transitions.size(), 1u);
  EXPECT_EQ(recorder.transitions[0].state, AlertState::firing);
  EXPECT_EQ(recorder.transitions[0].summary, "slow: ttft_p99_s is 250 ms (> 200 ms)");
  sample.time = t0 + 5;
  sample.values.clear();  // no request in the window: the P99 is unknown, not 0
  alerts.evaluate(sample);
  ASSERT_EQ(recorder.transitions.size(), 2u);
  EXPECT_EQ(recorder.transitions[1].state, AlertState::resolved);
  EXPECT_DOUBLE_EQ(recorder.transitions[1].value, 0.25);  // the last value known
}

TEST(AlertStates, OneAlertPerUpstreamThatIsDown) {
  Alerts alerts("gateway", parse({{"rules", {{{"name", "upstream_down"}, {"for_s", 2}}}}}, "gateway"));
  Recorder recorder;
  recorder.attach(alerts);
  const auto sample = [](double time, const char* a, const char* b) {
    Sample s;
    s.time = time;
    s.upstreams["node-a"].state = a;
    s.upstreams["node-b"].state = b;
    return s;
  };
  alerts.evaluate(sample(t0, "healthy", "standby"));
  EXPECT_TRUE(alerts.alerts().empty());
  alerts.evaluate(sample(t0 + 1, "healthy", "down"));
  alerts.evaluate(sample(t0 + 2, "open", "down"));
  alerts.evaluate(sample(t0 + 3, "open", "down"));
  auto list = alerts.alerts();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].upstream, "node-b");
  EXPECT_EQ(list[0].state, AlertState::firing);
  EXPECT_EQ(list[0].summary, "upstream node-b is down or its circuit is open");
  EXPECT_EQ(list[1].upstream, "node-a");
  EXPECT_EQ(list[1].state, AlertState::pending);
  alerts.evaluate(sample(t0 + 4, "open", "healthy"));
  alerts.evaluate(sample(t0 + 5, "healthy", "healthy"));
  ASSERT_EQ(recorder.transitions.size(), 4u);  // b fired; a fired, b resolved; a resolved
  list = alerts.alerts();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].state, AlertState::resolved);
  EXPECT_EQ(list[0].upstream, "node-a");
  EXPECT_EQ(json(to_json(list[0]))["upstream"], "node-a");
}

TEST(AlertStates, CertificateExpiring) {
  Alerts alerts("serve", parse(json::object()));
  Recorder recorder;
  recorder.attach(alerts);
  Sample sample = memory_sample(t0, 0.1);  // no TLS: the series is absent, nothing fires
  alerts.evaluate(sample);
  sample.values["tls_cert_days_left"] = 20;
  alerts.evaluate(sample);
  EXPECT_TRUE(alerts.alerts().empty());
  sample.values["tls_cert_days_left"] = 13;
  alerts.evaluate(sample);
  ASSERT_EQ(recorder.transitions.size(), 1u);
  EXPECT_EQ(recorder.transitions[0].name, "cert_expiring");
  EXPECT_EQ(recorder.transitions[0].summary,
            "the TLS certificate expires in 13.0 days (alert under 14.0 days); renew it");
}

TEST(AlertStates, ApiJsonAndThresholds) {
  Alerts alerts("serve", parse({{"rules", {{{"name", "memory_high"}, {"for_s", 0}}}}}));
  alerts.evaluate(memory_sample(t0, 0.95));
  const json body = alerts.to_json();
  ASSERT_EQ(body["alerts"].size(), 1u);
  const json& alert = body["alerts"][0];
  EXPECT_EQ(alert["name"], "memory_high");
  EXPECT_EQ(alert["state"], "firing");
  EXPECT_EQ(alert["severity"], "critical");
  EXPECT_EQ(alert["series"], "memory_used_ratio");
  EXPECT_EQ(alert["op"], ">=");
  EXPECT_EQ(alert["value"], 0.95);
  EXPECT_EQ(alert["threshold"], 0.9);
  EXPECT_EQ(alert["since"], t0);
  EXPECT_EQ(alert["fired_at"], t0);
  EXPECT_TRUE(alert["resolved_at"].is_null());
  EXPECT_FALSE(alert.contains("upstream"));
  EXPECT_EQ(body["rules"].size(), builtin_alert_rules("serve").size());
  EXPECT_EQ(body["rules"][0], json({{"name", "memory_high"},
                                    {"series", "memory_used_ratio"},
                                    {"op", ">="},
                                    {"threshold", 0.9},
                                    {"for_s", 0.0},
                                    {"severity", "critical"}}));
  const auto lines = alerts.thresholds();
  EXPECT_DOUBLE_EQ(lines.at("memory_used_ratio"), 0.9);
  EXPECT_DOUBLE_EQ(lines.at("ttft_p99_s"), 0.2);
}

// ---------------------------------------------------------------- payloads

Alert firing_alert() {
  return Alert{.name = "upstream_down",
               .severity = "critical",
               .state = AlertState::firing,
               .summary = "upstream node-b is down",
               .series = "upstream.up",
               .upstream = "node-b",
               .value = 0,
               .threshold = 1,
               .op = AlertOp::less,
               .for_s = 30,
               .since = t0,
               .fired_at = t0 + 30.25,
               .resolved_at = std::nullopt};
}

TEST(AlertPayloads, AlertmanagerWebhookFormat) {
  const AlertSource source{"gateway", "127.0.0.1:8080", "http://127.0.0.1:8080"};
  json payload = alertmanager_payload(firing_alert(), source);
  EXPECT_EQ(payload["version"], "4");
  EXPECT_EQ(payload["status"], "firing");
  EXPECT_EQ(payload["receiver"], "clawbot");
  EXPECT_EQ(payload["groupKey"], "{}:{alertname=\"upstream_down\"}");
  EXPECT_EQ(payload["externalURL"], "http://127.0.0.1:8080");
  ASSERT_EQ(payload["alerts"].size(), 1u);
  const json alert = payload["alerts"][0];  // (a copy: payload is replaced below)
  EXPECT_EQ(alert["status"], "firing");
  EXPECT_EQ(alert["labels"], json({{"alertname", "upstream_down"},
                                   {"severity", "critical"},
                                   {"instance", "127.0.0.1:8080"},
                                   {"role", "gateway"},
                                   {"upstream", "node-b"}}));
  EXPECT_EQ(alert["annotations"]["summary"], "upstream node-b is down");
  EXPECT_EQ(alert["startsAt"], "2025-12-03T12:00:30.250Z");
  EXPECT_EQ(alert["endsAt"], "0001-01-01T00:00:00Z");
  EXPECT_EQ(alert["generatorURL"], "http://127.0.0.1:8080/api/alerts");
  EXPECT_EQ(alert["fingerprint"].get<std::string>().size(), 16u);
  EXPECT_EQ(payload["commonLabels"], alert["labels"]);

  Alert resolved = firing_alert();
  resolved.state = AlertState::resolved;
  resolved.resolved_at = t0 + 90;
  payload = alertmanager_payload(resolved, source);
  EXPECT_EQ(payload["status"], "resolved");
  EXPECT_EQ(payload["alerts"][0]["endsAt"], "2025-12-03T12:01:30.000Z");
  EXPECT_EQ(payload["alerts"][0]["fingerprint"], alert["fingerprint"]);  // the same alert
}

TEST(AlertPayloads, SlackText) {
  const AlertSource source{"gateway", "127.0.0.1:8080", ""};
  EXPECT_EQ(slack_payload(firing_alert(), source),
            json({{"text",
                   ":rotating_light: [FIRING] upstream_down on gateway 127.0.0.1:8080 (upstream node-b): "
                   "upstream node-b is down (severity critical)"}}));
}

TEST(AlertPayloads, ValuesAsPeopleReadThem) {
  EXPECT_EQ(format_series_value("memory_used_ratio", 0.9), "90.0%");
  EXPECT_EQ(format_series_value("ttft_p99_s", 0.2), "200 ms");
  EXPECT_EQ(format_series_value("e2e_p99_s", 61.5), "61.50 s");
  EXPECT_EQ(format_series_value("process_rss_bytes", 3.0 * (1 << 30)), "3.0 GiB");
  EXPECT_EQ(format_series_value("upstream.e2e_p99_s", 0.05), "50 ms");
  EXPECT_EQ(format_series_value("requests_waiting", 3), "3");
}

// ---------------------------------------------------------------- deliveries

// A webhook receiver on its own thread: answers each POST with the next status of its script (then 200) and
// keeps the bodies.
class Receiver {
 public:
  explicit Receiver(std::deque<int> statuses) : statuses_(std::move(statuses)) {
    auto router = std::make_shared<http::Router>();
    router->add(http::Verb::post, "/hook", [this](http::Exchange& ex) -> boost::asio::awaitable<void> {
      while (hold_) {  // (a receiver that takes its time)
        boost::asio::steady_timer timer(ex.executor(), std::chrono::milliseconds(5));
        co_await timer.async_wait(boost::asio::use_awaitable);
      }
      int status = 200;
      {
        std::lock_guard lock(mutex_);
        bodies_.push_back(json::parse(ex.request().body()));
        if (!statuses_.empty()) status = statuses_.front(), statuses_.pop_front();
      }
      changed_.notify_all();
      const json answer = {{"ok", status == 200}};
      co_await ex.respond_json(status, answer);
    });
    server_ = std::make_unique<http::Server>(io_, router, http::ServerLimits{});
    port_ = server_->listen("127.0.0.1", 0);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Receiver() {
    server_->stop();
    io_.stop();
    thread_.join();
  }
  void hold(bool on) { hold_ = on; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  // The bodies once there are `count` (or what came within 20 s).
  std::vector<json> wait_for(std::size_t count) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, std::chrono::seconds(20), [&] { return bodies_.size() >= count; });
    return bodies_;
  }

 private:
  boost::asio::io_context io_;
  std::unique_ptr<http::Server> server_;
  unsigned short port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<int> statuses_;
  std::vector<json> bodies_;
  std::atomic<bool> hold_ = false;
};

Webhook webhook(std::string url, WebhookFormat format, double timeout_s, int retries) {
  Webhook hook;
  hook.url = std::move(url);
  hook.format = format;
  hook.timeout_s = timeout_s;
  hook.retries = retries;
  return hook;
}

// The sender's counts once `done` holds them (or what they are after 20 s).
WebhookSender::Stats wait_stats(const WebhookSender& sender,
                                const std::function<bool(const WebhookSender::Stats&)>& done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  auto stats = sender.stats();
  while (!done(stats) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    stats = sender.stats();
  }
  return stats;
}

TEST(WebhookDelivery, RetriedAfterFailuresThenDelivered) {
  Receiver receiver({500, 503});
  WebhookSender sender({webhook(receiver.url(), WebhookFormat::json, 5, 3)}, {.backoff_s = 0.01});
  sender.notify(firing_alert(), {"gateway", "127.0.0.1:8080", "http://127.0.0.1:8080"});
  const auto bodies = receiver.wait_for(3);
  ASSERT_EQ(bodies.size(), 3u);
  for (const auto& body : bodies) EXPECT_EQ(body["alerts"][0]["labels"]["alertname"], "upstream_down");
  const auto stats = wait_stats(sender, [](const auto& s) { return s.delivered == 1; });
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.retries, 2u);
  EXPECT_EQ(stats.failed, 0u);
}

TEST(WebhookDelivery, AClientErrorIsNotRetriedAndSlackGetsText) {
  Receiver receiver({400});
  WebhookSender sender({webhook(receiver.url(), WebhookFormat::slack, 5, 3)}, {.backoff_s = 0.01});
  sender.notify(firing_alert(), {"gateway", "127.0.0.1:8080", ""});
  const auto stats = wait_stats(sender, [](const auto& s) { return s.failed == 1; });
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_EQ(stats.retries, 0u);
  const auto bodies = receiver.wait_for(1);
  ASSERT_EQ(bodies.size(), 1u);
  EXPECT_TRUE(bodies[0]["text"].get<std::string>().starts_with(":rotating_light: [FIRING] upstream_down"));
}

TEST(WebhookDelivery, NothingListeningGivesUpAfterItsRetries) {
  // A port nothing listens on: a receiver started and stopped.
  std::string url;
  { url = Receiver({}).url(); }
  WebhookSender sender({webhook(url, WebhookFormat::json, 2, 2)}, {.backoff_s = 0.01});
  sender.notify(firing_alert(), {"gateway", "127.0.0.1:8080", ""});
  const auto stats = wait_stats(sender, [](const auto& s) { return s.failed == 1; });
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_EQ(stats.retries, 2u);
}

TEST(WebhookDelivery, AFullQueueDropsTheOldest) {
  Receiver receiver({});
  receiver.hold(true);
  // Far more notices than the queue holds, sent while the first is still on its way.
  WebhookSender sender({webhook(receiver.url(), WebhookFormat::json, 5, 3)},
                       {.queue_capacity = 2, .backoff_s = 0.01});
  for (int i = 0; i < 50; ++i) sender.notify(firing_alert(), {"gateway", "127.0.0.1:8080", ""});
  wait_stats(sender, [](const auto& s) { return s.dropped >= 47; });
  receiver.hold(false);
  const auto stats = wait_stats(sender, [](const auto& s) { return s.delivered + s.dropped == 50; });
  EXPECT_EQ(stats.delivered + stats.dropped, 50u);
  EXPECT_GE(stats.dropped, 47u);  // at most the one in flight and the two queued get through
}

TEST(WebhookDelivery, AlertsPostOnFiringAndResolved) {
  Receiver receiver({});
  AlertConfig config = parse(
      {{"rules", {{{"name", "memory_high"}, {"for_s", 0}}}}, {"webhooks", {{{"url", receiver.url()}}}}});
  Alerts alerts("serve", std::move(config));
  alerts.set_source({"serve", "127.0.0.1:5000", "http://127.0.0.1:5000"});
  alerts.evaluate(memory_sample(t0, 0.95));
  alerts.evaluate(memory_sample(t0 + 5, 0.5));
  const auto bodies = receiver.wait_for(2);
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_EQ(bodies[0]["status"], "firing");
  EXPECT_EQ(bodies[0]["alerts"][0]["labels"]["instance"], "127.0.0.1:5000");
  EXPECT_EQ(bodies[1]["status"], "resolved");
}

}  // namespace
}  // namespace clawbot::monitor
