// The OpenAI-compatible routes: JSON in, typed GenerationJob to the scheduler, JSON or SSE out.
#pragma once

#include <atomic>
#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/http_server.h"
#include "engine/chat_format.h"
#include "engine/engine.h"
#include "monitor/history.h"
#include "monitor/metrics.h"
#include "server/scheduler.h"

namespace clawbot::monitor {
class Alerts;
}
namespace clawbot::audio {
class TranscriptionService;
}

namespace clawbot::server {

class GenerationMetrics;
class KbService;

struct ServeContext {
  const engine::Model& model;
  const engine::Tokenizer& tokenizer;
  // The chat format (Jinja template, tool calls, reasoning); none: chat requests explain why.
  std::shared_ptr<const engine::ChatFormatter> chat_template;
  std::string chat_template_problem;
  Scheduler& scheduler;
  std::string model_id;
  std::uint32_t n_ctx = 0;  // tokens each request may use, prompt and answer together
  std::time_t created = 0;
  monitor::Registry* metrics = nullptr;
  GenerationMetrics* generation_metrics = nullptr;  // the latency series in `metrics`, resolved once
  bool strict_model = false;                        // a request naming another model: 404 model_not_found
  const std::atomic<bool>* draining = nullptr;      // true after SIGTERM: new work is refused with 503
  monitor::Alerts* alerts = nullptr;                // the alert rules and their alerts (GET /api/alerts)
  const monitor::History* history = nullptr;        // GET /api/metrics/history
  KbService* kb = nullptr;                          // --kb DIR: /v1/kb, chat with "kb" (kb_routes.h)
  bool web = true;  // the browser pages (GET / and /dashboard) and the chat's prompts; off: --no-web
  // Speech to text (serve --whisper-model): POST /v1/audio/*; none: those routes answer 404.
  audio::TranscriptionService* transcription = nullptr;
  std::string audio_model_id;    // its id in /v1/models
  std::string audio_model_type;  // tiny, base, ...
};

// `paths`, when given, receives each route's path.
std::shared_ptr<const http::Router> make_openai_router(const ServeContext& context,
                                                       std::vector<std::string>* paths = nullptr);

}  // namespace clawbot::server
