// One generation request after its JSON is read: its jobs go to the scheduler, and their events come back
// as a stream of SSE chunks or as one JSON answer, shaped for chat, completions or infill.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/http_server.h"
#include "monitor/metrics.h"
#include "server/openai_routes.h"
#include "server/scheduler.h"

namespace clawbot::server {

// infill: llama-server's /infill answer ({"content", "stop", ...}), not an OpenAI one. (Chat answers are
// written by api/chat_completions.cpp through run_chat.)
enum class Api { completions, infill };

// What every generation route reads from its body (parse_common in openai_routes.cpp).
struct CommonRequest {
  engine::SamplingParams sampling;
  int max_tokens = 0;
  int min_tokens = 0;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  int n = 1;
};

// The latency series observed per streamed piece: resolved once into handles (one lock, no string built and
// no map searched per token), each at its first value, so that /metrics lists a series once it has one.
class GenerationMetrics {
 public:
  explicit GenerationMetrics(monitor::Registry& registry) : registry_(registry) {}
  void time_to_first_token(double seconds);
  void inter_token_latency(double seconds);
  void request_latency(double seconds);
  void request_finished(const std::string& finish_reason);

 private:
  struct Series {
    std::once_flag resolved;
    monitor::HistogramHandle handle;
  };
  void observe(Series& series, const char* name, const char* help, const std::vector<double>& buckets,
               double value);
  monitor::Registry& registry_;
  Series ttft_, itl_, e2e_;
};

// The jobs of one request (n choices); whatever way the handler leaves, the scheduler learns that nobody
// listens any more.
struct Generation {
  std::shared_ptr<EventChannel> events;
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
  Generation() = default;
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;
  ~Generation() {
    if (events) {
      cancelled->store(true);
      events->close();
    }
  }
};

// The scheduler side of one generation request, whatever protocol writes its answer: its n jobs submitted,
// the client watched while a whole answer is made, the events received, and the request's latency series and
// access-log usage noted. Each protocol's writer drives one.
class RequestJobs {
 public:
  RequestJobs(const ServeContext& ctx, http::Exchange& ex, const CommonRequest& req);
  // Submits `req.n` jobs of `prompt` (choice i's seed is the request's plus i); false: the queue is full.
  bool submit(std::vector<engine::Token> prompt, const engine::SamplingParams& sampling,
              const std::vector<std::string>& stop);
  // A whole answer is written only at the end: the socket is watched meanwhile, and a close cancels the jobs
  // (their slots are free at the next step). A stream notices a client that left when a write fails.
  void watch_client();
  // The next event; none when the channel has closed: the client left (client_gone()), or the scheduler
  // dropped the job (shutting down: answer shutting_down_error()).
  boost::asio::awaitable<std::optional<GenerationEvent>> next();
  bool client_gone() const { return client_gone_->load(); }
  // An event that ends the request with an error: its code goes to the access log.
  void note_error(const Error& error);
  // An event without text that ends nothing: a keep-alive while the prompt waits or is prefilled.
  static bool is_heartbeat(const GenerationEvent& event) { return !event.done && event.text.empty(); }
  // An event that carries text: time to first token, or the time since the last piece.
  void observe_timing(const GenerationEvent& event);
  // A choice's last event: added to the totals; after the last choice, the access log's usage.
  void count_finished(const GenerationEvent& event);
  bool all_done() const { return done_ == req_.n; }
  int done() const { return done_; }
  const GenerationEvent& totals() const { return totals_; }
  // The request's end-to-end latency and how its first choice ended (once every choice has ended).
  void record_success(const std::string& finish_reason);
  static Error shutting_down_error();

 private:
  const ServeContext& ctx_;
  http::Exchange& ex_;
  const CommonRequest& req_;
  using Clock = std::chrono::steady_clock;
  const Clock::time_point started_ = Clock::now();
  Generation gen_;
  std::shared_ptr<std::atomic<bool>> client_gone_ = std::make_shared<std::atomic<bool>>(false);
  GenerationEvent totals_;
  int done_ = 0;
  std::optional<double> ttft_ms_;
  Clock::time_point last_token_at_ = started_;
};

// "chatcmpl-" and 24 hex digits: an answer's id.
std::string new_id(const char* prefix);
// OpenAI's words for why a choice ended.
const char* openai_finish_reason(FinishReason reason);
// OpenAI's usage object (prompt_tokens_details.cached_tokens too), and llama-server's timings.
nlohmann::json usage_json(const GenerationEvent& totals);
nlohmann::json timings_json(const GenerationEvent& totals);
// An OpenAI answer or chunk around its choices: id, object, created, model, system_fingerprint.
nlohmann::json openai_envelope(const std::string& id, const char* object, long long created,
                               const std::string& model, nlohmann::json choices);

Error queue_full_error();
// A 503 with Retry-After: 1.
boost::asio::awaitable<void> respond_busy(http::Exchange& ex, const Error& error);

// Runs `req.n` choices of `prompt` and writes the answer. `final_fields` are added to the last answer
// (infill: what was cut to fit).
boost::asio::awaitable<void> run_generation(const ServeContext& ctx, http::Exchange& ex, Api api,
                                            std::vector<engine::Token> prompt, const CommonRequest& req,
                                            const nlohmann::json& final_fields = nlohmann::json::object());

}  // namespace clawbot::server
