#include "bench/bench.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "bench/report.h"
#include "bench/runner.h"
#include "bench/stats.h"
#include "bench/workload.h"
#include "common/cli_error.h"
#include "common/http_client.h"

namespace clawbot::bench {
namespace {

namespace asio = boost::asio;
using json = nlohmann::json;

int usage_error(const std::string& message) {
  return cli_error("clawbot bench", message, 2);
}

// The first problem with the options, or empty.
std::string check_options(const BenchOptions& o) {
  if (o.workload != "independent" && o.workload != "conversations") {
    return "--workload must be independent or conversations, not '" + o.workload + "'";
  }
  if (o.concurrency < 1) return "--concurrency must be at least 1";
  if (o.requests < 0) return "--requests must be at least 1";
  if (o.duration_s < 0) return "--duration must be a positive number of seconds";
  if (o.conversations < 1) return "--conversations must be at least 1";
  if (o.turns < 1) return "--turns must be at least 1";
  if (o.system_prompt_tokens < 0) return "--system-prompt-tokens must be 0 or more";
  if (o.prompt_tokens < 1) return "--prompt-tokens must be at least 1";
  if (o.max_tokens < 1) return "--max-tokens must be at least 1";
  if (o.temperature < 0 || o.temperature > 2) return "--temperature must be between 0 and 2";
  if (!(o.timeout_s > 0)) return "--timeout must be a positive number of seconds";
  return {};
}

template <class T>
T run_sync(asio::io_context& io, asio::awaitable<T> operation) {
  std::optional<T> out;
  asio::co_spawn(io, std::move(operation), [&out](std::exception_ptr e, T value) {
    if (e) std::rethrow_exception(e);
    out.emplace(std::move(value));
  });
  io.run();
  io.restart();
  return std::move(*out);
}

// One connection for what the run needs to know first.
struct Preflight {
  Preflight(const http::Url& url, const BenchOptions& options)
      : client(io.get_executor(), url, [&] {
          http::ClientOptions o;
          o.read_timeout = std::chrono::milliseconds(static_cast<long long>(options.timeout_s * 1000));
          if (!options.api_key.empty()) o.headers.emplace_back("Authorization", "Bearer " + options.api_key);
          return o;
        }()) {}

  asio::io_context io{1};
  http::Client client;
};

// Checks that the endpoint answers, and picks the model when none was named. Returns false (having said why)
// when the benchmark cannot run.
bool prepare_model(Preflight& pre, std::string& model) {
  auto models = run_sync(pre.io, pre.client.get("/v1/models"));
  if (!models) {
    std::fprintf(stderr, "clawbot bench: %s\n", models.error().message.c_str());
    return false;
  }
  const std::string where = pre.client.base().str() + "/v1/models";
  const json body = json::parse(models->body, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> ids;
  if (body.is_object() && body.contains("data") && body["data"].is_array()) {
    for (const auto& m : body["data"]) {
      if (m.is_object() && m.contains("id") && m["id"].is_string()) ids.push_back(m["id"].get<std::string>());
    }
  }
  if (!model.empty()) {
    if (models->ok() && !ids.empty() && std::find(ids.begin(), ids.end(), model) == ids.end()) {
      std::fprintf(stderr, "clawbot bench: warning: %s does not list the model '%s' (it lists '%s'%s)\n",
                   where.c_str(), model.c_str(), ids.front().c_str(), ids.size() > 1 ? ", ..." : "");
    }
    return true;  // an endpoint without /v1/models still serves a named model
  }
  if (!models->ok()) {
    std::fprintf(stderr, "clawbot bench: GET %s answered HTTP %d (%s); name the model with --model\n",
                 where.c_str(), models->status,
                 describe_answer(models->status, models->content_type(), models->body).c_str());
    return false;
  }
  if (ids.empty()) {
    std::fprintf(stderr, "clawbot bench: GET %s lists no models; name the model with --model\n",
                 where.c_str());
    return false;
  }
  model = ids.front();
  return true;
}

// The prompt tokens the endpoint counts for a user message of `words` words (one token of output asked).
std::optional<int> probe_prompt_tokens(Preflight& pre, const std::string& model, int words,
                                       std::string& problem) {
  json messages = json::array();
  messages.push_back({{"role", "user"}, {"content", make_prompt(derive_seed(0, stream_system, 1), words)}});
  const json body = {{"model", model}, {"messages", messages}, {"max_tokens", 1}, {"temperature", 0}};
  auto answer = run_sync(pre.io, pre.client.post_json("/v1/chat/completions", body));
  if (!answer) {
    problem = answer.error().message;
    return std::nullopt;
  }
  if (!answer->ok()) {
    problem = "HTTP " + std::to_string(answer->status) + ": " +
              describe_answer(answer->status, answer->content_type(), answer->body);
    return std::nullopt;
  }
  const json reply = json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
  if (reply.is_object() && reply.contains("usage") && reply["usage"].is_object()) {
    const json& n = reply["usage"]["prompt_tokens"];
    if (n.is_number_integer()) return n.get<int>();
  }
  problem = "the answer has no usage.prompt_tokens";
  return std::nullopt;
}

// make_prompt's words are about one token each in large vocabularies; a small one reads several. Two short
// probes measure the ratio (the chat template's own tokens cancel out), so --prompt-tokens holds on any
// model.
PromptCalibration calibrate(Preflight& pre, const BenchOptions& used, bool conversations) {
  PromptCalibration c;
  constexpr int short_probe = 16;
  constexpr int long_probe = 64;
  std::string problem;
  const auto short_tokens = probe_prompt_tokens(pre, used.model, short_probe, problem);
  const auto long_tokens =
      short_tokens ? probe_prompt_tokens(pre, used.model, long_probe, problem) : std::nullopt;
  if (short_tokens && long_tokens) {
    const double ratio = static_cast<double>(*long_tokens - *short_tokens) / (long_probe - short_probe);
    if (ratio >= 0.25 && ratio <= 16) {
      c.tokens_per_word = ratio;
      c.measured = true;
    } else {
      problem = "implausible token counts " + std::to_string(*short_tokens) + " and " +
                std::to_string(*long_tokens) + " for " + std::to_string(short_probe) + " and " +
                std::to_string(long_probe) + " words";
    }
  }
  if (!c.measured) {
    std::fprintf(stderr,
                 "clawbot bench: warning: could not measure the tokens per prompt word (%s); assuming 1, so "
                 "--prompt-tokens is a word count\n",
                 problem.c_str());
  }
  auto words = [&](int tokens) {
    return tokens <= 0 ? 0 : std::max(1, static_cast<int>(std::lround(tokens / c.tokens_per_word)));
  };
  c.prompt_words = words(used.prompt_tokens);
  c.system_prompt_words = conversations ? words(used.system_prompt_tokens) : 0;
  return c;
}

}  // namespace

int run_bench(const BenchOptions& options) {
  if (auto problem = check_options(options); !problem.empty()) return usage_error(problem);
  auto url = http::parse_url(options.url);
  if (!url) return usage_error("--url " + url.error().message);
  // An OpenAI base_url ends with /v1; the routes add it themselves.
  if (url->path.ends_with("/v1")) url->path.resize(url->path.size() - 3);

  BenchOptions used = options;
  used.url = url->str();
  const bool conversations = options.workload == "conversations";
  if (!conversations && used.requests == 0 && used.duration_s == 0) used.requests = 100;
  Preflight preflight(*url, used);
  if (!prepare_model(preflight, used.model)) return 1;

  RunPlan plan;
  plan.url = *url;
  plan.api_key = used.api_key;
  plan.request = RequestSettings{used.model, used.max_tokens, used.temperature, used.seed, used.ignore_eos};
  plan.conversations = conversations;
  plan.concurrency = used.concurrency;
  plan.requests = used.requests;
  plan.duration_s = used.duration_s;
  plan.conversation_count = used.conversations;
  plan.turns = used.turns;
  plan.prompt = calibrate(preflight, used, conversations);
  plan.seed = used.seed;
  plan.timeout_s = used.timeout_s;

  std::size_t total = conversations ? static_cast<std::size_t>(used.conversations) * used.turns : 0;
  if (used.requests > 0) total = total > 0 ? std::min<std::size_t>(total, used.requests) : used.requests;
  if (used.duration_s > 0 && !conversations && options.requests == 0) total = 0;
  Progress progress(!used.no_progress, total, used.duration_s);
  const RunResult run = run_workload(plan, progress);
  const Summary summary = summarize(run.records, run.duration_s, conversations);

  if (used.json) {
    std::printf("%s\n", report_json(used, summary, run).dump(2).c_str());
  } else {
    std::printf("%s", report_text(used, summary, run).c_str());
  }
  std::fflush(stdout);

  if (summary.ok == 0) {
    if (run.records.empty()) {
      std::fprintf(stderr, "clawbot bench: no request to %s completed\n", used.url.c_str());
    } else {
      const auto& first = summary.errors.front();
      std::fprintf(stderr, "clawbot bench: every request to %s failed (%zu); the most frequent error: %s%s\n",
                   used.url.c_str(), summary.failed,
                   first.status > 0 ? ("HTTP " + std::to_string(first.status) + ": ").c_str() : "",
                   first.message.c_str());
    }
    return 1;
  }
  if (summary.failed > 0) {
    std::fprintf(stderr, "clawbot bench: %zu of %zu requests failed (see the errors in the report)\n",
                 summary.failed, summary.requests);
  }
  return run.interrupted ? 130 : 0;
}

}  // namespace clawbot::bench
