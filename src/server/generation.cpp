#include "server/generation.h"

#include <chrono>
#include <cmath>
#include <ctime>
#include <optional>
#include <random>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/text.h"
#include "common/use_tuple.h"

namespace clawbot::server {
namespace {

using nlohmann::json;
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

}  // namespace

std::string new_id(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += text::hex_digits[rng() % 16];
  return id;
}

// OpenAI's words for why a choice ended ("error" is never written: an error event answers instead).
const char* openai_finish_reason(FinishReason reason) {
  switch (reason) {
    case FinishReason::stop:
      return "stop";
    case FinishReason::length:
      return "length";
    case FinishReason::error:
      return "error";
  }
  return "stop";
}

json usage_json(const GenerationEvent& e) {
  return {{"prompt_tokens", e.prompt_tokens},
          {"completion_tokens", e.completion_tokens},
          {"total_tokens", e.prompt_tokens + e.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", e.cached_tokens}}}};
}

// llama-server's timings: prompt_n counts the prompt tokens processed (not those taken from the cache), and
// prompt_ms runs from the slot taking the request to its first token; queue_ms (ours) is the wait before.
json timings_json(const GenerationEvent& e) {
  const int processed = e.prompt_tokens - e.cached_tokens;
  const int steps = e.completion_tokens - 1;  // the first token comes with the prompt's last step
  return {{"cache_n", e.cached_tokens},
          {"prompt_n", processed},
          {"prompt_ms", e.prompt_ms},
          {"prompt_per_token_ms", processed > 0 ? e.prompt_ms / processed : 0.0},
          {"prompt_per_second", e.prompt_ms > 0 ? 1000.0 * processed / e.prompt_ms : 0.0},
          {"predicted_n", e.completion_tokens},
          {"predicted_ms", e.generation_ms},
          {"predicted_per_token_ms", steps > 0 ? e.generation_ms / steps : 0.0},
          {"predicted_per_second", steps > 0 && e.generation_ms > 0 ? 1000.0 * steps / e.generation_ms : 0.0},
          {"queue_ms", e.queue_ms}};
}

json openai_envelope(const std::string& id, const char* object, long long created, const std::string& model,
                     json choices) {
  return json{{"id", id},
              {"object", object},
              {"created", created},
              {"model", model},
              {"system_fingerprint", "clawbot"},
              {"choices", std::move(choices)}};
}

namespace {

// What the access log says of a request's tokens and first token (never its text).
void note_usage(http::Exchange& ex, const GenerationEvent& totals, std::optional<double> ttft_ms) {
  auto& fields = ex.log_fields();
  fields["prompt_tokens"] = totals.prompt_tokens;
  fields["cached_tokens"] = totals.cached_tokens;
  fields["completion_tokens"] = totals.completion_tokens;
  if (ttft_ms) fields["ttft_ms"] = std::round(*ttft_ms * 10) / 10;
}

// The JSON shapes of one request's answer: chunks of a stream, and the whole answer.
class ReplyFormat {
 public:
  ReplyFormat(const ServeContext& ctx, Api api, const json& final_fields)
      : ctx_(ctx),
        api_(api),
        final_fields_(final_fields),
        id_(new_id("cmpl-")),
        created_(static_cast<long long>(std::time(nullptr))) {}

  json chunk(int choice_index, const std::string& text, const json& finish_reason) const {
    if (api_ == Api::infill) return json{{"index", choice_index}, {"content", text}, {"stop", false}};
    json choice = {
        {"index", choice_index}, {"finish_reason", finish_reason}, {"text", text}, {"logprobs", nullptr}};
    return envelope("text_completion", json::array({choice}));
  }

  // llama-server's fields, and usage as OpenAI counts it; `last`: what the caller added (final_fields).
  json infill_final(int choice_index, const std::string& text, const GenerationEvent& e, bool last) const {
    json answer{{"index", choice_index},
                {"content", text},
                {"stop", true},
                {"model", ctx_.model_id},
                {"stop_type", e.finish_reason == FinishReason::length ? "limit" : "eos"},
                {"tokens_predicted", e.completion_tokens},
                {"tokens_evaluated", e.prompt_tokens},
                {"tokens_cached", e.cached_tokens},
                {"usage", usage_json(e)},
                {"timings", timings_json(e)}};
    if (last) answer.update(final_fields_);
    return answer;
  }

  // The chunk that ends a choice. Usage once: in its own chunk when the client asked for it (as OpenAI: a
  // client adding up chunks counts it once), else in the last finish chunk (as llama-server); llama-server's
  // timings beside it.
  json finish_chunk(const GenerationEvent& event, const GenerationEvent* totals) const {
    if (api_ == Api::infill) return infill_final(event.choice, event.text, event, totals != nullptr);
    json last = chunk(event.choice, event.text, openai_finish_reason(event.finish_reason));
    if (totals) {
      last["usage"] = usage_json(*totals);
      last["timings"] = timings_json(*totals);
    }
    return last;
  }

  json usage_chunk(const GenerationEvent& totals) const {
    json usage = chunk(0, "", nullptr);
    usage["choices"] = json::array();
    usage["usage"] = usage_json(totals);
    usage["timings"] = timings_json(totals);
    return usage;
  }

  json whole(const std::vector<std::string>& contents, const std::vector<FinishReason>& finish_reasons,
             const GenerationEvent& totals) const {
    const auto n = contents.size();
    if (api_ == Api::infill) {
      // One object for one answer, as llama-server; an array for n > 1.
      json answers = json::array();
      for (std::size_t i = 0; i < n; ++i) {
        GenerationEvent e = totals;
        e.finish_reason = finish_reasons[i];
        answers.push_back(infill_final(static_cast<int>(i), contents[i], e, true));
      }
      return n == 1 ? answers[0] : answers;
    }
    json choices = json::array();
    for (std::size_t i = 0; i < n; ++i) {
      choices.push_back({{"index", i},
                         {"finish_reason", openai_finish_reason(finish_reasons[i])},
                         {"text", contents[i]},
                         {"logprobs", nullptr}});
    }
    json reply = envelope("text_completion", std::move(choices));
    reply["usage"] = usage_json(totals);
    reply["timings"] = timings_json(totals);
    return reply;
  }

 private:
  json envelope(const char* object, json choices) const {
    return openai_envelope(id_, object, created_, ctx_.model_id, std::move(choices));
  }

  const ServeContext& ctx_;
  Api api_;
  const json& final_fields_;
  std::string id_;
  long long created_;
};

// One request's events from the scheduler to the client: written as they come (a stream), or collected and
// written whole at the end.
class GenerationRun {
 public:
  GenerationRun(const ServeContext& ctx, http::Exchange& ex, Api api, const CommonRequest& req,
                const json& final_fields)
      : ex_(ex),
        api_(api),
        req_(req),
        format_(ctx, api, final_fields),
        jobs_(ctx, ex, req),
        contents_(static_cast<std::size_t>(req.n)),
        finish_reasons_(static_cast<std::size_t>(req.n)) {}

  asio::awaitable<void> run(std::vector<engine::Token> prompt) {
    if (!jobs_.submit(std::move(prompt), req_.sampling, req_.stop)) {
      const Error full = queue_full_error();
      co_await respond_busy(ex_, full);
      co_return;
    }
    if (req_.stream) {
      const bool open = co_await ex_.sse_start();
      if (!open) co_return;
    } else {
      jobs_.watch_client();
    }
    while (!jobs_.all_done()) {
      const auto event = co_await jobs_.next();
      if (!event) {  // the client left (no answer: the access log says 499), or the scheduler dropped the job
        if (!jobs_.client_gone()) co_await fail(RequestJobs::shutting_down_error());
        co_return;
      }
      const bool more = co_await take(*event);
      if (!more) co_return;
    }
    jobs_.record_success(openai_finish_reason(finish_reasons_[0]));
    if (req_.stream) {
      if (req_.include_usage && api_ != Api::infill)
        co_await ex_.sse_data(format_.usage_chunk(jobs_.totals()).dump());
      co_return;  // the session writes [DONE]
    }
    ex_.stop_watching();
    const json reply = format_.whole(contents_, finish_reasons_, jobs_.totals());
    co_await ex_.respond_json(200, reply);
  }

 private:
  asio::awaitable<void> fail(const Error& error) {
    if (req_.stream) {
      co_await ex_.sse_data(to_json(error).dump());
    } else {
      ex_.stop_watching();  // before a write: it cancels the socket's waits
      co_await ex_.respond_error(error);
    }
  }

  // One event from the scheduler; false when the answer has ended (failed, or the client left).
  asio::awaitable<bool> take(const GenerationEvent& event) {
    if (event.error) {
      jobs_.note_error(*event.error);
      co_await fail(*event.error);
      co_return false;
    }
    if (RequestJobs::is_heartbeat(event)) {
      if (!req_.stream) co_return true;
      co_return co_await ex_.sse_comment("keep-alive");
    }
    jobs_.observe_timing(event);
    if (!event.done) {
      if (!req_.stream) {
        contents_[static_cast<std::size_t>(event.choice)] += event.text;
        co_return true;
      }
      co_return co_await ex_.sse_data(format_.chunk(event.choice, event.text, nullptr).dump());
    }
    if (!req_.stream) contents_[static_cast<std::size_t>(event.choice)] += event.text;
    finish_reasons_[static_cast<std::size_t>(event.choice)] = event.finish_reason;
    jobs_.count_finished(event);
    if (!req_.stream) co_return true;
    const bool usage_here = jobs_.all_done() && (api_ == Api::infill || !req_.include_usage);
    co_return co_await ex_.sse_data(
        format_.finish_chunk(event, usage_here ? &jobs_.totals() : nullptr).dump());
  }

  http::Exchange& ex_;
  Api api_;
  const CommonRequest& req_;
  ReplyFormat format_;
  RequestJobs jobs_;
  std::vector<std::string> contents_;
  std::vector<FinishReason> finish_reasons_;
};

}  // namespace

RequestJobs::RequestJobs(const ServeContext& ctx, http::Exchange& ex, const CommonRequest& req)
    : ctx_(ctx), ex_(ex), req_(req) {}

bool RequestJobs::submit(std::vector<engine::Token> prompt, const engine::SamplingParams& sampling,
                         const std::vector<std::string>& stop,
                         const std::vector<engine::Token>& preserved_tokens) {
  gen_.events = std::make_shared<EventChannel>(ex_.executor(), 64);
  std::vector<GenerationJob> jobs;
  for (int i = 0; i < req_.n; ++i) {
    GenerationJob job;
    job.prompt = i + 1 < req_.n ? prompt : std::move(prompt);
    job.sampling = sampling;
    if (job.sampling.seed != engine::random_seed) job.sampling.seed += static_cast<std::uint32_t>(i);
    job.max_tokens = req_.max_tokens;
    job.min_tokens = req_.min_tokens;
    job.stop = stop;
    job.preserved_tokens = preserved_tokens;
    job.choice = i;
    job.events = gen_.events;
    job.cancelled = gen_.cancelled;
    jobs.push_back(std::move(job));
  }
  return ctx_.scheduler.submit(std::move(jobs));
}

void RequestJobs::watch_client() {
  ex_.watch_for_close([cancelled = gen_.cancelled, events = gen_.events, client_gone = client_gone_] {
    client_gone->store(true);
    cancelled->store(true);
    events->close();  // ends the wait for the next event
  });
}

asio::awaitable<std::optional<GenerationEvent>> RequestJobs::next() {
  auto [ec, event] = co_await gen_.events->async_receive(use_tuple);
  if (ec) co_return std::nullopt;
  co_return std::move(event);
}

void RequestJobs::note_error(const Error& error) {
  ex_.log_fields()["error"] = to_json(error)["error"]["code"];
}

void RequestJobs::observe_timing(const GenerationEvent& event) {
  if (event.text.empty() || !ctx_.generation_metrics) return;
  const auto now = Clock::now();
  if (!ttft_ms_) {
    ttft_ms_ = std::chrono::duration<double, std::milli>(now - started_).count();
    ctx_.generation_metrics->time_to_first_token(std::chrono::duration<double>(now - started_).count());
  } else {
    ctx_.generation_metrics->inter_token_latency(std::chrono::duration<double>(now - last_token_at_).count());
  }
  last_token_at_ = now;
}

void RequestJobs::count_finished(const GenerationEvent& event) {
  ++done_;
  totals_.prompt_tokens = event.prompt_tokens;
  totals_.cached_tokens = std::max(totals_.cached_tokens, event.cached_tokens);
  totals_.completion_tokens += event.completion_tokens;
  totals_.prompt_ms = std::max(totals_.prompt_ms, event.prompt_ms);
  totals_.generation_ms = std::max(totals_.generation_ms, event.generation_ms);
  totals_.queue_ms = std::max(totals_.queue_ms, event.queue_ms);
  if (done_ == req_.n) note_usage(ex_, totals_, ttft_ms_);
}

void RequestJobs::record_success(const std::string& finish_reason) {
  if (!ctx_.generation_metrics) return;
  ctx_.generation_metrics->request_latency(std::chrono::duration<double>(Clock::now() - started_).count());
  ctx_.generation_metrics->request_finished(finish_reason);
}

Error RequestJobs::shutting_down_error() {
  return Error{ErrorKind::unavailable, "the server is shutting down; retry on another node", {}, {}};
}

void GenerationMetrics::observe(Series& series, const char* name, const char* help,
                                const std::vector<double>& buckets, double value) {
  std::call_once(series.resolved, [&] { series.handle = registry_.histogram(name, help, buckets); });
  series.handle.observe(value);
}

void GenerationMetrics::time_to_first_token(double seconds) {
  observe(ttft_, "clawbot_time_to_first_token_seconds", "Time to first token", monitor::ttft_buckets(),
          seconds);
}

void GenerationMetrics::inter_token_latency(double seconds) {
  observe(itl_, "clawbot_inter_token_latency_seconds", "Time between streamed pieces", monitor::itl_buckets(),
          seconds);
}

void GenerationMetrics::request_latency(double seconds) {
  observe(e2e_, "clawbot_e2e_request_latency_seconds", "Request latency, end to end", monitor::e2e_buckets(),
          seconds);
}

// Once a request, by a label that varies: looked up by name.
void GenerationMetrics::request_finished(const std::string& finish_reason) {
  registry_.counter_add("clawbot_request_success_total", "Finished requests by finish reason",
                        {{"finished_reason", finish_reason}});
}

Error queue_full_error() {
  return Error{ErrorKind::unavailable,
               "the server is busy: its request queue is full; retry shortly",
               {},
               "queue_full"};
}

asio::awaitable<void> respond_busy(http::Exchange& ex, const Error& error) {
  std::vector<std::pair<std::string, std::string>> headers;
  headers.emplace_back("Retry-After", "1");
  co_await ex.respond_error(error, std::move(headers));
}

asio::awaitable<void> run_generation(const ServeContext& ctx, http::Exchange& ex, Api api,
                                     std::vector<engine::Token> prompt, const CommonRequest& req,
                                     const json& final_fields) {
  GenerationRun run(ctx, ex, api, req, final_fields);
  co_await run.run(std::move(prompt));
}

}  // namespace clawbot::server
