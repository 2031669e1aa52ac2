// `clawbot serve`: the back-end node.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace clawbot::server {

struct ServeOptions {
  std::string model;  // a path, or a file name looked up in CLAWBOT_MODELS
  std::string host = "127.0.0.1";
  int port = 5000;
  int ctx = 0;          // 0: the model's training context
  int threads = 0;      // 0: all cores
  int gpu_layers = -1;  // layers offloaded to a GPU when the build has one (-1: all, 0: none)
  int batch = 512;
  std::string chat_template;              // a built-in name or a Jinja file; empty: the model's own
  std::string reasoning_format = "auto";  // none, deepseek, auto: where a reasoning model's thinking goes
  std::string alias;                      // the model id clients see; empty: the file name
  int parallel = 4;                       // requests decoded together
  int queue_max = 64;                     // requests waiting for a slot before 503
  int prefill_chunk = 128;                // prompt tokens per step while other requests decode
  int cache_ram_mib = 1024;               // cold tier: saved sequences in host RAM
  bool no_cache = false;                  // prefill every request from scratch (for comparisons)
  std::string flash_attn = "auto";
  std::string prompts_first = "on";  // a prompt that fits in one step goes ahead of the decoding streams
  std::string kv_type = "f16";
  int sse_keepalive_s = 5;
  // A stream whose client reads nothing for this long while other requests wait for a slot gives it up (0:
  // never).
  double slow_reader_timeout_s = 10;
  double drain_timeout_s = 30;      // after SIGTERM: how long the requests in progress may take to finish
  std::string log_format = "text";  // text or json (one object a line, for collectors)
  bool no_access_log = false;       // no line per request
  bool strict_model = false;        // a request naming another model: 404 model_not_found
  bool kv_unified = false;          // one KV cache for all slots instead of one stream per slot
  bool fit = false;                 // lower --ctx, then --parallel, until the cache fits in memory
  std::size_t max_body_bytes = 8u << 20;
  int header_timeout_s = 30;         // a client's whole header block (slowloris)
  std::size_t min_body_rate = 1024;  // bytes/s a body must average after 10 s; 0: any
  std::string tls_cert;              // PEM certificate chain: serve HTTPS only (with tls_key)
  std::string tls_key;               // PEM private key of tls_cert
  std::string tls_client_ca;         // PEM CA: require client certificates it signed (mutual TLS)
  bool verbose = false;
  bool no_advertise = false;  // do not announce the node on the LAN (mDNS/DNS-SD)
  bool no_web = false;        // no browser pages (the chat at /, the dashboard) nor the chat's prompts route
  bool verify = false;        // refuse a model whose SHA-256 does not match MODEL.sha256 or SHA256SUMS
  std::string key_file;       // key of an encrypted model (clawbot encrypt), decrypted into memory only
  std::string key_env;        // or the environment variable that holds it
  std::string alerts_file;    // alert rules and webhooks (monitor/alerts.h); empty: the built-in rules
  // Seconds between the samples of the in-process metrics history (GET /api/metrics/history).
  double metrics_interval_s = 5;
  std::string kb_dir;     // knowledge bases (*.kb) served: /v1/kb, chat with "kb" (server/kb_routes.h)
  bool kb_write = false;  // POST /v1/kb, uploads and deletions of documents
  std::size_t kb_max_upload_bytes = 32u << 20;  // one upload request's body
  // Speech to text: a whisper.cpp model (ggml-*.bin) served on /v1/audio/* beside the LLM.
  std::string whisper_model;
  std::string vad_model;                    // Silero VAD for whisper (optional)
  int whisper_threads = 0;                  // 0: --threads, else all cores
  std::size_t audio_max_bytes = 25u << 20;  // an upload's size (OpenAI's limit)
  double audio_max_seconds = 3600;          // an upload's duration
  int audio_queue_max = 16;                 // transcriptions waiting before 503
};

// Returns the process exit status.
int run_serve(const ServeOptions& options);

// `clawbot serve` on `app` (serve_cmd.cpp). After parsing, the returned function runs it and returns its exit
// status, or nullopt when the command line named another.
std::function<std::optional<int>()> add_serve_command(CLI::App& app);

}  // namespace clawbot::server
