// `clawbot serve`'s command line. Linked into both binaries: run_serve is the node (serve.cpp) with the
// engine, and a refusal that says so (serve_no_engine.cpp) without it.
#include <memory>

#include <CLI/CLI.hpp>

#include "server/serve.h"

namespace clawbot::server {

namespace {

// The options in the order `clawbot serve --help` lists them: first the model, the engine and the HTTP
// limits...
void add_model_and_http_options(CLI::App* cmd, ServeOptions* serve) {
  cmd->add_option("-m,--model", serve->model, "GGUF file: a path, or a name found in $CLAWBOT_MODELS")
      ->required();
  cmd->add_option("--host", serve->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", serve->port, "Port to listen on (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("-c,--ctx", serve->ctx, "Context size in tokens (0: the model's own)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", serve->threads, "CPU threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_option("-b,--batch", serve->batch, "Prompt tokens per engine step")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  cmd->add_option(
      "--chat-template", serve->chat_template,
      "Chat template instead of the model's own: a Jinja file, or a built-in name (chatml, llama3, "
      "phi3, ...)");
  cmd->add_option(
         "--reasoning-format", serve->reasoning_format,
         "Where a reasoning model's thinking goes: auto or deepseek (reasoning_content), none (left in "
         "the content)")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "deepseek", "auto"}));
  cmd->add_option("--alias", serve->alias, "Model id shown to clients (default: the file name)");
  cmd->add_option("--max-body-bytes", serve->max_body_bytes, "Largest request body accepted")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 34));
  cmd->add_option("--header-timeout", serve->header_timeout_s,
                  "Seconds a client may take to send a request's headers")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--min-body-rate", serve->min_body_rate,
                  "Bytes/s a request body must average after 10 s (0: any rate)")
      ->capture_default_str();
  cmd->add_option("--gpu-layers,--n-gpu-layers", serve->gpu_layers,
                  "Layers offloaded to the GPU of a CUDA or Vulkan build (-1: all, 0: none)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 1 << 20));
}

// ... then the slots, the cache, TLS and operations.
void add_scheduling_and_operation_options(CLI::App* cmd, ServeOptions* serve) {
  cmd->add_option("-p,--parallel", serve->parallel, "Requests decoded together (slots)")
      ->capture_default_str();
  cmd->add_option("--queue-max", serve->queue_max, "Requests waiting for a slot before 503")
      ->capture_default_str()
      ->check(CLI::Range(0, 1'000'000));
  cmd->add_option("--prefill-chunk", serve->prefill_chunk, "Prompt tokens per step while others decode")
      ->capture_default_str()
      ->check(CLI::Range(8, 65536));
  cmd->add_option("--cache-ram", serve->cache_ram_mib, "MiB of host RAM for saved sequences (cold tier)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 24));
  cmd->add_flag("--fit", serve->fit, "Lower --ctx, then --parallel, until the KV cache fits in memory");
  cmd->add_flag("--kv-unified", serve->kv_unified,
                "One KV cache shared by all slots (shared prefixes stored once; slower batched decode)");
  cmd->add_flag("--no-cache", serve->no_cache, "Prefill every request from scratch (no KV reuse)");
  cmd->add_option("--flash-attn", serve->flash_attn, "FlashAttention: auto, on or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("--prompts-first", serve->prompts_first,
                  "A prompt that fits in one step runs in a step of its own, ahead of the decoding "
                  "streams: on or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off"}));
  cmd->add_option("--kv-type", serve->kv_type, "KV cache type: f16, q8_0 or q4_0")
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "q8_0", "q4_0"}));
  cmd->add_option("--sse-keepalive", serve->sse_keepalive_s,
                  "Seconds between keep-alives on a waiting stream")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--tls-cert", serve->tls_cert, "PEM certificate chain: serve HTTPS only (with --tls-key)");
  cmd->add_option("--tls-key", serve->tls_key, "PEM private key of --tls-cert");
  cmd->add_option("--tls-client-ca", serve->tls_client_ca,
                  "PEM CA file: require client certificates it signed (mutual TLS)");
  cmd->add_flag("--no-advertise", serve->no_advertise,
                "Do not announce this node on the LAN (mDNS/DNS-SD, _clawbot._tcp)");
  cmd->add_flag("--no-web", serve->no_web,
                "No browser pages: neither the chat (GET /) nor the dashboard (GET /dashboard)");
  cmd->add_flag("-v,--verbose", serve->verbose, "Log libllama's messages too");
  cmd->add_flag("--verify", serve->verify,
                "Refuse to load the model unless its SHA-256 matches MODEL.sha256 or a SHA256SUMS beside it");
  cmd->add_option("--key-file", serve->key_file,
                  "Key of an encrypted model (clawbot encrypt): 64 hex characters or 32 bytes");
  cmd->add_option("--key-env", serve->key_env,
                  "Key of an encrypted model: the environment variable that holds it (64 hex characters)");
  cmd->add_option("--slow-reader-timeout", serve->slow_reader_timeout_s,
                  "Seconds a stream's client may read nothing while others wait for a slot before the "
                  "stream gives its slot up (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--drain-timeout", serve->drain_timeout_s,
                  "Seconds the requests in progress may take to finish after SIGTERM")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("--log-format", serve->log_format, "Log lines as text, or json (one object a line)")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  cmd->add_flag("--no-access-log", serve->no_access_log, "No log line per request");
  cmd->add_option(
      "--alerts", serve->alerts_file,
      "Alert rules and webhooks (JSON): change the built-in rules (memory at 90%, P99 latency, ...), "
      "add rules, post alerts to webhooks");
  cmd->add_flag("--strict-model", serve->strict_model,
                "Answer 404 model_not_found to a request naming a model this node does not serve");
  auto* kb = cmd->add_option(
      "--kb", serve->kb_dir,
      "Directory of knowledge bases (*.kb, clawbot kb): GET /v1/kb, POST /v1/kb/NAME/search, chat "
      "with \"kb\": \"NAME\" or model kb:NAME");
  cmd->add_flag("--kb-write", serve->kb_write,
                "Take writes to the --kb knowledge bases over the API: POST /v1/kb (create), POST and DELETE "
                "/v1/kb/NAME/documents (uploads, embedded by this node's model when it is the knowledge "
                "base's). A node has no keys: put a gateway (admin keys) in front")
      ->needs(kb);
  cmd->add_option("--kb-max-upload-bytes", serve->kb_max_upload_bytes,
                  "Largest upload to a knowledge base (one request's body) with --kb-write")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 32))
      ->needs(kb);
  cmd->add_option("--metrics-interval", serve->metrics_interval_s,
                  "Seconds between samples of the metrics history (GET /api/metrics/history, the last hour)")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 3600.0));
  // speech to text
  cmd->add_option(
      "--whisper-model", serve->whisper_model,
      "whisper.cpp model (ggml-*.bin; path or name in $CLAWBOT_MODELS): serve /v1/audio/transcriptions "
      "and /v1/audio/translations");
  cmd->add_option("--vad-model", serve->vad_model, "Silero VAD model for whisper (ggml-silero-*.bin)");
  cmd->add_option("--whisper-threads", serve->whisper_threads, "Threads for transcription (0: --threads)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--audio-max-bytes", serve->audio_max_bytes, "Largest audio upload accepted")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 32));
  cmd->add_option("--audio-max-seconds", serve->audio_max_seconds, "Longest audio accepted")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  cmd->add_option("--audio-queue-max", serve->audio_queue_max, "Transcriptions waiting before 503")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
}

}  // namespace

std::function<std::optional<int>()> add_serve_command(CLI::App& app) {
  auto serve = std::make_shared<ServeOptions>();
  auto* cmd = app.add_subcommand("serve", "Back-end node: load a GGUF model and serve the OpenAI API");
  add_model_and_http_options(cmd, serve.get());
  add_scheduling_and_operation_options(cmd, serve.get());
  return [=]() -> std::optional<int> {
    if (!cmd->parsed()) return std::nullopt;
    return run_serve(*serve);
  };
}

}  // namespace clawbot::server
