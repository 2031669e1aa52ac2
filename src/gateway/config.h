// gateway.json: what `clawbot gateway` listens on, which upstreams it fronts and how, and who may come in.
// Validated like clawbot.json: a wrong type or range is a ConfigError naming the file, the key, the value and
// what is allowed; an unknown key is a warning with the closest known name; // and /* */ comments are
// allowed. Relative file paths (certificates, keys_db, audit_log) are resolved against the config file's
// folder.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/http_client.h"
#include "common/json_config.h"
#include "monitor/alerts.h"

namespace clawbot::gateway {

using ConfigError = config::ConfigError;

struct ListenTls {
  std::string cert;       // PEM chain
  std::string key;        // PEM private key
  std::string client_ca;  // optional: require client certificates this CA signed
};

struct Listener {
  std::string host = "0.0.0.0";
  unsigned short port = 8080;
  std::optional<ListenTls> tls;
};

struct Upstream {
  std::string url;                // as written
  http::Url parsed;               // http(s)://host:port[/base]
  std::string name;               // label in metrics and logs; default host:port
  int weight = 1;                 // weighted round robin
  bool standby = false;           // traffic only while no primary is healthy
  std::size_t max_in_flight = 0;  // 0: no limit; above it the upstream counts as busy
  std::string api_key;            // sent upstream as Authorization: Bearer (the client's key never is)
  std::string tls_ca_file;        // https upstreams: CA to trust (default: the system's)
  bool tls_insecure = false;
};

enum class Balance { least_outstanding, weighted_round_robin };

struct HealthChecks {
  std::chrono::milliseconds interval{2000};
  std::chrono::milliseconds timeout{1000};
  std::string path = "/health";
};

// Passive ejection: `failures` consecutive failures open the circuit for `cooldown`; then one probe request
// (half-open) decides whether it closes again.
struct CircuitBreaker {
  int failures = 3;
  std::chrono::milliseconds cooldown{5000};
};

struct Queue {
  std::size_t max_waiting = 256;             // beyond it: 503 + Retry-After at once
  std::chrono::milliseconds timeout{30000};  // longest wait for an upstream: then 503 + Retry-After
};

struct Limits {
  std::int64_t requests_per_minute = 0;  // per key, 0: none (a key's own limit wins)
  std::int64_t tokens_per_minute = 0;    // per key, prompt + completion tokens
  std::size_t max_body_bytes = 8u << 20;
  std::size_t max_header_bytes = 16u << 10;
  std::chrono::milliseconds header_timeout{30'000};  // a client's whole header block (slowloris)
  std::size_t min_body_rate = 1024;                  // bytes/s a body must average after 10 s; 0: any
  std::size_t max_connections_per_client = 0;        // open connections per client address; 0: no cap
  std::int64_t audio_seconds_per_hour = 0;           // per key, speech to /v1/audio/*; 0: none
  // The body of an upload: /v1/audio/* (OpenAI takes 25 MB files) and /v1/kb's documents. Other routes keep
  // max_body_bytes.
  std::size_t upload_max_body_bytes = 25u << 20;
};

struct GatewayConfig {
  std::filesystem::path file;  // where it was read from
  std::vector<Listener> listen;
  std::vector<Upstream> upstreams;
  Balance balance = Balance::least_outstanding;
  bool affinity = true;            // turns of one conversation to one upstream (hash of its leading messages)
  std::string auth = "keys";       // "keys": every request needs a key from keys_db; "none": open (warned)
  std::filesystem::path keys_db;   // SQLite file of API keys; default gateway.db beside the config
  bool health_open = true;         // GET /health answers without a key
  std::vector<std::string> allow;  // IPv4/IPv6 CIDRs; empty: any address
  std::filesystem::path
      secret_file;                  // the door's secret; empty: door::secret_path's default (beside keys_db)
  std::filesystem::path audit_log;  // empty: no audit log
  bool audit_prompts = false;       // also record prompt text (off: never)
  std::filesystem::path audit_witness;  // a directory outside the machine for the log's heads; empty: none
  int audit_witness_interval_s = 600;   // how often the head is witnessed while records come
  bool tls_only = false;                // refuse to start a listener without TLS
  Limits limits;
  Queue queue;
  HealthChecks health_checks;
  CircuitBreaker circuit_breaker;
  int retries = 2;  // other upstreams tried for a request that failed before its first byte
  int threads = 0;  // I/O threads, 0: one per core
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds read_timeout{300000};  // longest upstream silence
  bool advertise = true;                           // mDNS/DNS-SD
  bool web = true;   // the browser pages (GET / and /dashboard) and the chat's prompts (off: --no-web)
  std::string name;  // advertised instance name; default "clawbot gateway on HOST"
  // A request naming a model no upstream serves goes to this one instead of a 404 (empty: 404).
  std::string default_model;
  // "alerts": the rules (the built-in ones unless it says otherwise) and webhooks, as `serve --alerts` reads
  // them (monitor/alerts.h).
  monitor::AlertConfig alerts{monitor::builtin_alert_rules("gateway"), {}};
  double metrics_interval_s = 5;  // the metrics history's sampling interval (GET /api/metrics/history)

  std::vector<std::string> warnings;  // unknown keys, open doors
};

// Parses and validates the text of a file (`origin` names it in messages; relative paths resolve against
// `base_dir`).
GatewayConfig parse_config(std::string_view text, const std::string& origin,
                           const std::filesystem::path& base_dir);
// Reads and parses `path`. Throws ConfigError.
GatewayConfig load_config(const std::filesystem::path& path);

}  // namespace clawbot::gateway
