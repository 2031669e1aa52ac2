// `clawbot discover`, and the latency probe it shares with endpoint resolution.
#include <chrono>
#include <cstdio>
#include <exception>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "discovery/discovery.h"

namespace clawbot::discovery {

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

asio::awaitable<void> probe_one(const Found& f, std::chrono::milliseconds timeout, Probe& out) {
  auto url = http::parse_url(f.url());
  if (!url) {
    out.error = url.error().message;
    co_return;
  }
  http::ClientOptions options;
  options.connect_timeout = timeout;
  options.read_timeout = timeout;
  options.max_body_bytes = 1 << 20;
  options.tls_insecure = true;  // a latency probe: the client that uses the service checks the certificate
  options.headers.emplace_back("User-Agent", "clawbot-discover");
  http::Client client(co_await asio::this_coro::executor, *url, std::move(options));
  const auto started = Clock::now();
  auto answer = co_await client.get("/health");
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  if (!answer) {
    out.error = answer.error().message;
    co_return;
  }
  out.reachable = true;
  out.status = answer->status;
  out.ms = ms;
}

std::string yes_no(bool b) {
  return b ? "yes" : "no";
}

}  // namespace

std::vector<Probe> probe(const std::vector<Found>& found, std::chrono::milliseconds timeout) {
  std::vector<Probe> probes(found.size());
  asio::io_context io;
  for (std::size_t i = 0; i < found.size(); ++i) {
    if (found[i].addresses.empty()) {
      probes[i].error = "no address";
      continue;
    }
    asio::co_spawn(io, probe_one(found[i], timeout, probes[i]), [&probes, i](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        probes[i].error = x.what();
      }
    });
  }
  io.run();
  return probes;
}

int run_discover(const DiscoverOptions& options) {
  const auto wait = std::chrono::milliseconds(options.timeout_ms);
  const std::string_view backend = active_backend();
  const std::vector<Found> found = browse(wait);
  const std::vector<Probe> probes = probe(found, std::chrono::milliseconds(2000));

  if (options.json) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < found.size(); ++i) {
      const Found& f = found[i];
      const Probe& p = probes[i];
      nlohmann::ordered_json txt = nlohmann::ordered_json::object();
      for (const auto& [k, v] : f.txt) txt[k] = v;
      out.push_back(
          {{"instance", f.instance},
           {"host", f.host},
           {"address", f.addresses.empty() ? "" : f.addresses.front()},
           {"addresses", f.addresses},
           {"port", f.port},
           {"url", f.url()},
           {"role", f.role()},
           {"model", f.txt_value("model")},
           {"api", f.txt_value("api")},
           {"tls", f.tls()},
           {"auth", f.auth()},
           {"version", f.txt_value("version")},
           {"txt", txt},
           {"source", f.source},
           {"ttl", f.ttl},
           {"reachable", p.reachable},
           {"status", p.status},
           {"latency_ms", p.reachable ? nlohmann::ordered_json(p.ms) : nlohmann::ordered_json(nullptr)},
           {"error", p.error}});
    }
    std::printf("%s\n", out.dump(2).c_str());
  } else if (!found.empty()) {
    std::printf("%s", fmt::format("{:<32} {:<16} {:>5}  {:<8} {:<20} {:<4} {:<4} {}\n", "NAME", "ADDRESS",
                                  "PORT", "ROLE", "MODEL", "TLS", "AUTH", "LATENCY")
                          .c_str());
    for (std::size_t i = 0; i < found.size(); ++i) {
      const Found& f = found[i];
      const Probe& p = probes[i];
      const std::string latency = p.reachable ? fmt::format("{:.1f} ms", p.ms) : "unreachable";
      std::printf("%s", fmt::format("{:<32} {:<16} {:>5}  {:<8} {:<20} {:<4} {:<4} {}\n", f.instance,
                                    f.addresses.empty() ? f.host : f.addresses.front(), f.port,
                                    f.role().empty() ? "?" : f.role(), f.txt_value("model"), yes_no(f.tls()),
                                    yes_no(f.auth()), latency)
                            .c_str());
    }
    std::printf("(mDNS via %s; latency: one GET /health, certificates not checked)\n",
                std::string(backend).c_str());
  }
  if (found.empty()) {
    std::fprintf(stderr,
                 "no clawbot node or gateway answered mDNS within %d ms (asked via %s); is `clawbot serve "
                 "--host 0.0.0.0` running on this LAN, and is UDP port 5353 open?\n",
                 options.timeout_ms, std::string(backend).c_str());
    return 1;
  }
  return 0;
}

std::function<std::optional<int>()> add_discover_command(CLI::App& app) {
  auto discover = std::make_shared<DiscoverOptions>();
  auto* cmd = app.add_subcommand(
      "discover", "List the clawbot nodes and gateways on the LAN (mDNS/DNS-SD), with their latency");
  cmd->add_option("--timeout", discover->timeout_ms, "Milliseconds to wait for answers")
      ->capture_default_str()
      ->check(CLI::Range(100, 60'000));
  cmd->add_flag("--json", discover->json, "Print a JSON array instead of the table");
  return [=]() -> std::optional<int> {
    if (!cmd->parsed()) return std::nullopt;
    return run_discover(*discover);
  };
}

}  // namespace clawbot::discovery
