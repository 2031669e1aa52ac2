// `clawbot gateway`: its command line, `--check`, and the start.
#include <iostream>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "common/cli_error.h"
#include "gateway/door/admin_cmd.h"
#include "gateway/gateway.h"
#include "gateway/gateway_internal.h"

namespace clawbot::gateway {

namespace detail {

int check_config(const GatewayConfig& config) {
  parse_allow_list(config);
  for (const auto& listener : config.listen)
    if (listener.tls)
      tls::make_server_context(server_tls(*listener.tls));  // throws naming a file it cannot use
  std::size_t keys = 0;
  if (config.auth == "keys") keys = door::KeyVerifier(config.keys_db, config.secret_file).active_keys();
  std::cout << config.file.string() << ": ok\n";
  for (const auto& listener : config.listen)
    std::cout << "  listen    " << (listener.tls ? "https://" : "http://") << listener.host << ":"
              << listener.port
              << (listener.tls && !listener.tls->client_ca.empty() ? " (client certificates required)" : "")
              << "\n";
  for (const auto& u : config.upstreams)
    std::cout << "  upstream  " << u.name << "  " << u.parsed.str() << (u.standby ? "  standby" : "")
              << (u.weight != 1 ? "  weight " + std::to_string(u.weight) : std::string()) << "\n";
  std::cout << "  balance   "
            << (config.balance == Balance::least_outstanding ? "least_outstanding" : "weighted_round_robin")
            << (config.affinity ? ", conversation affinity" : "") << "\n";
  if (config.auth == "keys")
    std::cout << "  auth      keys: " << keys << " active in " << config.keys_db.string()
              << (keys == 0 ? " (none yet: `clawbot gateway keys create --name NAME`)" : "") << "\n";
  else
    std::cout << "  auth      none: anyone who can reach the gateway can use it\n";
  std::cout << "  allow     "
            << (config.allow.empty() ? std::string("any address")
                                     : std::to_string(config.allow.size()) +
                                           (config.allow.size() == 1 ? " network" : " networks"))
            << "\n";
  std::cout << "  audit     " << (config.audit_log.empty() ? std::string("off") : config.audit_log.string())
            << "\n";
  std::cout << "  alerts    " << config.alerts.rules.size() << " rules, " << config.alerts.webhooks.size()
            << (config.alerts.webhooks.size() == 1 ? " webhook" : " webhooks") << "\n";
  return 0;
}

}  // namespace detail

int run_gateway(const GatewayOptions& options) {
  try {
    GatewayConfig config = load_config(options.config_path);
    if (!options.host.empty()) config.listen.front().host = options.host;
    if (options.port >= 0) config.listen.front().port = static_cast<unsigned short>(options.port);
    if (options.threads >= 0) config.threads = options.threads;
    if (options.no_advertise) config.advertise = false;
    if (options.no_web) config.web = false;
    for (const auto& warning : config.warnings) std::cerr << "warning: " << warning << std::endl;
    if (options.check) return detail::check_config(config);
    // Logs go to stderr, as serve's do (stdout has the "listening on" lines). A named program logger is also
    // what the discovery module logs through: without one it keeps only its warnings, and the gateway never
    // said what it announced on the LAN, that it withdrew (goodbye sent), or why it was not advertised.
    spdlog::set_default_logger(spdlog::stderr_color_mt("gateway"));
    spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
    detail::Gateway gateway(std::move(config), options.verbose);
    return gateway.run();
  } catch (const ConfigError& e) {
    return cli_error("error", e.what(), 2);  // (gateway.json's errors say which file and key)
  } catch (const std::exception& e) {
    return cli_error("error", e.what(), 1);
  }
}

std::function<std::optional<int>()> add_gateway_command(CLI::App& app) {
  auto options = std::make_shared<GatewayOptions>();
  auto* cmd = app.add_subcommand(
      "gateway", "Reverse proxy in front of back-end nodes: balancing, failover, TLS, API keys, audit log");
  cmd->add_option("--config", options->config_path, "gateway.json to use")->capture_default_str();
  cmd->add_option("--host", options->host, "Address of the first listener (overrides gateway.json)");
  cmd->add_option("--port", options->port,
                  "Port of the first listener (overrides gateway.json; 0: any free port)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--threads", options->threads, "I/O threads (overrides gateway.json; 0: one per core)")
      ->check(CLI::Range(0, 256));
  cmd->add_flag("--no-advertise", options->no_advertise,
                "Do not announce the gateway on the LAN (mDNS/DNS-SD)");
  cmd->add_flag("--no-web", options->no_web,
                "No browser pages: neither the chat (GET /) nor the dashboard (GET /dashboard)");
  cmd->add_flag("-v,--verbose", options->verbose, "Log every request");
  cmd->add_flag(
      "--check", options->check,
      "Only check gateway.json (keys, files, certificates, allow-list), print what it sets up, and exit");
  auto run_admin = door::add_admin_commands(*cmd);
  return [cmd, options, run_admin]() -> std::optional<int> {
    if (!cmd->parsed()) return std::nullopt;
    if (auto status = run_admin()) return status;
    return run_gateway(*options);
  };
}

}  // namespace clawbot::gateway
