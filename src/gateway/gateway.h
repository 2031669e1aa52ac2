// `clawbot gateway`: one process in front of several back-end nodes (our `serve`, llama-server, vLLM,
// Ollama: anything OpenAI-compatible). It passes the OpenAI routes through, relays streams event by event
// with backpressure, balances and fails over between upstreams, and keeps the door: API keys, an IP
// allow-list, per-key rate limits, size limits, TLS, and an audit log.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace clawbot::gateway {

struct GatewayOptions {
  std::string config_path = "gateway.json";
  std::string host;  // overrides the first listener's host when set
  int port = -1;     // overrides the first listener's port when >= 0 (0: any free port)
  int threads = -1;  // overrides "threads" when >= 0
  bool no_advertise = false;
  bool no_web = false;  // no browser pages (the chat at /, the dashboard) nor the chat's prompts route
  bool verbose = false;
  bool check = false;  // validate gateway.json (files, certificates, allow-list), print a summary, exit
};

// Runs until SIGINT or SIGTERM; returns the process exit status. Prints why it cannot start.
int run_gateway(const GatewayOptions& options);

// `clawbot gateway [--config F] [--host H] [--port P]` and its admin subcommands (keys, audit). After
// parsing, the returned function runs what was asked and returns its exit status, or nullopt when the
// command line named something else.
[[nodiscard]] std::function<std::optional<int>()> add_gateway_command(CLI::App& app);

}  // namespace clawbot::gateway
