#include "server/serve.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "common/http_server.h"
#include "engine/engine.h"
#include "server/openai_routes.h"
#include "server/scheduler.h"

namespace clawbot::server {

std::string resolve_model_path(const std::string& model) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (model.find('/') != std::string::npos || fs::exists(model, ec)) return model;
  const char* env = std::getenv("CLAWBOT_MODELS");
  std::stringstream dirs(env && *env ? env : "../shared/models");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    const fs::path candidate = fs::path(dir) / model;
    if (fs::exists(candidate, ec)) return candidate.string();
  }
  return model;  // not found anywhere: the model check names it
}

int run_serve(const ServeOptions& options) {
  // Logs go to stderr: stdout carries only the lines a script waits for (the address, the curl example).
  spdlog::set_default_logger(spdlog::stderr_color_mt("serve"));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(options.verbose ? spdlog::level::debug : spdlog::level::info);
  engine::init_backend(options.verbose);

  const std::string path = resolve_model_path(options.model);
  try {
    engine::check_gguf_file(path);
  } catch (const engine::ModelFileError& e) {
    const char* env = std::getenv("CLAWBOT_MODELS");
    std::fprintf(stderr, "clawbot serve: %s\n", e.what());
    if (path == options.model && options.model.find('/') == std::string::npos) {
      std::fprintf(stderr, "clawbot serve: looked in the current directory and in CLAWBOT_MODELS=%s\n",
                   env && *env ? env : "../shared/models (default)");
    }
    return 1;
  }

  try {
    auto model = engine::Model::load({.path = path, .vocab_only = false, .show_progress = true});
    const auto& info = model.info();
    if (options.ctx < 0 || (options.ctx > 0 && options.ctx < 16)) {
      std::fprintf(stderr,
                   "clawbot serve: --ctx %d is too small (at least 16 tokens, or 0 for the model's own)\n",
                   options.ctx);
      return 1;
    }

    std::optional<engine::ChatTemplate> chat_template;
    std::string template_problem;
    if (!options.chat_template.empty()) {
      chat_template = engine::ChatTemplate::builtin(options.chat_template);  // throws, listing the names
    } else {
      try {
        chat_template = engine::ChatTemplate::from_model(model);
      } catch (const engine::EngineError& e) {
        template_problem = e.what();
        spdlog::warn("{}; /v1/chat/completions will answer 400 until then", template_problem);
      }
    }

    const auto n_ctx = static_cast<std::uint32_t>(options.ctx > 0 ? options.ctx : info.n_ctx_train);
    engine::Context context(
        model,
        {.n_ctx = n_ctx, .n_batch = static_cast<std::uint32_t>(options.batch), .n_threads = options.threads});
    engine::Tokenizer tokenizer(model);
    Scheduler scheduler(model, context);

    ServeContext serve_context{
        .model = model,
        .tokenizer = tokenizer,
        .chat_template = chat_template,
        .chat_template_problem = template_problem,
        .scheduler = scheduler,
        .model_id = options.alias.empty() ? info.name : options.alias,
        .n_ctx = context.n_ctx(),
        .created = std::time(nullptr),
    };

    boost::asio::io_context io;
    http::ServerLimits limits;
    limits.max_body_bytes = options.max_body_bytes;
    http::Server server(io, make_openai_router(serve_context), limits);
    const unsigned short port = server.listen(options.host, static_cast<unsigned short>(options.port));

    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) {
      spdlog::info("shutting down");
      server.stop();
      scheduler.stop();
      io.stop();
    });

    spdlog::info("model {} ({}, {} parameters, {:.1f} MiB), context {} tokens per request, chat template {}",
                 info.name, info.architecture, info.n_params,
                 static_cast<double>(info.size_bytes) / (1 << 20), context.n_ctx(),
                 chat_template ? chat_template->name() : "none");
    const std::string url_host =
        options.host.find(':') != std::string::npos ? "[" + options.host + "]" : options.host;
    std::printf("clawbot serve: listening on http://%s:%u\n", url_host.c_str(), port);
    std::printf(
        "try: curl -s http://%s:%u/v1/chat/completions -H 'Content-Type: application/json' "
        "-d '{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"max_tokens\":64}'\n",
        url_host.c_str(), port);
    std::fflush(stdout);

    const unsigned io_threads = 2;  // parsing and formatting; generation has its own thread
    std::vector<std::jthread> workers;
    for (unsigned i = 1; i < io_threads; ++i) workers.emplace_back([&io] { io.run(); });
    io.run();
    workers.clear();
    scheduler.stop();
    return 0;
  } catch (const engine::ModelFileError& e) {
    std::fprintf(stderr, "clawbot serve: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "clawbot serve: %s\n", e.what());
    return 1;
  }
}

}  // namespace clawbot::server
