// Alert notices to webhooks: Alertmanager's payload (or Slack's), posted from a thread of its own with the
// project's HTTP client, a bounded queue per webhook, and retries with backoff.
#include <chrono>
#include <cmath>
#include <ctime>
#include <deque>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/http_client.h"
#include "monitor/alerts.h"

namespace clawbot::monitor {

using nlohmann::json;
namespace asio = boost::asio;

namespace {

// RFC 3339 in UTC with milliseconds, as Alertmanager writes its times.
std::string rfc3339(double unix_seconds) {
  const double whole = std::floor(unix_seconds);
  const auto t = static_cast<std::time_t>(whole);
  std::tm tm{};
  gmtime_r(&t, &tm);
  const int ms = std::min(999, static_cast<int>(std::lround((unix_seconds - whole) * 1000)));
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

json alert_labels(const Alert& alert, const AlertSource& source) {
  json labels = {{"alertname", alert.name},
                 {"severity", alert.severity},
                 {"instance", source.instance},
                 {"role", source.role}};
  if (!alert.upstream.empty()) labels["upstream"] = alert.upstream;
  return labels;
}

// Alertmanager's fingerprint is a hash of the label set: FNV-1a over the sorted labels (json's objects are
// sorted), 16 hex digits.
std::string fingerprint(const json& labels) {
  std::uint64_t hash = 14695981039346656037ull;
  const auto mix = [&hash](std::string_view text) {
    for (const char c : text) {
      hash ^= static_cast<unsigned char>(c);
      hash *= 1099511628211ull;
    }
    hash ^= 0xff;  // a separator no label text holds
    hash *= 1099511628211ull;
  };
  for (const auto& [name, value] : labels.items()) {
    mix(name);
    mix(value.get_ref<const std::string&>());
  }
  return fmt::format("{:016x}", hash);
}

// Where a webhook is, for the log: its origin only (a Slack webhook's path is its secret).
std::string shown(const std::string& url) {
  auto parsed = http::parse_url(url);
  return parsed ? parsed->origin() : std::string("(bad url)");
}

}  // namespace

AlertSource alert_source(std::string role, const std::string& host, unsigned short port, bool https) {
  const std::string instance =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  return AlertSource{std::move(role), instance, (https ? "https://" : "http://") + instance};
}

json alertmanager_payload(const Alert& alert, const AlertSource& source) {
  const bool resolved = alert.state == AlertState::resolved;
  const char* status = resolved ? "resolved" : "firing";
  json labels = alert_labels(alert, source);
  const json annotations = {{"summary", alert.summary}};
  json item = {
      {"status", status},
      {"labels", labels},
      {"annotations", annotations},
      {"startsAt", rfc3339(alert.fired_at.value_or(alert.since))},
      {"endsAt", resolved ? rfc3339(alert.resolved_at.value_or(alert.since)) : "0001-01-01T00:00:00Z"},
      {"generatorURL", source.url.empty() ? std::string() : source.url + "/api/alerts"},
      {"fingerprint", fingerprint(labels)}};
  return {{"version", "4"},
          {"groupKey", "{}:{alertname=\"" + alert.name + "\"}"},
          {"truncatedAlerts", 0},
          {"status", status},
          {"receiver", "clawbot"},
          {"groupLabels", {{"alertname", alert.name}}},
          {"commonLabels", std::move(labels)},
          {"commonAnnotations", annotations},
          {"externalURL", source.url},
          {"alerts", json::array({std::move(item)})}};
}

json slack_payload(const Alert& alert, const AlertSource& source) {
  const bool resolved = alert.state == AlertState::resolved;
  std::string text = fmt::format(
      "{} [{}] {} on {} {}{}: {}",
      resolved ? ":white_check_mark:" : ":rotating_light:", resolved ? "RESOLVED" : "FIRING", alert.name,
      source.role, source.instance,
      alert.upstream.empty() ? std::string() : " (upstream " + alert.upstream + ")", alert.summary);
  if (!resolved) text += fmt::format(" (severity {})", alert.severity);
  return {{"text", std::move(text)}};
}

struct WebhookSender::State {
  struct Hook {
    Webhook config;
    std::string target;  // "/" when the URL has no path (the client appends it to the base)
    std::unique_ptr<http::Client> client;
    std::unique_ptr<asio::steady_timer> timer;
    std::deque<json> queue;
    bool busy = false;
    bool overflowing = false;  // notices were dropped since the queue was last empty
  };

  Options options;
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  std::vector<std::unique_ptr<Hook>> hooks;
  bool stopping = false;  // (the I/O thread's)
  mutable std::mutex stats_mutex;
  Stats stats;
  std::thread thread;

  void count(std::size_t Stats::*field) {
    std::lock_guard lock(stats_mutex);
    ++(stats.*field);
  }

  void enqueue(Hook& hook, json payload) {
    if (hook.queue.size() >= options.queue_capacity) {
      hook.queue.pop_front();
      count(&Stats::dropped);
      if (!hook.overflowing)  // once until the queue has emptied
        spdlog::warn("webhook {}: {} notices are waiting; the oldest are dropped", shown(hook.config.url),
                     hook.queue.size() + 1);
      hook.overflowing = true;
    }
    hook.queue.push_back(std::move(payload));
    if (hook.busy) return;
    hook.busy = true;
    asio::co_spawn(io, deliver(hook), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& error) {
        spdlog::error("webhook delivery stopped: {}", error.what());
      }
    });
  }

  // The client's message with the webhook's URL cut to its origin (a Slack webhook's path is its secret).
  static std::string without_path(std::string message, const Hook& hook) {
    const auto url = http::parse_url(hook.config.url);
    if (!url || url->path.empty()) return message;
    const std::string full = url->str(), origin = url->origin();
    for (auto at = message.find(full); at != std::string::npos; at = message.find(full, at + origin.size()))
      message.replace(at, full.size(), origin);
    return message;
  }

  asio::awaitable<void> deliver(Hook& hook) {
    while (!hook.queue.empty() && !stopping) {
      const json body = std::move(hook.queue.front());
      hook.queue.pop_front();
      for (int attempt = 0;; ++attempt) {
        auto answer = co_await hook.client->post_json(hook.target, body);
        if (stopping) co_return;
        if (answer && answer->ok()) {
          count(&Stats::delivered);
          break;
        }
        const int status = answer ? answer->status : 0;
        const std::string failure =
            answer ? fmt::format("answered HTTP {}", status) : without_path(answer.error().message, hook);
        // A connection failure, a server error or "too many requests" may pass; another 4xx will not.
        const bool retryable = !answer || status >= 500 || status == 429 || status == 408;
        if (!retryable || attempt >= hook.config.retries) {
          count(&Stats::failed);
          spdlog::warn("webhook {}: a notice is dropped after {} tries: {}", shown(hook.config.url),
                       attempt + 1, failure);
          break;
        }
        const double wait_s = std::min(60.0, options.backoff_s * std::pow(2.0, attempt));
        count(&Stats::retries);
        spdlog::info("webhook {}: {}; trying again in {:g} s", shown(hook.config.url), failure, wait_s);
        hook.timer->expires_after(std::chrono::milliseconds(static_cast<long long>(wait_s * 1000)));
        co_await hook.timer->async_wait(asio::as_tuple(asio::use_awaitable));
        if (stopping) co_return;
      }
    }
    hook.busy = false;
    hook.overflowing = false;
  }
};

WebhookSender::WebhookSender(std::vector<Webhook> webhooks, Options options)
    : state_(std::make_unique<State>()) {
  state_->options = options;
  for (auto& config : webhooks) {
    auto hook = std::make_unique<State::Hook>();
    auto url = http::parse_url(config.url).value();  // (checked when the rules were read)
    hook->target = url.path.empty() ? "/" : "";
    http::ClientOptions client;
    client.connect_timeout = std::chrono::milliseconds(static_cast<long long>(config.timeout_s * 1000));
    client.read_timeout = client.connect_timeout;
    client.max_body_bytes = 1u << 20;
    client.headers = config.headers;
    hook->client =
        std::make_unique<http::Client>(state_->io.get_executor(), std::move(url), std::move(client));
    hook->timer = std::make_unique<asio::steady_timer>(state_->io);
    hook->config = std::move(config);
    state_->hooks.push_back(std::move(hook));
  }
  state_->thread = std::thread([state = state_.get()] { state->io.run(); });
}

WebhookSender::~WebhookSender() {
  // Every wait ends (cancelled) and each delivery sees `stopping`, so the I/O thread runs out of work.
  asio::post(state_->io, [state = state_.get()] {
    state->stopping = true;
    for (auto& hook : state->hooks) {
      hook->client->cancel();
      hook->timer->cancel();
    }
    state->work.reset();
  });
  state_->thread.join();
}

void WebhookSender::notify(const Alert& alert, const AlertSource& source) {
  asio::post(state_->io, [state = state_.get(), alert, source] {
    if (state->stopping) return;
    for (auto& hook : state->hooks)
      state->enqueue(*hook, hook->config.format == WebhookFormat::slack
                                ? slack_payload(alert, source)
                                : alertmanager_payload(alert, source));
  });
}

WebhookSender::Stats WebhookSender::stats() const {
  std::lock_guard lock(state_->stats_mutex);
  return state_->stats;
}

}  // namespace clawbot::monitor
