#include "monitor/top_cmd.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "client/assistant.h"
#include "client/endpoint_auto.h"
#include "common/http_client.h"
#include "monitor/prom_text.h"
#include "monitor/top_figures.h"
#include "monitor/top_screen.h"

namespace clawbot::monitor {

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

struct TopOptions {
  std::string url;
  std::string key;
  double interval_s = 2;
  client::ConfigSearch search;
};

std::string local_clock() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  return fmt::format("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec);
}

// The base URL as users write it: with or without /v1 or /metrics at the end.
std::string base_url(std::string url) {
  while (url.ends_with('/')) url.pop_back();
  for (const std::string_view suffix : {"/metrics", "/v1"})
    if (url.ends_with(suffix)) url.resize(url.size() - suffix.size());
  while (url.ends_with('/')) url.pop_back();
  return url;
}

std::string first_line(const std::string& text) {
  return text.substr(0, std::min(text.find('\n'), std::size_t{300}));
}

class Top {
 public:
  Top(asio::io_context& io, top::Screen& screen, http::Url url, http::ClientOptions options,
      double interval_s)
      : io_(io),
        screen_(screen),
        client_(io.get_executor(), url, std::move(options)),
        interval_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval_s))),
        keys_timer_(io),
        scrape_timer_(io) {
    status_.url = url.str();
    status_.interval_s = interval_s;
  }

  int run() {
    asio::co_spawn(io_, scrape_loop(), asio::detached);
    asio::co_spawn(io_, key_loop(), asio::detached);
    io_.run();
    return exit_status_;
  }

  void quit(int status) {
    exit_status_ = status;
    io_.stop();
  }

 private:
  void draw() { screen_.draw(top::render(tracker_.figures(), status_, screen_.columns())); }

  asio::awaitable<void> scrape_loop() {
    const auto started = Clock::now();
    for (;;) {
      const auto attempt = Clock::now();
      auto answer = co_await client_.get("/metrics");
      status_.clock = local_clock();
      if (!answer) {
        status_.problem = "unreachable: " + first_line(answer.error().message);
      } else if (answer->status != 200) {
        status_.problem = fmt::format("HTTP {} from /metrics", answer->status);
        if (answer->status == 401)
          status_.problem += ": the server wants an API key (--key, or api_key in clawbot.json)";
      } else {
        auto parsed = prom::parse(answer->body);
        if (!parsed.scrape) {
          status_.problem = "not Prometheus text: " + parsed.error;
        } else {
          tracker_.add(std::move(*parsed.scrape), std::chrono::duration<double>(attempt - started).count());
          status_.problem.clear();
        }
      }
      draw();
      scrape_timer_.expires_at(attempt + interval_);
      co_await scrape_timer_.async_wait(asio::use_awaitable);
    }
  }

  asio::awaitable<void> key_loop() {
    for (;;) {
      for (auto key = screen_.next_key(); key != top::Key::none; key = screen_.next_key()) {
        if (key == top::Key::quit) {
          quit(0);
          co_return;
        }
        if (key == top::Key::redraw) {
          screen_.invalidate();
          draw();
        }
      }
      keys_timer_.expires_after(std::chrono::milliseconds(50));
      co_await keys_timer_.async_wait(asio::use_awaitable);
    }
  }

  asio::io_context& io_;
  top::Screen& screen_;
  http::Client client_;
  Clock::duration interval_;
  asio::steady_timer keys_timer_;
  asio::steady_timer scrape_timer_;
  top::Tracker tracker_;
  top::Status status_;
  int exit_status_ = 0;
};

int usage_error(const std::string& message) {
  std::cerr << "clawbot top: " << message << "\n";
  return 2;
}

int run_top(const TopOptions& options) {
  if (!(options.interval_s >= 0.2 && options.interval_s <= 3600))
    return usage_error(fmt::format("--interval {} must be between 0.2 and 3600 seconds", options.interval_s));
  std::string endpoint = options.url;
  std::string key = options.key;
  http::ClientOptions client_options;
  try {
    const client::ClientConfig config = client::load_client_config(options.search, {});
    if (endpoint.empty()) endpoint = config.model_endpoint;
    if (endpoint == "auto") endpoint = client::resolve_auto_endpoint().url;
    if (key.empty()) key = config.resolved_api_key();
    client_options.tls_ca_file = config.tls_ca_file;
  } catch (const client::ConfigError& e) {
    return usage_error(e.what());
  }
  const auto url = http::parse_url(base_url(endpoint));
  if (!url) return usage_error(url.error().message);
  if (!::isatty(STDIN_FILENO) || !::isatty(STDOUT_FILENO))
    return usage_error(
        "draws on a terminal: run it in one (over SSH too), not with its input or output redirected");

  client_options.connect_timeout = std::chrono::milliseconds(3000);
  client_options.read_timeout = std::chrono::milliseconds(10'000);
  client_options.max_body_bytes = prom::Limits{}.max_bytes;
  if (!key.empty()) client_options.headers.emplace_back("Authorization", "Bearer " + key);
  client_options.headers.emplace_back("User-Agent", "clawbot-top");

  asio::io_context io;
  // Before the terminal is taken: ncurses then leaves these signals to us, and the screen is restored by
  // Screen's destructor before the exit status is returned.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  top::Screen screen;
  if (!screen) {
    const char* term = std::getenv("TERM");
    return usage_error(fmt::format("cannot use this terminal (TERM={}): set TERM to one terminfo knows",
                                   term ? term : "(unset)"));
  }
  Top top(io, screen, *url, std::move(client_options), options.interval_s);
  signals.async_wait([&top](const boost::system::error_code& ec, int number) {
    if (!ec) top.quit(128 + number);  // 130 for Ctrl-C, as a shell reports it
  });
  return top.run();
}

}  // namespace

std::function<std::optional<int>()> add_top_command(CLI::App& app) {
  auto options = std::make_shared<TopOptions>();
  auto* cmd = app.add_subcommand(
      "top",
      "Watch a node or gateway live in the terminal (tokens/s, latency percentiles, slots, memory, GPUs, "
      "upstreams) from its /metrics; q quits");
  cmd->add_option("url", options->url,
                  "Node or gateway URL (default: model_endpoint of clawbot.json, with its api_key)");
  cmd->add_option("--interval", options->interval_s, "Seconds between scrapes (default 2)");
  cmd->add_option("--key", options->key, "API key sent as a bearer token (default: clawbot.json's)");
  cmd->add_option(
      "--config", options->search.explicit_path,
      "clawbot.json to read (default: $CLAWBOT_CONFIG, ./clawbot.json, ~/.config/clawbot/clawbot.json)");
  return [=]() -> std::optional<int> {
    if (!cmd->parsed()) return std::nullopt;
    return run_top(*options);
  };
}

}  // namespace clawbot::monitor
