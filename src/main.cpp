// clawbot: one binary, subcommands. Each part registers its subcommands' options beside its code (add_*);
// this file only asks each in turn whether the command line named one of its commands.
#include <functional>
#include <optional>
#include <vector>

#include <CLI/CLI.hpp>

#include "audio/transcribe_cmd.h"
#include "backup/backup.h"
#include "bench/bench.h"
#include "client/cli.h"
#include "client/code_cmd.h"
#include "client/doctor.h"
#include "discovery/discovery.h"
#include "gateway/gateway.h"
#include "kb/kb_cmd.h"
#include "monitor/top_cmd.h"
#include "ops/integrity.h"
#include "ops/plan.h"
#include "server/serve.h"

int main(int argc, char** argv) {
  CLI::App app{"clawbot: a local AI assistant platform (back-end node, gateway and front-end in one binary)"};
  app.set_version_flag("--version", std::string("clawbot ") + CLAWBOT_VERSION);
  app.require_subcommand(1);

  // In the order `clawbot --help` lists them.
  const std::vector<std::function<std::optional<int>()>> commands = {
      clawbot::server::add_serve_command(app),    clawbot::ops::add_models_command(app),
      clawbot::ops::add_plan_command(app),        clawbot::ops::add_verify_command(app),
      clawbot::ops::add_crypt_commands(app),      clawbot::bench::add_bench_command(app),
      clawbot::client::add_sessions_command(app), clawbot::discovery::add_discover_command(app),
      clawbot::client::add_client_commands(app),  clawbot::client::add_code_command(app),
      clawbot::client::add_doctor_command(app),   clawbot::monitor::add_top_command(app),
      clawbot::gateway::add_gateway_command(app), clawbot::backup::add_backup_commands(app),
      clawbot::kb::add_kb_command(app),           clawbot::audio::add_transcribe_command(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return clawbot::client::exit_for_parse_error(app, e, argc, argv);
  }
  for (const auto& run : commands) {
    if (const auto status = run()) return *status;
  }
  return 0;
}
