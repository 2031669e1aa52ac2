// `clawbot bench`'s command line, and `bench --memory-bandwidth`.
#include <cstdio>
#include <memory>

#include <CLI/CLI.hpp>

#include "bench/bench.h"
#include "monitor/metrics.h"

namespace clawbot::bench {
namespace {

// The ceiling for decode speed on a memory-bound machine: bytes/s that a plain read loop reaches.
int print_memory_bandwidth() {
  const double bw = monitor::measure_read_bandwidth();
  std::fprintf(stderr, "memory read bandwidth: %.2f GB/s (1 GiB, 2 threads, best of 3)\n", bw / 1e9);
  std::printf("%.0f\n", bw);
  return bw > 0 ? 0 : 1;
}

}  // namespace

std::function<std::optional<int>()> add_bench_command(CLI::App& app) {
  auto bench = std::make_shared<BenchOptions>();
  auto memory_bandwidth = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand(
      "bench", "Serving benchmark of any OpenAI-compatible endpoint: TTFT, TPOT, ITL, tok/s percentiles");
  cmd->add_option("--url", bench->url, "Base URL of the endpoint")->capture_default_str();
  cmd->add_option("--model", bench->model, "Model to ask for (default: the first of GET /v1/models)");
  cmd->add_option("-c,--concurrency", bench->concurrency, "Clients sending at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("-n,--requests", bench->requests, "Requests to send (default 100; none with --duration)")
      ->check(CLI::Range(1, 100'000'000));
  cmd->add_option("--duration", bench->duration_s, "Seconds to keep starting requests")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--workload", bench->workload,
                  "independent, or conversations (multi-turn, shared system prompt)")
      ->capture_default_str()
      ->check(CLI::IsMember({"independent", "conversations"}));
  cmd->add_option("--conversations", bench->conversations, "Conversations, interleaved over the clients")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--turns", bench->turns, "User turns per conversation")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  cmd->add_option("--system-prompt-tokens", bench->system_prompt_tokens,
                  "Shared system prompt (approx. tokens)")
      ->capture_default_str()
      ->check(CLI::Range(0, 10'000'000));
  cmd->add_option("--prompt-tokens", bench->prompt_tokens, "Each user message (approx. tokens)")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000'000));
  cmd->add_option("--max-tokens", bench->max_tokens, "Output tokens asked for (max_tokens)")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000'000));
  cmd->add_option("--temperature", bench->temperature, "Sampling temperature")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 2.0));
  cmd->add_option("--seed", bench->seed, "Seed of the prompts (and the requests' seed)")
      ->capture_default_str();
  cmd->add_option("--api-key", bench->api_key, "Sent as Authorization: Bearer <key>");
  cmd->add_option("--timeout", bench->timeout_s, "Seconds of silence before a request fails")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag_callback(
      "--no-ignore-eos", [bench] { bench->ignore_eos = false; },
      "Do not send ignore_eos and min_tokens (for endpoints that refuse unknown fields)");
  cmd->add_flag("--json", bench->json, "Print a JSON object instead of the table");
  cmd->add_flag("--no-progress", bench->no_progress, "No progress bar on stderr");
  cmd->add_flag("--memory-bandwidth", *memory_bandwidth,
                "Only measure this machine's memory read bandwidth (bytes/s on stdout)");
  return [=]() -> std::optional<int> {
    if (!cmd->parsed()) return std::nullopt;
    if (*memory_bandwidth) return print_memory_bandwidth();
    return run_bench(*bench);
  };
}

}  // namespace clawbot::bench
