#include <CLI/CLI.hpp>

#include "gateway/door/admin_cmd.h"
#include "gateway/gateway.h"

namespace clawbot::gateway {

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
