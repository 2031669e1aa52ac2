// `clawbot bench`: a serving benchmark for any OpenAI-compatible endpoint (clawbot serve, llama-server, vLLM,
// Ollama, a gateway). It streams chat completions from C concurrent clients and reports time to first token,
// time per output token, inter-token latency and end-to-end latency percentiles, and throughput.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace clawbot::bench {

struct BenchOptions {
  std::string url = "http://127.0.0.1:5000";  // the base URL; a trailing /v1 is accepted
  std::string model;                          // empty: the first id of GET /v1/models
  int concurrency = 4;                        // clients sending at once
  int requests = 0;                           // 0: 100, or no limit with --duration (a cap on turns too)
  double duration_s = 0;                      // > 0: start requests for this long
  std::string workload = "independent";       // or "conversations"
  int conversations = 8;                      // conversations: how many, interleaved over the clients
  int turns = 3;                              // conversations: user turns in each
  int system_prompt_tokens = 128;             // conversations: the system prompt they all share
  int prompt_tokens = 128;                    // each user message, approximately
  int max_tokens = 128;                       // sent as max_tokens (and min_tokens with ignore_eos)
  std::string api_key;                        // sent as "Authorization: Bearer <key>"
  std::uint64_t seed = 42;                    // prompts, and the request's "seed"
  double temperature = 0;
  bool ignore_eos = true;  // send "ignore_eos": true and "min_tokens" so each answer has max_tokens
  double timeout_s = 300;  // longest silence from the server in one request
  bool json = false;       // a JSON object on stdout instead of the table
  bool no_progress = false;
};

// Runs the benchmark and prints the report; returns the exit status: 0 when some request succeeded, 1 when
// every request failed or the endpoint cannot be reached, 2 for unusable options.
int run_bench(const BenchOptions& options);

// `clawbot bench` on `app` (bench_cmd.cpp). After parsing, the returned function runs it and returns its exit
// status, or nullopt when the command line named another.
std::function<std::optional<int>()> add_bench_command(CLI::App& app);

}  // namespace clawbot::bench
