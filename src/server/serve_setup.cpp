#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "common/model_path.h"
#include "monitor/gpu.h"
#include "server/serve_internal.h"

namespace clawbot::server {

ops::PreparedModel prepare_model(const ServeOptions& options) {
  // A name found nowhere is passed on as given: the model check then names it.
  const std::string found = find_model_file(options.model).value_or(options.model);
  // --verify checks the file on disk; an encrypted model is decrypted into memory (a memfd), never to disk.
  ops::PreparedModel prepared = ops::prepare_model_file(found, {.verify = options.verify,
                                                                .key_file = options.key_file,
                                                                .key_env = options.key_env,
                                                                .threads = options.threads});
  for (const auto& line : prepared.log) spdlog::info("{}", line);
  try {
    engine::check_gguf_file(prepared.path);
  } catch (const engine::ModelFileError& e) {
    // Where it looked, only when it found nothing: for a file it found, the error says what is wrong with it.
    std::error_code exists_ec;
    if (prepared.path == options.model && options.model.find('/') == std::string::npos &&
        !std::filesystem::exists(prepared.path, exists_ec)) {
      throw std::runtime_error(std::string(e.what()) +
                               "\nclawbot serve: looked in the current directory and in " +
                               model_dirs_description());
    }
    throw;
  }
  return prepared;
}

void check_tls_options(const ServeOptions& options) {
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    throw std::runtime_error(std::string("HTTPS needs both --tls-cert and --tls-key (given: ") +
                             (options.tls_cert.empty() ? "--tls-key only" : "--tls-cert only") + ")");
  }
  if (!options.tls_client_ca.empty() && options.tls_cert.empty()) {
    throw std::runtime_error(
        "--tls-client-ca needs --tls-cert and --tls-key (client certificates are checked only over HTTPS)");
  }
  if (!options.tls_cert.empty()) tls::make_server_context(tls_server_config(options));
}

tls::ServerConfig tls_server_config(const ServeOptions& options) {
  return tls::server_config(options.tls_cert, options.tls_key, options.tls_client_ca);
}

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

monitor::AlertConfig load_alerts(const ServeOptions& options) {
  if (options.alerts_file.empty()) return monitor::AlertConfig{monitor::builtin_alert_rules("serve"), {}};
  std::vector<std::string> warnings;
  auto config = monitor::load_alert_config(options.alerts_file, "serve", warnings);
  for (const auto& warning : warnings) spdlog::warn("{}", warning);
  return config;
}

namespace {

// A Jinja template file (bounded: a template is kilobytes, not a model).
std::string read_template_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::string text;
  if (file) {
    text.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  }
  if (!file && !file.eof()) throw std::runtime_error("--chat-template '" + path + "' cannot be read");
  if (text.empty()) throw std::runtime_error("--chat-template '" + path + "' is empty");
  if (text.size() > (1u << 20)) throw std::runtime_error("--chat-template '" + path + "' is over 1 MiB");
  return text;
}

}  // namespace

ChatTemplateChoice choose_chat_template(const engine::Model& model, const ServeOptions& options) {
  ChatTemplateChoice choice;
  if (model.info().is_embedding) {
    choice.problem =
        "model '" + model.info().name + "' is an embedding model";  // no chat, nothing to warn about
    return choice;
  }
  const auto reasoning = engine::reasoning_format_from_name(options.reasoning_format);  // throws, naming them
  if (!options.chat_template.empty()) {
    // A built-in name, else a Jinja file; a bad one stops the start (the operator asked for it).
    std::string source = options.chat_template;
    std::string name = options.chat_template;
    const auto builtin = engine::ChatTemplate::builtin_names();
    if (std::find(builtin.begin(), builtin.end(), options.chat_template) == builtin.end()) {
      std::error_code ec;
      if (!std::filesystem::is_regular_file(options.chat_template, ec)) {
        std::string names;
        for (const auto& n : builtin) names += (names.empty() ? "" : ", ") + n;
        throw std::runtime_error("--chat-template '" + options.chat_template +
                                 "' is neither a Jinja template file nor a built-in template (" + names +
                                 ")");
      }
      source = read_template_file(options.chat_template);
      name = std::filesystem::path(options.chat_template).filename().string();
    }
    choice.chat_template = std::make_shared<const engine::ChatFormatter>(
        engine::ChatFormatter::create(model, name, source, reasoning));
    return choice;
  }
  try {
    choice.chat_template = std::make_shared<const engine::ChatFormatter>(
        engine::ChatFormatter::create(model, model.info().name + " (from model)", "", reasoning));
  } catch (const engine::EngineError& e) {
    choice.problem = e.what();
    spdlog::warn("{}; /v1/chat/completions will answer 400 until then", choice.problem);
  }
  return choice;
}

void check_size_options(const ServeOptions& options) {
  if (options.ctx < 0 || (options.ctx > 0 && options.ctx < 16)) {
    throw std::runtime_error("--ctx " + std::to_string(options.ctx) +
                             " is too small (at least 16 tokens, or 0 for the model's own)");
  }
  if (options.parallel < 1 || options.parallel > 256) {
    throw std::runtime_error("--parallel " + std::to_string(options.parallel) + " must be between 1 and 256");
  }
}

engine::ContextOptions context_options(const ServeOptions& options, const ops::ServingSize& size,
                                       bool embedding) {
  engine::ContextOptions context;
  context.n_ctx = static_cast<std::uint32_t>(size.ctx) * static_cast<std::uint32_t>(size.parallel);
  // An embedding model reads each input whole in one step (no causal chunking).
  context.n_batch = embedding ? static_cast<std::uint32_t>(size.ctx)
                              : static_cast<std::uint32_t>(std::max(options.batch, options.prefill_chunk));
  context.n_seq_max = static_cast<std::uint32_t>(size.parallel);
  context.n_threads = options.threads;
  context.embeddings = embedding;
  context.kv_type = options.kv_type;
  context.kv_unified = options.kv_unified;
  if (options.flash_attn == "on") {
    context.flash_attn = engine::FlashAttention::on;
  } else if (options.flash_attn == "off") {
    context.flash_attn = engine::FlashAttention::off;
  } else if (options.flash_attn != "auto") {
    throw std::runtime_error("--flash-attn must be auto, on or off, not '" + options.flash_attn + "'");
  }
  return context;
}

SchedulerOptions scheduler_options(const ServeOptions& options, const ops::ServingSize& size,
                                   const engine::Context& context, bool embedding) {
  SchedulerOptions scheduler;
  scheduler.parallel = size.parallel;
  scheduler.ctx_per_request = size.ctx;
  scheduler.prefill_chunk = std::min(options.prefill_chunk, static_cast<int>(context.n_batch()));
  scheduler.queue_max = static_cast<std::size_t>(options.queue_max);
  // Embeddings keep no state between requests: no cold tier for them.
  scheduler.cache_ram_bytes = embedding ? 0 : static_cast<std::size_t>(options.cache_ram_mib) << 20;
  scheduler.cache_enabled = !options.no_cache;
  scheduler.heartbeat = std::chrono::seconds(options.sse_keepalive_s);
  scheduler.prompts_first = options.prompts_first == "on";
  scheduler.slow_reader_timeout =
      std::chrono::milliseconds(static_cast<long long>(options.slow_reader_timeout_s * 1000));
  return scheduler;
}

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
  metrics.gauge_callback("clawbot_queue_capacity",
                         "Requests that may wait for a slot before 503 (--queue-max)",
                         [&scheduler] { return static_cast<double>(scheduler.options().queue_max); });
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
  monitor::register_gpu_metrics(metrics, std::make_shared<monitor::GpuProbe>());
}

}  // namespace clawbot::server
