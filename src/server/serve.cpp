#include "server/serve.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/http_server.h"
#include "common/model_path.h"
#include "common/tls.h"
#include "discovery/discovery.h"
#include "engine/engine.h"
#include "monitor/metrics.h"
#include "ops/gguf_reader.h"
#include "ops/integrity.h"
#include "ops/plan.h"
#include "server/access_log.h"
#include "server/openai_routes.h"
#include "server/scheduler.h"

namespace clawbot::server {
namespace {

void register_metrics(monitor::Registry& metrics, const Scheduler& scheduler,
                      const engine::Context& context) {
  auto stat = [&scheduler](auto member) {
    return [&scheduler, member] { return static_cast<double>(scheduler.stats().*member); };
  };
  metrics.counter_callback("clawbot_prompt_tokens_total", "Prompt tokens received",
                           stat(&SchedulerStats::prompt_tokens));
  metrics.counter_callback("clawbot_prompt_tokens_cached_total", "Prompt tokens reused from the KV cache",
                           stat(&SchedulerStats::prompt_tokens_cached));
  metrics.counter_callback("clawbot_generation_tokens_total", "Tokens generated",
                           stat(&SchedulerStats::generated_tokens));
  metrics.counter_callback("clawbot_prefix_cache_queries_total", "Prefix-cache lookups",
                           stat(&SchedulerStats::cache_lookups));
  metrics.counter_callback("clawbot_prefix_cache_hits_total", "Lookups that reused at least one token",
                           stat(&SchedulerStats::cache_hits));
  metrics.counter_callback(
      "clawbot_prefix_cache_text_matches_total",
      "Prompts whose cached prefix was found by text: a re-tokenized answer, matched in the "
      "tokens the model generated",
      stat(&SchedulerStats::text_matches));
  metrics.counter_callback("clawbot_cold_cache_saves_total", "Sequences saved to the cold tier",
                           stat(&SchedulerStats::cold_saves));
  metrics.counter_callback("clawbot_cold_cache_restores_total", "Sequences restored from the cold tier",
                           stat(&SchedulerStats::cold_restores));
  metrics.counter_callback("clawbot_cold_cache_evictions_total", "Saved sequences evicted",
                           stat(&SchedulerStats::cold_evictions));
  metrics.counter_callback("clawbot_decode_retries_total",
                           "Engine steps retried smaller for lack of KV cells",
                           stat(&SchedulerStats::decode_retries));
  metrics.counter_callback(
      "clawbot_engine_steps_total",
      "Engine steps (one batched decode each: the running streams' next tokens plus prompt chunks)",
      stat(&SchedulerStats::engine_steps));
  metrics.counter_callback("clawbot_engine_prefill_steps_total", "Engine steps that carried prompt tokens",
                           stat(&SchedulerStats::prefill_steps));
  metrics.counter_callback("clawbot_slow_readers_cut_total",
                           "Streams that gave up their slot to waiting requests: their client read nothing "
                           "for --slow-reader-timeout",
                           stat(&SchedulerStats::slow_readers_cut));
  metrics.counter_callback("clawbot_engine_prompts_first_steps_total",
                           "Engine steps that ran prompts ahead of the decoding streams",
                           stat(&SchedulerStats::prompts_first_steps));
  metrics.gauge_callback("clawbot_cold_cache_bytes", "Bytes of saved sequences in host RAM",
                         stat(&SchedulerStats::cold_bytes));
  metrics.gauge_callback("clawbot_cold_cache_capacity_bytes", "Cold tier capacity",
                         stat(&SchedulerStats::cold_capacity));
  metrics.gauge_callback("clawbot_num_requests_running", "Slots decoding a request",
                         stat(&SchedulerStats::slots_busy));
  metrics.gauge_callback("clawbot_slots", "Slots", stat(&SchedulerStats::slots_total));
  metrics.gauge_callback("clawbot_num_requests_waiting", "Requests waiting for a slot",
                         stat(&SchedulerStats::queued));
  metrics.gauge_callback("clawbot_kv_cache_cells_used",
                         "KV cells holding tokens (a shared prefix counted once per sequence)",
                         stat(&SchedulerStats::kv_cells_used));
  metrics.gauge_callback("clawbot_kv_cache_cells_capacity", "KV cells",
                         [&context] { return static_cast<double>(context.n_ctx()); });
  metrics.gauge_callback("clawbot_kv_cache_usage_perc", "Fraction of KV cells in use", [&scheduler] {
    const auto s = scheduler.stats();
    return s.kv_cells_total > 0 ? static_cast<double>(s.kv_cells_used) / static_cast<double>(s.kv_cells_total)
                                : 0.0;
  });
  metrics.gauge_callback("process_resident_memory_bytes", "Resident memory of this process",
                         [] { return monitor::process_rss_bytes(); });
  metrics.gauge_callback("clawbot_system_memory_total_bytes", "System memory",
                         [] { return monitor::system_memory_total_bytes(); });
  metrics.gauge_callback(
      "clawbot_system_memory_used_bytes", "System memory in use (total minus available)",
      [] { return monitor::system_memory_total_bytes() - monitor::system_memory_available_bytes(); });
}

tls::ServerConfig tls_server_config(const ServeOptions& options) {
  return tls::server_config(options.tls_cert, options.tls_key, options.tls_client_ca);
}

// What the node's certificate says, and a warning while there is still time to renew it.
void log_tls_certificate(const ServeOptions& options) {
  const auto cert = tls::read_certificate_file(options.tls_cert);
  std::string names;
  for (const auto& name : tls::certificate_names(cert)) names += (names.empty() ? "" : ", ") + name;
  const std::string client_certs =
      options.tls_client_ca.empty() ? "" : "; client certificates required (" + options.tls_client_ca + ")";
  spdlog::info("TLS: certificate {} for {}, issued by {}, valid until {}{}", cert.subject, names, cert.issuer,
               tls::format_utc(cert.not_after), client_certs);
  const auto left = cert.not_after - std::chrono::system_clock::now();
  if (left <= std::chrono::seconds(0)) {
    spdlog::warn("TLS: the certificate {} has expired: clients will refuse it; renew it", options.tls_cert);
  } else if (left < std::chrono::hours(24 * 14)) {
    spdlog::warn("TLS: the certificate {} expires in {} days; renew it", options.tls_cert,
                 std::chrono::duration_cast<std::chrono::hours>(left).count() / 24);
  }
}

}  // namespace

int run_serve(const ServeOptions& options) {
  const auto log_format = parse_log_format(options.log_format);
  if (!log_format) {
    std::fprintf(stderr, "clawbot serve: --log-format must be text or json, not '%s'\n",
                 options.log_format.c_str());
    return 1;
  }
  // Logs go to stderr: stdout carries only the lines a script waits for (the address, the curl example).
  setup_logging(*log_format, options.verbose);
  engine::init_backend(options.verbose);

  // A name found nowhere is passed on as given: the model check then names it.
  std::string path = find_model_file(options.model).value_or(options.model);
  // --verify checks the file on disk; an encrypted model is decrypted into memory (a memfd), never to disk.
  ops::PreparedModel prepared;
  try {
    prepared = ops::prepare_model_file(path, {.verify = options.verify,
                                              .key_file = options.key_file,
                                              .key_env = options.key_env,
                                              .threads = options.threads});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "clawbot serve: %s\n", e.what());
    return 1;
  }
  for (const auto& line : prepared.log) spdlog::info("{}", line);
  path = prepared.path;
  try {
    engine::check_gguf_file(path);
  } catch (const engine::ModelFileError& e) {
    std::fprintf(stderr, "clawbot serve: %s\n", e.what());
    // Where it looked, only when it found nothing: for a file it found, the error says what is wrong with it.
    std::error_code exists_ec;
    if (path == options.model && options.model.find('/') == std::string::npos &&
        !std::filesystem::exists(path, exists_ec)) {
      std::fprintf(stderr, "clawbot serve: looked in the current directory and in %s\n",
                   model_dirs_description().c_str());
    }
    return 1;
  }

  if (options.tls_cert.empty() != options.tls_key.empty()) {
    std::fprintf(stderr, "clawbot serve: HTTPS needs both --tls-cert and --tls-key (given: %s)\n",
                 options.tls_cert.empty() ? "--tls-key only" : "--tls-cert only");
    return 1;
  }
  if (!options.tls_client_ca.empty() && options.tls_cert.empty()) {
    std::fprintf(stderr,
                 "clawbot serve: --tls-client-ca needs --tls-cert and --tls-key (client certificates "
                 "are checked only over HTTPS)\n");
    return 1;
  }
  // Check the TLS files before loading a model that may take minutes.
  if (!options.tls_cert.empty()) {
    try {
      tls::make_server_context(tls_server_config(options));
    } catch (const tls::TlsError& e) {
      std::fprintf(stderr, "clawbot serve: %s\n", e.what());
      return 1;
    }
  }

  try {
    auto model = engine::Model::load(
        {.path = path, .vocab_only = false, .show_progress = true, .n_gpu_layers = options.gpu_layers});
    // libllama's mapping keeps the decrypted pages; what it unmaps (weights copied to a GPU) is then freed.
    if (prepared.decrypted) prepared.decrypted->close();
    const auto& info = model.info();
    if (options.ctx < 0 || (options.ctx > 0 && options.ctx < 16)) {
      std::fprintf(stderr,
                   "clawbot serve: --ctx %d is too small (at least 16 tokens, or 0 for the model's own)\n",
                   options.ctx);
      return 1;
    }

    std::optional<engine::ChatTemplate> chat_template;
    std::string template_problem;
    if (info.is_embedding) {
      template_problem = "model '" + info.name + "' is an embedding model";  // no chat, nothing to warn about
    } else if (!options.chat_template.empty()) {
      chat_template = engine::ChatTemplate::builtin(options.chat_template);  // throws, listing the names
    } else {
      try {
        chat_template = engine::ChatTemplate::from_model(model);
      } catch (const engine::EngineError& e) {
        template_problem = e.what();
        spdlog::warn("{}; /v1/chat/completions will answer 400 until then", template_problem);
      }
    }

    if (options.parallel < 1 || options.parallel > 256) {
      std::fprintf(stderr, "clawbot serve: --parallel %d must be between 1 and 256\n", options.parallel);
      return 1;
    }
    const bool embedding = info.is_embedding;
    // --ctx is what one request may use; the cache holds that much for every slot (never divided among them).
    int per_request =
        options.ctx > 0 ? options.ctx : static_cast<int>(std::min<std::int64_t>(info.n_ctx_train, 8192));
    int parallel = options.parallel;
    // Know before allocating: weights + KV cache + compute buffers + a reserve against what the system has.
    const double kv_per_cell = model.kv_bytes_per_cell(options.kv_type);
    // CLAWBOT_MEMORY_AVAILABLE (bytes) stands in for the system's figure: a seam for tests and for operators
    // who want to leave room for other processes.
    const char* available_override = std::getenv("CLAWBOT_MEMORY_AVAILABLE");
    // A decrypted model's memory is taken already (so not available) but it is the weights counted below.
    const double decrypted_bytes =
        prepared.decrypted ? static_cast<double>(prepared.decrypted->stats().plaintext_bytes) : 0.0;
    const double available = available_override && *available_override
                                 ? std::strtod(available_override, nullptr)
                                 : monitor::system_memory_available_bytes() + decrypted_bytes;
    // The planner's arithmetic (`clawbot plan`: within 1% of libllama's own buffers in its tests), from the
    // GGUF header; a rough estimate only where the planner cannot read the file or refuses the configuration.
    std::optional<ops::GgufFile> header;
    std::optional<ops::ModelDims> dims;
    try {
      header = ops::read_gguf(path);
      dims = ops::model_dims(*header);
    } catch (const std::exception& e) {
      spdlog::debug("memory plan unavailable ({}); using an estimate", e.what());
    }
    auto planned = [&](int ctx, int slots) -> std::optional<ops::MemoryPlan> {
      if (!header) return std::nullopt;
      try {
        return ops::plan_memory(*header, *dims, ctx, slots, options.kv_type, options.kv_unified,
                                std::max(options.batch, options.prefill_chunk));
      } catch (const std::invalid_argument&) {
        return std::nullopt;
      }
    };
    // With layers on a GPU, their share of the KV cache and compute buffers goes there too; the weights are
    // there already (the memory figures below are read after loading), and the host keeps only the rest.
    const auto gpus = options.gpu_layers == 0 ? std::vector<engine::Accelerator>{} : engine::accelerators();
    const double offloaded =
        gpus.empty()
            ? 0.0
            : std::min(1.0, options.gpu_layers < 0 ? 1.0 : options.gpu_layers / (info.n_layer + 1.0));
    double gpu_free = 0;
    for (const auto& gpu : gpus) gpu_free += static_cast<double>(gpu.free_bytes);
    struct Need {
      double host = 0, gpu = 0, kv = 0;
    };
    auto needed = [&](int ctx, int slots) {
      double weights = static_cast<double>(info.size_bytes), kv = kv_per_cell * ctx * slots;
      // logits and activations of one step, when the planner cannot say
      double compute = static_cast<double>(std::max(options.batch, options.prefill_chunk)) *
                       (info.n_vocab + 4.0 * info.n_embd) * 4.0;
      double reserve = 256.0 * (1 << 20);
      if (const auto plan = planned(ctx, slots)) {
        weights = static_cast<double>(plan->weights);
        kv = static_cast<double>(plan->kv + plan->recurrent);
        compute = static_cast<double>(plan->compute);
        reserve = static_cast<double>(plan->output + plan->reserve);
      }
      return Need{.host = (1 - offloaded) * (weights + kv + compute) + reserve,
                  .gpu = offloaded * (kv + compute),
                  .kv = kv};
    };
    auto fits = [&](int ctx, int slots) {
      const Need need = needed(ctx, slots);
      return (available <= 0 || need.host <= available) && (gpus.empty() || need.gpu <= gpu_free);
    };
    auto gib = [](double b) { return b / (1024.0 * 1024 * 1024); };
    auto shortfall = [&](int ctx, int slots) {
      const Need need = needed(ctx, slots);
      char text[512];
      if (available > 0 && need.host > available) {
        std::snprintf(
            text, sizeof text,
            "needs about %.2f GiB (weights %.2f GiB, KV cache %.2f GiB for %d slots x %d tokens at %s) "
            "but %.2f GiB of memory is available",
            gib(need.host), gib(static_cast<double>(info.size_bytes)), gib(need.kv), slots, ctx,
            options.kv_type.c_str(), gib(available));
      } else {
        std::snprintf(text, sizeof text,
                      "needs about %.2f GiB of GPU memory besides the weights (KV cache and compute buffers; "
                      "KV cache %.2f GiB for %d slots x %d tokens at %s) but %.2f GiB is free on %s (%s) "
                      "after loading the weights",
                      gib(need.gpu), gib(need.kv * offloaded), slots, ctx, options.kv_type.c_str(),
                      gib(gpu_free), gpus.front().name.c_str(), gpus.front().description.c_str());
      }
      return std::string(text);
    };
    if (!fits(per_request, parallel)) {
      if (!options.fit) {
        std::fprintf(stderr,
                     "clawbot serve: this configuration %s.\n"
                     "Lower --ctx or --parallel, use --kv-type q8_0 or q4_0%s, or pass --fit to lower them "
                     "automatically.\n",
                     shortfall(per_request, parallel).c_str(),
                     gpus.empty() ? "" : ", keep some layers on the CPU with --gpu-layers");
        return 1;
      }
      const int wanted_ctx = per_request, wanted_parallel = parallel;
      while (per_request > 512 && !fits(per_request, parallel)) per_request /= 2;
      while (parallel > 1 && !fits(per_request, parallel)) --parallel;
      if (!fits(per_request, parallel)) {
        std::fprintf(stderr,
                     "clawbot serve: even %d slot of %d tokens %s: this model does not fit this machine\n",
                     parallel, per_request, shortfall(per_request, parallel).c_str());
        return 1;
      }
      spdlog::warn(
          "--fit: lowered --ctx {} to {} and --parallel {} to {} to fit {:.2f} GiB of available memory{}",
          wanted_ctx, per_request, wanted_parallel, parallel, gib(available),
          gpus.empty() ? std::string() : fmt::format(" and {:.2f} GiB free on the GPU", gib(gpu_free)));
    }
    if (embedding && per_request > info.n_ctx_train) {
      std::fprintf(stderr, "clawbot serve: --ctx %d is more than this embedding model's %lld positions\n",
                   per_request, static_cast<long long>(info.n_ctx_train));
      return 1;
    }
    engine::ContextOptions context_options;
    context_options.n_ctx = static_cast<std::uint32_t>(per_request) * static_cast<std::uint32_t>(parallel);
    // An embedding model reads each input whole in one step (no causal chunking).
    context_options.n_batch =
        embedding ? static_cast<std::uint32_t>(per_request)
                  : static_cast<std::uint32_t>(std::max(options.batch, options.prefill_chunk));
    context_options.n_seq_max = static_cast<std::uint32_t>(parallel);
    context_options.n_threads = options.threads;
    context_options.embeddings = embedding;
    context_options.kv_type = options.kv_type;
    context_options.kv_unified = options.kv_unified;
    if (options.flash_attn == "on") {
      context_options.flash_attn = engine::FlashAttention::on;
    } else if (options.flash_attn == "off") {
      context_options.flash_attn = engine::FlashAttention::off;
    } else if (options.flash_attn != "auto") {
      std::fprintf(stderr, "clawbot serve: --flash-attn must be auto, on or off, not '%s'\n",
                   options.flash_attn.c_str());
      return 1;
    }
    engine::Context context(model, context_options);
    engine::Tokenizer tokenizer(model);

    SchedulerOptions scheduler_options;
    scheduler_options.parallel = parallel;
    scheduler_options.ctx_per_request = per_request;
    scheduler_options.prefill_chunk = std::min(options.prefill_chunk, static_cast<int>(context.n_batch()));
    scheduler_options.queue_max = static_cast<std::size_t>(options.queue_max);
    // Embeddings keep no state between requests: no cold tier for them.
    scheduler_options.cache_ram_bytes = embedding ? 0 : static_cast<std::size_t>(options.cache_ram_mib) << 20;
    scheduler_options.cache_enabled = !options.no_cache;
    scheduler_options.heartbeat = std::chrono::seconds(options.sse_keepalive_s);
    scheduler_options.prompts_first = options.prompts_first == "on";
    scheduler_options.slow_reader_timeout =
        std::chrono::milliseconds(static_cast<long long>(options.slow_reader_timeout_s * 1000));
    Scheduler scheduler(model, context, scheduler_options);

    monitor::Registry metrics;
    register_metrics(metrics, scheduler, context);
    std::atomic<bool> draining = false;

    ServeContext serve_context{
        .model = model,
        .tokenizer = tokenizer,
        .chat_template = chat_template,
        .chat_template_problem = template_problem,
        .scheduler = scheduler,
        .model_id = !options.alias.empty()   ? options.alias
                    : !prepared.name.empty() ? prepared.name
                                             : info.name,
        .n_ctx = static_cast<std::uint32_t>(per_request),
        .created = std::time(nullptr),
        .metrics = &metrics,
        .strict_model = options.strict_model,
        .draining = &draining,
    };

    boost::asio::io_context io;
    http::ServerLimits limits;
    limits.max_body_bytes = options.max_body_bytes;
    limits.header_timeout = std::chrono::seconds(options.header_timeout_s);
    limits.min_body_rate = options.min_body_rate;
    // A stream runs at most this far (the kernel doubles it, plus the client's receive buffer) ahead of a client
    // that does not read, rather than the 4 MiB of send-buffer autotuning: a slow reader is noticed after a few
    // hundred tokens (--slow-reader-timeout). Plenty for a stream that is read, whatever the round trip.
    limits.stream_send_buffer_bytes = 16 << 10;
    std::vector<std::string> routes;
    auto router = make_openai_router(serve_context, &routes);
    http::Server server(io, std::move(router), limits);
    server.set_observer(access_observer(&metrics, {.enabled = !options.no_access_log,
                                                   .format = *log_format,
                                                   .model_id = serve_context.model_id,
                                                   .routes = std::move(routes)}));
    const bool https = !options.tls_cert.empty();
    unsigned short port = 0;
    if (https) {
      port =
          server.listen(options.host, static_cast<unsigned short>(options.port), tls_server_config(options));
      log_tls_certificate(options);
    } else {
      port = server.listen(options.host, static_cast<unsigned short>(options.port));
    }

    // Announced once the listener is bound (the real port is known); withdrawn first thing at shutdown. A
    // node has no API keys of its own (a gateway in front adds them): auth=no.
    std::unique_ptr<discovery::Advertiser> advertiser =
        discovery::advertise(discovery::service_info("node", port, serve_context.model_id, https, false),
                             {.enabled = !options.no_advertise, .listen_host = options.host});

    // SIGTERM or SIGINT: drain. New connections are refused and new work gets a 503 with Retry-After (a
    // gateway sends it elsewhere); the requests already taken are finished, for up to --drain-timeout; then
    // the process exits. A second signal stops at once.
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    boost::asio::steady_timer drain_timer(io);
    const auto drain_deadline_after =
        std::chrono::milliseconds(static_cast<long long>(options.drain_timeout_s * 1000));
    std::chrono::steady_clock::time_point drain_deadline;
    auto shut_down = [&] {
      drain_timer.cancel();
      signals.cancel();
      scheduler.stop();
      io.stop();
    };
    std::function<void()> wait_for_drain = [&] {
      const std::size_t left = server.exchanges_in_progress();
      if (left == 0) {
        spdlog::info("drained: every request is answered; exiting");
        shut_down();
        return;
      }
      if (std::chrono::steady_clock::now() >= drain_deadline) {
        spdlog::warn("--drain-timeout: {} requests still in progress are cut", left);
        shut_down();
        return;
      }
      drain_timer.expires_after(std::chrono::milliseconds(20));
      drain_timer.async_wait([&](const boost::system::error_code& ec) {
        if (!ec) wait_for_drain();
      });
    };
    signals.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      draining = true;
      advertiser.reset();  // goodbye packets: browsers drop the node now, not when their cache expires
      server.stop();       // no new connections
      spdlog::info(
          "shutting down: finishing {} requests in progress (at most {:g} s, --drain-timeout); "
          "new work is refused; signal again to stop now",
          server.exchanges_in_progress(), options.drain_timeout_s);
      drain_deadline = std::chrono::steady_clock::now() + drain_deadline_after;
      signals.async_wait([&](const boost::system::error_code& again_ec, int) {
        if (again_ec) return;
        spdlog::info("stopping now");
        shut_down();
      });
      wait_for_drain();
    });

    spdlog::info("model {} ({}{}, {} parameters, {:.1f} MiB), chat template {}",
                 prepared.name.empty() ? info.name : prepared.name, info.architecture,
                 embedding ? ", embeddings" : "", info.n_params,
                 static_cast<double>(info.size_bytes) / (1 << 20),
                 chat_template ? chat_template->name() : "none");
    if (!gpus.empty()) {
      spdlog::info("{} of {} layers on the GPU (--gpu-layers)",
                   options.gpu_layers < 0 ? info.n_layer + 1 : std::min(options.gpu_layers, info.n_layer + 1),
                   info.n_layer + 1);
      for (const auto& gpu : engine::accelerators()) {
        spdlog::info("GPU {} ({}): {:.2f} GiB of {:.2f} GiB free with the model and its cache loaded",
                     gpu.name, gpu.description, gib(static_cast<double>(gpu.free_bytes)),
                     gib(static_cast<double>(gpu.total_bytes)));
      }
    }
    spdlog::info(
        "{} slots; each request may use {} tokens (prompt and answer); KV cache {} cells ({}), "
        "flash attention {}, prompts first {}, cold tier {} MiB{}",
        parallel, per_request, context.n_ctx(), options.kv_type, options.flash_attn,
        scheduler_options.prompts_first ? "on" : "off", options.no_cache ? 0 : options.cache_ram_mib,
        options.no_cache ? " (cache off)" : "");
    const std::string url_host =
        options.host.find(':') != std::string::npos ? "[" + options.host + "]" : options.host;
    const char* scheme = https ? "https" : "http";
    std::printf("clawbot serve: listening on %s://%s:%u\n", scheme, url_host.c_str(), port);
    std::printf(
        "try: curl -s %s%s://%s:%u/v1/chat/completions -H 'Content-Type: application/json' "
        "-d '{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"max_tokens\":64}'\n",
        https ? "--cacert CA.pem " : "", scheme, url_host.c_str(), port);
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
