// The pieces of `clawbot serve`'s start-up, one concern each, for serve.cpp (which wires them together):
// the model file and TLS checks (serve_setup.cpp), the memory check and --fit (serve_memory.cpp, with the
// planner of ops/plan.h). Each throws std::runtime_error with the message that run_serve prints after
// "clawbot serve: ".
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/tls.h"
#include "engine/chat_format.h"
#include "engine/engine.h"
#include "monitor/alerts.h"
#include "monitor/metrics.h"
#include "ops/integrity.h"
#include "ops/plan.h"
#include "server/scheduler.h"
#include "server/serve.h"

namespace clawbot::server {

inline double gib(double bytes) {
  return bytes / (1024.0 * 1024 * 1024);
}

// Finds the model (a path or a name in the model directories), checks (--verify) or decrypts it into memory,
// and checks the GGUF file before libllama reads it.
ops::PreparedModel prepare_model(const ServeOptions& options);

// --tls-cert, --tls-key and --tls-client-ca together, and their files readable, before a model that may take
// minutes to load.
void check_tls_options(const ServeOptions& options);
tls::ServerConfig tls_server_config(const ServeOptions& options);
// What the node's certificate says, and a warning while there is still time to renew it.
void log_tls_certificate(const ServeOptions& options);

// --alerts FILE (the built-in rules without one); throws config::ConfigError naming the file and the field.
monitor::AlertConfig load_alerts(const ServeOptions& options);

struct ChatTemplateChoice {
  std::shared_ptr<const engine::ChatFormatter> chat_template;  // none: chat requests get `problem`
  std::string problem;
};
// --chat-template NAME|FILE (a built-in name, or a Jinja file), else the model's own, run as Jinja by
// llama.cpp's common chat layer; an embedding model has none. --reasoning-format says where thinking goes.
ChatTemplateChoice choose_chat_template(const engine::Model& model, const ServeOptions& options);

// --ctx and --parallel within their ranges.
void check_size_options(const ServeOptions& options);

// The size asked for (--ctx, else the model's own up to 8192; --parallel) when it fits the memory the
// planner says it needs, else what --fit lowers it to; throws saying what is short otherwise.
ops::ServingSize size_for_memory(const ServeOptions& options, const engine::Model& model,
                                 const ops::PreparedModel& prepared);

engine::ContextOptions context_options(const ServeOptions& options, const ops::ServingSize& size,
                                       bool embedding);
SchedulerOptions scheduler_options(const ServeOptions& options, const ops::ServingSize& size,
                                   const engine::Context& context, bool embedding);

void register_metrics(monitor::Registry& metrics, const Scheduler& scheduler, const engine::Context& context);

}  // namespace clawbot::server
