// `clawbot gateway keys|audit` without the rest of clawbot: the admin commands mounted as main.cpp mounts
// them, for admin_cli.test.mjs. One extra command for the test: `write-audit N --log L --db D` appends N
// records through AuditLog, as the gateway would.
#include <CLI/CLI.hpp>

#include "gateway/door/admin_cmd.h"
#include "gateway/door/door.h"

int main(int argc, char** argv) {
  CLI::App app{"clawbot gateway admin commands (test driver)"};
  app.require_subcommand(1);
  auto* gateway_cmd = app.add_subcommand("gateway", "The gateway");
  std::string config;
  gateway_cmd->add_option("--config", config, "gateway.json");
  gateway_cmd->require_subcommand(1);
  const auto run_admin = clawbot::gateway::door::add_admin_commands(*gateway_cmd);

  int count = 0;
  std::string log, db;
  auto* write_cmd = app.add_subcommand("write-audit", "Append records to an audit log");
  write_cmd->add_option("count", count)->required();
  write_cmd->add_option("--log", log)->required();
  write_cmd->add_option("--db", db)->required();

  CLI11_PARSE(app, argc, argv);
  if (write_cmd->parsed()) {
    clawbot::gateway::door::AuditLog audit(log, db);
    for (int i = 0; i < count; ++i) {
      clawbot::gateway::door::AuditRecord record;
      record.time = std::chrono::system_clock::now();
      record.key_id = "0123456789ab";
      record.client = "127.0.0.1";
      record.route = "/v1/chat/completions";
      record.model = "tiny";
      record.upstream = "127.0.0.1:5000";
      record.status = 200;
      record.tokens_in = 7;
      record.tokens_out = i;
      record.latency_ms = 1.5;
      audit.append(std::move(record));
    }
    return audit.flush() ? 0 : 1;
  }
  if (const auto status = run_admin()) return *status;
  return 3;  // no action ran: a bug in add_admin_commands
}
