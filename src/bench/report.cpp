#include "bench/report.h"

#include <fmt/format.h>

namespace clawbot::bench {
namespace {

using json = nlohmann::ordered_json;  // the report keeps its fields in a readable order

bool conversations(const BenchOptions& used) {
  return used.workload == "conversations";
}

json distribution_json(const Distribution& d) {
  if (d.count == 0) {
    return {{"count", 0},     {"mean", nullptr}, {"min", nullptr}, {"p50", nullptr},
            {"p90", nullptr}, {"p99", nullptr},  {"max", nullptr}};
  }
  return {{"count", d.count}, {"mean", d.mean}, {"min", d.min}, {"p50", d.p50},
          {"p90", d.p90},     {"p99", d.p99},   {"max", d.max}};
}

json optional_ms(const std::optional<double>& seconds) {
  return seconds ? json(*seconds * 1000) : json(nullptr);
}

std::string number(double v) {
  if (v >= 100) return fmt::format("{:.1f}", v);
  if (v >= 10) return fmt::format("{:.2f}", v);
  return fmt::format("{:.3f}", v);
}

std::string row(const std::string& name, const Distribution& d) {
  if (d.count == 0)
    return fmt::format("  {:<16}{:>10}{:>10}{:>10}{:>10}{:>10}{:>8}\n", name, "-", "-", "-", "-", "-", 0);
  return fmt::format("  {:<16}{:>10}{:>10}{:>10}{:>10}{:>10}{:>8}\n", name, number(d.mean), number(d.p50),
                     number(d.p90), number(d.p99), number(d.max), d.count);
}

}  // namespace

std::string shell_quote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                              "-_./:=@%+,") == std::string::npos) {
    return word;
  }
  std::string quoted = "'";
  for (char c : word) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::string reproduce_command(const BenchOptions& used) {
  std::string cmd = "clawbot bench --url " + shell_quote(used.url);
  if (!used.model.empty()) cmd += " --model " + shell_quote(used.model);
  cmd += " --workload " + used.workload + " --concurrency " + std::to_string(used.concurrency);
  if (conversations(used)) {
    cmd += " --conversations " + std::to_string(used.conversations) + " --turns " +
           std::to_string(used.turns) + " --system-prompt-tokens " +
           std::to_string(used.system_prompt_tokens);
  }
  if (used.requests > 0) cmd += " --requests " + std::to_string(used.requests);
  if (used.duration_s > 0) cmd += fmt::format(" --duration {:g}", used.duration_s);
  cmd += " --prompt-tokens " + std::to_string(used.prompt_tokens) + " --max-tokens " +
         std::to_string(used.max_tokens) + fmt::format(" --temperature {:g}", used.temperature) + " --seed " +
         std::to_string(used.seed);
  if (!used.ignore_eos) cmd += " --no-ignore-eos";
  if (used.timeout_s != BenchOptions{}.timeout_s) cmd += fmt::format(" --timeout {:g}", used.timeout_s);
  if (!used.api_key.empty()) cmd += " --api-key \"$API_KEY\"";
  return cmd;
}

json report_json(const BenchOptions& used, const Summary& s, const RunResult& run) {
  json parameters = {
      {"url", used.url},
      {"model", used.model},
      {"workload", used.workload},
      {"concurrency", used.concurrency},
      {"requests", used.requests > 0 ? json(used.requests) : json(nullptr)},
      {"duration_s", used.duration_s > 0 ? json(used.duration_s) : json(nullptr)},
      {"prompt_tokens", used.prompt_tokens},
      {"max_tokens", used.max_tokens},
      {"temperature", used.temperature},
      {"seed", used.seed},
      {"ignore_eos", used.ignore_eos},
      {"timeout_s", used.timeout_s},
  };
  if (conversations(used)) {
    parameters["conversations"] = used.conversations;
    parameters["turns"] = used.turns;
    parameters["system_prompt_tokens"] = used.system_prompt_tokens;
  }
  json calibration = {{"tokens_per_word", run.prompt.tokens_per_word},
                      {"measured", run.prompt.measured},
                      {"prompt_words", run.prompt.prompt_words}};
  if (conversations(used)) calibration["system_prompt_words"] = run.prompt.system_prompt_words;
  json errors = json::array();
  for (const auto& e : s.errors) {
    errors.push_back({{"status", e.status}, {"message", e.message}, {"count", e.count}});
  }
  json per_request = json::array();
  for (const auto& r : run.records) {
    json item = {
        {"index", r.index},
        {"ok", r.ok},
        {"status", r.status},
        {"start_ms", r.start_s * 1000},
        {"ttft_ms", r.ttft_s >= 0 ? json(r.ttft_s * 1000) : json(nullptr)},
        {"e2e_ms", r.e2e_s * 1000},
        {"tpot_ms", optional_ms(r.tpot_s())},
        {"max_itl_ms", optional_ms(r.max_itl_s())},
        {"output_tokens", r.output_tokens},
        {"output_tokens_from_usage", r.usage_reported},
        {"prompt_tokens", r.prompt_tokens >= 0 ? json(r.prompt_tokens) : json(nullptr)},
        {"cached_tokens", r.cached_tokens >= 0 ? json(r.cached_tokens) : json(nullptr)},
        {"server_prompt_ms", r.server_prompt_s >= 0 ? json(r.server_prompt_s * 1000) : json(nullptr)}};
    if (r.turn > 0) {
      item["conversation"] = r.conversation;
      item["turn"] = r.turn;
    }
    if (!r.ok) item["error"] = r.error;
    per_request.push_back(std::move(item));
  }
  json out = {
      {"command", reproduce_command(used)},
      {"parameters", parameters},
      {"prompt_calibration", calibration},
      {"requests",
       {{"total", s.requests}, {"ok", s.ok}, {"failed", s.failed}, {"skipped", run.skipped_turns}}},
      {"interrupted", run.interrupted},
      {"duration_s", s.duration_s},
      {"requests_per_s", s.requests_per_s},
      {"output_tokens_per_s", s.output_tokens_per_s},
      {"total_output_tokens", s.output_tokens},
      {"total_prompt_tokens", s.prompt_tokens},
      {"output_tokens_from_usage", s.all_usage_reported},
      {"ttft_ms", distribution_json(s.ttft_ms)},
      {"requests_without_text", s.without_text},
      {"server_prompt_ms", distribution_json(s.server_prompt_ms)},
      {"tpot_ms", distribution_json(s.tpot_ms)},
      {"itl_ms", distribution_json(s.itl_ms)},
      {"e2e_ms", distribution_json(s.e2e_ms)},
      {"max_itl_ms", distribution_json(s.max_itl_ms)},
      {"output_tokens", distribution_json(s.output_tokens_per_request)},
      {"prompt_tokens", distribution_json(s.prompt_tokens_per_request)},
      {"errors", errors},
  };
  if (s.conversations) {
    out["ttft_first_turn_ms"] = distribution_json(s.ttft_first_turn_ms);
    out["ttft_later_turns_ms"] = distribution_json(s.ttft_later_turns_ms);
    out["new_prompt_tokens_later_turns"] = distribution_json(s.new_prompt_tokens_later_turns);
    out["server_prompt_later_turns_ms"] = distribution_json(s.server_prompt_later_turns_ms);
  }
  out["per_request"] = std::move(per_request);
  return out;
}

std::string report_text(const BenchOptions& used, const Summary& s, const RunResult& run) {
  std::string out = fmt::format("clawbot bench: {}, model {}\n", used.url, used.model);
  std::string limit;
  if (used.requests > 0) limit += fmt::format(", {} requests", used.requests);
  if (used.duration_s > 0) limit += fmt::format(", {:g} s", used.duration_s);
  if (conversations(used)) {
    out += fmt::format(
        "  conversations: {} x {} turns, shared system prompt ~{} tokens, ~{} tokens per user turn{}, "
        "concurrency {}, max {} output tokens, temperature {:g}\n",
        used.conversations, used.turns, used.system_prompt_tokens, used.prompt_tokens, limit,
        used.concurrency, used.max_tokens, used.temperature);
  } else {
    out += fmt::format(
        "  independent requests{}: concurrency {}, ~{} prompt tokens, max {} output tokens, temperature "
        "{:g}\n",
        limit, used.concurrency, used.prompt_tokens, used.max_tokens, used.temperature);
  }
  if (run.prompt.prompt_words > 0) {
    out += fmt::format(
        "  prompts of {} words{} at {:.2f} tokens per word ({})\n", run.prompt.prompt_words,
        run.prompt.system_prompt_words > 0
            ? fmt::format(" (system prompt {})", run.prompt.system_prompt_words)
            : std::string(),
        run.prompt.tokens_per_word,
        run.prompt.measured ? "measured on the endpoint" : "assumed: the endpoint reports no usage");
  }
  out += "\n";
  out += fmt::format("  requests        {} ok, {} failed", s.ok, s.failed);
  if (run.skipped_turns > 0) out += fmt::format(", {} turns skipped after a failed turn", run.skipped_turns);
  out += fmt::format(" in {:.2f} s ({:.2f} req/s){}\n", s.duration_s, s.requests_per_s,
                     run.interrupted ? ", interrupted" : "");
  if (s.ok > 0) {
    out += fmt::format("  output tokens   {} ({:.1f} per request{}), {:.1f} tok/s\n", s.output_tokens,
                       s.output_tokens_per_request.mean,
                       s.all_usage_reported ? ", from usage" : ", counted chunks where usage was missing",
                       s.output_tokens_per_s);
    if (s.prompt_tokens_per_request.count > 0) {
      out += fmt::format("  prompt tokens   {} ({:.1f} per request, from usage)\n", s.prompt_tokens,
                         s.prompt_tokens_per_request.mean);
    }
    if (s.conversations && s.new_prompt_tokens_later_turns.count > 0) {
      out += fmt::format(
          "  turns >= 2      {:.0f} new prompt tokens each (median; the rest came from the server's cache)\n",
          s.new_prompt_tokens_later_turns.p50);
    }
    out += "\n";
    out += fmt::format("  {:<16}{:>10}{:>10}{:>10}{:>10}{:>10}{:>8}\n", "", "mean", "p50", "p90", "p99",
                       "max", "n");
    out += row("TTFT (ms)", s.ttft_ms);
    if (s.conversations) {
      out += row("  turn 1", s.ttft_first_turn_ms);
      out += row("  turns >= 2", s.ttft_later_turns_ms);
    }
    if (s.server_prompt_ms.count > 0) {
      out += row("server prompt", s.server_prompt_ms);
      if (s.conversations) out += row("  turns >= 2", s.server_prompt_later_turns_ms);
    }
    out += row("TPOT (ms)", s.tpot_ms);
    out += row("ITL (ms)", s.itl_ms);
    out += row("E2E (ms)", s.e2e_ms);
    out += row("max ITL (ms)", s.max_itl_ms);
  }
  if (!s.errors.empty()) {
    out += "\n  errors (most frequent first)\n";
    std::size_t shown = 0;
    for (const auto& e : s.errors) {
      if (++shown > 5) {
        out += fmt::format("    ... and {} other kinds\n", s.errors.size() - 5);
        break;
      }
      const std::string status = e.status > 0 ? fmt::format("HTTP {}", e.status) : std::string("no response");
      out += fmt::format("    {} x {}: {}\n", e.count, status, e.message);
    }
  }
  if (s.ok > 0) {
    out +=
        "\n  TTFT: to the first content; TPOT: (E2E - TTFT) / (output tokens - 1); ITL: between content "
        "chunks\n";
    if (s.server_prompt_ms.count > 0) {
      out += "  server prompt: the server's own time to the first token (timings.prompt_ms), text or not\n";
    }
    if (s.without_text > 0) {
      out +=
          fmt::format("  {} of {} requests streamed no text, so they have no TTFT\n", s.without_text, s.ok);
    }
  }
  out += "\nreproduce: " + reproduce_command(used) + "\n";
  return out;
}

}  // namespace clawbot::bench
