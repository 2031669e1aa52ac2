// One generation request after its JSON is read: its jobs go to the scheduler, and their events come back
// as a stream of SSE chunks or as one JSON answer, shaped for chat, completions or infill.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/http_server.h"
#include "monitor/metrics.h"
#include "server/openai_routes.h"
#include "server/scheduler.h"

namespace clawbot::server {

// infill: llama-server's /infill answer ({"content", "stop", ...}), not an OpenAI one.
enum class Api { chat, completions, infill };

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

Error queue_full_error();
// A 503 with Retry-After: 1.
boost::asio::awaitable<void> respond_busy(http::Exchange& ex, const Error& error);

// Runs `req.n` choices of `prompt` and writes the answer. `final_fields` are added to the last answer
// (infill: what was cut to fit).
boost::asio::awaitable<void> run_generation(const ServeContext& ctx, http::Exchange& ex, Api api,
                                            std::vector<engine::Token> prompt, const CommonRequest& req,
                                            const nlohmann::json& final_fields = nlohmann::json::object());

}  // namespace clawbot::server
