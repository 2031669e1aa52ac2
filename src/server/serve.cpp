#include "server/serve.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>

#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "audio/transcriber.h"
#include "audio/transcription_service.h"
#include "common/cli_error.h"
#include "common/http_server.h"
#include "common/json_config.h"
#include "common/model_path.h"
#include "common/service_notify.h"
#include "discovery/discovery.h"
#include "server/access_log.h"
#include "server/generation.h"
#include "server/kb_routes.h"
#include "server/openai_routes.h"
#include "server/serve_internal.h"

namespace clawbot::server {
namespace {

// SIGTERM or SIGINT: drain. New connections are refused and new work gets a 503 with Retry-After (a gateway
// sends it elsewhere); the requests already taken are finished, for up to --drain-timeout; then the process
// exits. A second signal stops at once.
class DrainOnSignal {
 public:
  DrainOnSignal(boost::asio::io_context& io, http::Server& server, Scheduler& scheduler,
                std::atomic<bool>& draining, std::unique_ptr<discovery::Advertiser>& advertiser,
                double drain_timeout_s)
      : io_(io),
        server_(server),
        scheduler_(scheduler),
        draining_(draining),
        advertiser_(advertiser),
        drain_timeout_s_(drain_timeout_s),
        signals_(io, SIGINT, SIGTERM),
        drain_timer_(io) {
    signals_.async_wait([this](const boost::system::error_code& ec, int) {
      if (!ec) start_draining();
    });
  }

 private:
  void start_draining() {
    draining_ = true;
    service_notify("STOPPING=1");
    advertiser_.reset();  // goodbye packets: browsers drop the node now, not when their cache expires
    server_.stop();       // no new connections
    spdlog::info(
        "shutting down: finishing {} requests in progress (at most {:g} s, --drain-timeout); "
        "new work is refused; signal again to stop now",
        server_.exchanges_in_progress(), drain_timeout_s_);
    drain_deadline_ = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(static_cast<long long>(drain_timeout_s_ * 1000));
    signals_.async_wait([this](const boost::system::error_code& ec, int) {
      if (ec) return;
      spdlog::info("stopping now");
      shut_down();
    });
    wait_for_drain();
  }

  void wait_for_drain() {
    const std::size_t left = server_.exchanges_in_progress();
    if (left == 0) {
      spdlog::info("drained: every request is answered; exiting");
      shut_down();
      return;
    }
    if (std::chrono::steady_clock::now() >= drain_deadline_) {
      spdlog::warn("--drain-timeout: {} requests still in progress are cut", left);
      shut_down();
      return;
    }
    drain_timer_.expires_after(std::chrono::milliseconds(20));
    drain_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) wait_for_drain();
    });
  }

  void shut_down() {
    drain_timer_.cancel();
    signals_.cancel();
    scheduler_.stop();
    io_.stop();
  }

  boost::asio::io_context& io_;
  http::Server& server_;
  Scheduler& scheduler_;
  std::atomic<bool>& draining_;
  std::unique_ptr<discovery::Advertiser>& advertiser_;
  double drain_timeout_s_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer drain_timer_;
  std::chrono::steady_clock::time_point drain_deadline_;
};

void log_configuration(const ServeOptions& options, const ServeContext& serve, const std::string& model_name,
                       const ops::ServingSize& size, std::uint32_t kv_cells) {
  const auto& info = serve.model.info();
  spdlog::info("model {} ({}{}, {} parameters, {:.1f} MiB), chat template {}", model_name, info.architecture,
               info.is_embedding ? ", embeddings" : "", info.n_params,
               static_cast<double>(info.size_bytes) / (1 << 20),
               serve.chat_template ? serve.chat_template->name() : "none");
  const auto gpus = options.gpu_layers == 0 ? std::vector<engine::Accelerator>{} : engine::accelerators();
  if (!gpus.empty()) {
    spdlog::info("{} of {} layers on the GPU (--gpu-layers)",
                 options.gpu_layers < 0 ? info.n_layer + 1 : std::min(options.gpu_layers, info.n_layer + 1),
                 info.n_layer + 1);
    for (const auto& gpu : gpus) {
      spdlog::info("GPU {} ({}): {:.2f} GiB of {:.2f} GiB free with the model and its cache loaded", gpu.name,
                   gpu.description, gib(static_cast<double>(gpu.free_bytes)),
                   gib(static_cast<double>(gpu.total_bytes)));
    }
  }
  spdlog::info(
      "{} slots; each request may use {} tokens (prompt and answer); KV cache {} cells ({}), "
      "flash attention {}, prompts first {}, cold tier {} MiB{}",
      size.parallel, size.ctx, kv_cells, options.kv_type, options.flash_attn,
      options.prompts_first == "on" ? "on" : "off", options.no_cache ? 0 : options.cache_ram_mib,
      options.no_cache ? " (cache off)" : "");
}

// The lines a script waits for, on stdout.
void print_listening(const ServeOptions& options, bool https, unsigned short port) {
  const std::string url_host =
      options.host.find(':') != std::string::npos ? "[" + options.host + "]" : options.host;
  const char* scheme = https ? "https" : "http";
  std::printf("clawbot serve: listening on %s://%s:%u\n", scheme, url_host.c_str(), port);
  std::printf(
      "try: curl -s %s%s://%s:%u/v1/chat/completions -H 'Content-Type: application/json' "
      "-d '{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"max_tokens\":64}'\n",
      https ? "--cacert CA.pem " : "", scheme, url_host.c_str(), port);
  std::fflush(stdout);
}

// The certificate's expiry, for Prometheus (the history reads it for the cert_expiring alert).
void export_certificate_expiry(const ServeContext& serve) {
  const auto not_after = serve.history ? serve.history->options().tls_not_after : std::nullopt;
  if (not_after && serve.metrics)
    serve.metrics->gauge_callback("clawbot_tls_certificate_expiry_timestamp_seconds",
                                  "When the TLS certificate served expires (notAfter, unix seconds)",
                                  [at = *not_after] { return at; });
}

// With a speech model, uploads to /v1/audio/ may be larger (--audio-max-bytes) than other bodies
// (--max-body-bytes), and with --kb-write uploads to /v1/kb/NAME/documents (--kb-max-upload-bytes): the
// server reads up to the largest, and a request whose Content-Length is over its route's limit is refused
// with 413 before its body is read.
struct BodyLimits {
  std::size_t body = 0;
  std::optional<std::size_t> audio, kb_upload;

  static BodyLimits of(const ServeOptions& options, bool transcription) {
    BodyLimits limits{options.max_body_bytes, std::nullopt, std::nullopt};
    if (transcription) limits.audio = options.audio_max_bytes;
    if (!options.kb_dir.empty() && options.kb_write) limits.kb_upload = options.kb_max_upload_bytes;
    return limits;
  }
  std::size_t largest() const { return std::max({body, audio.value_or(0), kb_upload.value_or(0)}); }
};

bool is_kb_upload(std::string_view target) {
  target = target.substr(0, target.find('?'));
  return target.starts_with("/v1/kb/") && target.ends_with("/documents");
}

std::optional<Error> body_over_limit(const http::RequestHead& head, const BodyLimits& limits) {
  const auto field = head[boost::beast::http::field::content_length];
  std::size_t length = 0;
  if (field.empty() || std::from_chars(field.data(), field.data() + field.size(), length).ec != std::errc())
    return std::nullopt;
  const std::string_view target(head.target().data(), head.target().size());
  const bool audio = limits.audio && target.starts_with("/v1/audio/");
  const bool kb_upload = limits.kb_upload && is_kb_upload(target);
  const std::size_t limit = audio ? *limits.audio : kb_upload ? *limits.kb_upload : limits.body;
  if (length <= limit) return std::nullopt;
  const char* what = audio ? "the audio upload" : kb_upload ? "the upload" : "the request body";
  const char* option = audio ? "--audio-max-bytes" : kb_upload ? "--kb-max-upload-bytes" : "--max-body-bytes";
  return Error{ErrorKind::payload_too_large,
               std::string(what) + " is " + std::to_string(length) + " bytes; this node's limit is " +
                   std::to_string(limit) + " bytes (" + option + ")",
               audio || kb_upload ? "file" : "", "payload_too_large"};
}

// Listens, announces the node, and answers until a signal has drained it.
void run_server(const ServeOptions& options, LogFormat log_format, const ServeContext& serve,
                std::atomic<bool>& draining, const std::function<void()>& log_started) {
  boost::asio::io_context io;
  http::ServerLimits limits;
  limits.max_body_bytes = options.max_body_bytes;
  limits.header_timeout = std::chrono::seconds(options.header_timeout_s);
  limits.min_body_rate = options.min_body_rate;
  // A stream runs at most this far (the kernel doubles it, plus the client's receive buffer) ahead of a
  // client that does not read, rather than the 4 MiB of send-buffer autotuning: a slow reader is noticed
  // after a few hundred tokens (--slow-reader-timeout). Plenty for a stream that is read, whatever the round
  // trip.
  limits.stream_send_buffer_bytes = 16 << 10;
  std::vector<std::string> routes;
  auto router = make_openai_router(serve, &routes);
  const BodyLimits body_limits = BodyLimits::of(options, serve.transcription != nullptr);
  limits.max_body_bytes = body_limits.largest();
  http::Server server(io, std::move(router), limits);
  if (body_limits.audio || body_limits.kb_upload)
    server.set_header_check([body_limits](const http::RequestHead& head, const boost::asio::ip::address&) {
      return body_over_limit(head, body_limits);
    });
  server.set_observer(access_observer(serve.metrics, {.enabled = !options.no_access_log,
                                                      .format = log_format,
                                                      .model_id = serve.model_id,
                                                      .routes = std::move(routes)}));
  const bool https = !options.tls_cert.empty();
  unsigned short port = 0;
  if (https) {
    port = server.listen(options.host, static_cast<unsigned short>(options.port), tls_server_config(options));
    log_tls_certificate(options);
  } else {
    port = server.listen(options.host, static_cast<unsigned short>(options.port));
  }
  export_certificate_expiry(serve);
  if (serve.alerts) serve.alerts->set_source(monitor::alert_source("serve", options.host, port, https));
  // Announced once the listener is bound (the real port is known); withdrawn first thing at shutdown. A node
  // has no API keys of its own (a gateway in front adds them): auth=no.
  std::unique_ptr<discovery::Advertiser> advertiser =
      discovery::advertise(discovery::service_info("node", port, serve.model_id, https, false),
                           {.enabled = !options.no_advertise, .listen_host = options.host});
  DrainOnSignal drain(io, server, serve.scheduler, draining, advertiser, options.drain_timeout_s);
  log_started();
  print_listening(options, https, port);
  service_notify("READY=1");  // systemd (Type=notify): the model is loaded and the port listens

  const unsigned io_threads = 2;  // parsing and formatting; generation has its own thread
  std::vector<std::jthread> workers;
  for (unsigned i = 1; i < io_threads; ++i) workers.emplace_back([&io] { io.run(); });
  io.run();
  workers.clear();
  if (serve.kb) serve.kb->stop();  // the writer's thread, whose job may wait on `io` (embeddings)
  serve.scheduler.stop();          // before the sessions left on `io` are destroyed
}

monitor::History::Options history_options(const ServeOptions& options) {
  monitor::History::Options history;
  history.role = "serve";
  history.interval_s = options.metrics_interval_s;
  history.queue_capacity = static_cast<std::size_t>(options.queue_max);
  if (!options.tls_cert.empty()) {
    const auto cert = tls::read_certificate_file(options.tls_cert);
    history.tls_not_after = std::chrono::duration<double>(cert.not_after.time_since_epoch()).count();
  }
  return history;
}

// From a loaded model to a running node: size, context, scheduler, routes.
int serve_model(const ServeOptions& options, LogFormat log_format, const ops::PreparedModel& prepared,
                const engine::Model& model, monitor::AlertConfig alert_config, KbService* kb) {
  const auto& info = model.info();
  check_size_options(options);
  const ChatTemplateChoice chat = choose_chat_template(model, options);
  const ops::ServingSize size = size_for_memory(options, model, prepared);
  if (info.is_embedding && size.ctx > info.n_ctx_train) {
    throw std::runtime_error("--ctx " + std::to_string(size.ctx) + " is more than this embedding model's " +
                             std::to_string(info.n_ctx_train) + " positions");
  }
  engine::Context context(model, context_options(options, size, info.is_embedding));
  engine::Tokenizer tokenizer(model);
  Scheduler scheduler(model, context, scheduler_options(options, size, context, info.is_embedding));
  monitor::Registry metrics;
  register_metrics(metrics, scheduler, context);
  GenerationMetrics generation_metrics(metrics);
  std::atomic<bool> draining = false;
  // Speech to text beside the LLM (--whisper-model): whisper.cpp on the same ggml, one transcription at a
  // time.
  std::unique_ptr<audio::Transcriber> transcriber;
  std::unique_ptr<audio::TranscriptionService> transcription;
  std::string audio_model_id;
  if (!options.whisper_model.empty()) {
    const std::string path = require_model_file(options.whisper_model);
    transcriber = std::make_unique<audio::Transcriber>(audio::TranscriberOptions{
        .model_path = path,
        .vad_model_path = options.vad_model.empty() ? std::string() : require_model_file(options.vad_model),
        .use_gpu = options.gpu_layers != 0});
    transcription = std::make_unique<audio::TranscriptionService>(
        *transcriber,
        audio::TranscriptionService::Options{
            .queue_max = static_cast<std::size_t>(options.audio_queue_max),
            .limits = {.max_seconds = options.audio_max_seconds},
            .threads = options.whisper_threads > 0 ? options.whisper_threads : options.threads},
        &metrics);
    audio_model_id = std::filesystem::path(path).stem().string();
    spdlog::info("speech to text: whisper.cpp {} model {} ({}), audio up to {:g} s and {} bytes",
                 audio::whisper_release(), audio_model_id, transcriber->model_type(),
                 options.audio_max_seconds, options.audio_max_bytes);
  }
  // Before the history, whose sampler calls it (and is stopped first).
  monitor::Alerts alerts("serve", std::move(alert_config));
  monitor::History history(metrics, history_options(options));
  history.add_listener([&alerts](const monitor::Sample& sample) { alerts.evaluate(sample); });
  history.set_thresholds(alerts.thresholds());
  history.start();

  const ServeContext serve{
      .model = model,
      .tokenizer = tokenizer,
      .chat_template = chat.chat_template,
      .chat_template_problem = chat.problem,
      .scheduler = scheduler,
      .model_id = !options.alias.empty()   ? options.alias
                  : !prepared.name.empty() ? prepared.name
                                           : info.name,
      .n_ctx = static_cast<std::uint32_t>(size.ctx),
      .created = std::time(nullptr),
      .metrics = &metrics,
      .generation_metrics = &generation_metrics,
      .strict_model = options.strict_model,
      .draining = &draining,
      .alerts = &alerts,
      .history = &history,
      .kb = kb,
      .web = !options.no_web,
      .transcription = transcription.get(),
      .audio_model_id = audio_model_id,
      .audio_model_type = transcriber ? transcriber->model_type() : std::string(),
  };
  run_server(options, log_format, serve, draining, [&] {
    log_configuration(options, serve, prepared.name.empty() ? info.name : prepared.name, size,
                      context.n_ctx());
  });
  return 0;
}

}  // namespace

int run_serve(const ServeOptions& options) {
  const auto log_format = parse_log_format(options.log_format);
  if (!log_format) {
    return cli_error("clawbot serve", "--log-format must be text or json, not '" + options.log_format + "'",
                     1);
  }
  // Logs go to stderr: stdout carries only the lines a script waits for (the address, the curl example).
  setup_logging(*log_format, options.verbose);
  // The rules file before a model that may take minutes to load: a mistake in it is a usage error (2).
  monitor::AlertConfig alert_config;
  try {
    alert_config = load_alerts(options);
  } catch (const config::ConfigError& e) {
    return cli_error("clawbot serve", e.what(), 2);
  }
  // whisper.cpp's log first: it points ggml's log at itself, and init_backend then gives ggml back to
  // libllama.
  if (!options.whisper_model.empty()) audio::init_whisper_logging();
  engine::init_backend(options.verbose);
  try {
    // The knowledge bases before the model: a file that is not one is refused at once, by name.
    std::unique_ptr<KbService> kb;
    if (!options.kb_dir.empty())
      kb = std::make_unique<KbService>(
          options.kb_dir,
          KbWriteOptions{.enabled = options.kb_write, .max_upload_bytes = options.kb_max_upload_bytes});
    ops::PreparedModel prepared = prepare_model(options);
    check_tls_options(options);  // before loading a model that may take minutes
    auto model = engine::Model::load({.path = prepared.path,
                                      .vocab_only = false,
                                      .show_progress = true,
                                      .n_gpu_layers = options.gpu_layers});
    // libllama's mapping keeps the decrypted pages; what it unmaps (weights copied to a GPU) is then freed.
    if (prepared.decrypted) prepared.decrypted->close();
    return serve_model(options, *log_format, prepared, model, std::move(alert_config), kb.get());
  } catch (const std::exception& e) {
    return cli_error("clawbot serve", e.what(), 1);
  }
}

}  // namespace clawbot::server
