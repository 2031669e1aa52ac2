#include "bench/bench.h"

#include <cstdio>
#include <exception>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "bench/report.h"
#include "bench/runner.h"
#include "bench/stats.h"
#include "common/http_client.h"

namespace clawbot::bench {
namespace {

namespace asio = boost::asio;
using json = nlohmann::json;

int usage_error(const std::string& message) {
  std::fprintf(stderr, "clawbot bench: %s\n", message.c_str());
  return 2;
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

// Checks that the endpoint answers, and picks the model when none was named. Returns false (having said why)
// when the benchmark cannot run.
bool prepare_model(const http::Url& url, const BenchOptions& options, std::string& model) {
  asio::io_context io(1);
  http::ClientOptions client_options;
  client_options.read_timeout = std::chrono::milliseconds(static_cast<long long>(options.timeout_s * 1000));
  if (!options.api_key.empty())
    client_options.headers.emplace_back("Authorization", "Bearer " + options.api_key);
  http::Client client(io.get_executor(), url, client_options);
  auto models = run_sync(io, client.get("/v1/models"));
  if (!models) {
    std::fprintf(stderr, "clawbot bench: %s\n", models.error().message.c_str());
    return false;
  }
  const std::string where = url.str() + "/v1/models";
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
  if (!prepare_model(*url, options, used.model)) return 1;

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
  plan.system_prompt_tokens = used.system_prompt_tokens;
  plan.prompt_tokens = used.prompt_tokens;
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
