#include "gateway/config.h"

#include <fstream>
#include <map>
#include <sstream>

namespace clawbot::gateway {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kTopKeys = {"listen",
                                           "upstreams",
                                           "balance",
                                           "affinity",
                                           "auth",
                                           "keys_db",
                                           "health_open",
                                           "allow",
                                           "audit_log",
                                           "audit_prompts",
                                           "tls_only",
                                           "limits",
                                           "queue",
                                           "health_checks",
                                           "circuit_breaker",
                                           "retries",
                                           "threads",
                                           "connect_timeout_ms",
                                           "read_timeout_ms",
                                           "advertise",
                                           "name",
                                           "default_model",
                                           "secret_file",
                                           "audit_witness",
                                           "audit_witness_interval_s",
                                           "metrics_interval_s",
                                           "alerts"};
const std::vector<std::string> kListenKeys = {"host", "port", "tls"};
const std::vector<std::string> kTlsKeys = {"cert", "key", "client_ca"};
const std::vector<std::string> kUpstreamKeys = {"url",         "name",          "weight",
                                                "standby",     "max_in_flight", "api_key",
                                                "api_key_env", "tls_ca_file",   "tls_insecure"};
const std::vector<std::string> kLimitKeys = {
    "requests_per_minute",        "tokens_per_minute",      "max_body_bytes",
    "max_header_bytes",           "header_timeout_ms",      "min_body_rate",
    "max_connections_per_client", "audio_seconds_per_hour", "upload_max_body_bytes"};
const std::vector<std::string> kQueueKeys = {"max_waiting", "timeout_ms"};
const std::vector<std::string> kHealthKeys = {"interval_ms", "timeout_ms", "path"};
const std::vector<std::string> kBreakerKeys = {"failures", "cooldown_ms"};

std::chrono::milliseconds ms(std::int64_t value) {
  return std::chrono::milliseconds(value);
}

class Parser {
 public:
  Parser(const std::string& origin, fs::path base_dir, GatewayConfig& config)
      : v_(origin, config.warnings), base_dir_(std::move(base_dir)), c_(config) {}

  void top(const json& doc) {
    for (const auto& [key, value] : doc.items()) {
      if (key == "listen") {
        if (!value.is_array() || value.empty())
          v_.fail(key, value, "a non-empty array such as [{\"host\": \"0.0.0.0\", \"port\": 8443}]");
        for (std::size_t i = 0; i < value.size(); ++i) c_.listen.push_back(listener(value[i], i));
      } else if (key == "upstreams") {
        if (!value.is_array() || value.empty())
          v_.fail(key, value, "a non-empty array such as [{\"url\": \"http://192.168.1.100:5000\"}]");
        for (std::size_t i = 0; i < value.size(); ++i) c_.upstreams.push_back(upstream(value[i], i));
      } else if (key == "balance") {
        const std::string text = v_.string(key, value);
        if (text == "least_outstanding")
          c_.balance = Balance::least_outstanding;
        else if (text == "weighted_round_robin")
          c_.balance = Balance::weighted_round_robin;
        else
          v_.fail(key, value, "\"least_outstanding\" or \"weighted_round_robin\"");
      } else if (key == "affinity") {
        c_.affinity = v_.boolean(key, value);
      } else if (key == "auth") {
        c_.auth = v_.string(key, value);
        if (c_.auth != "keys" && c_.auth != "none") v_.fail(key, value, "\"keys\" or \"none\"");
      } else if (key == "keys_db") {
        c_.keys_db = path(key, value);
      } else if (key == "health_open") {
        c_.health_open = v_.boolean(key, value);
      } else if (key == "allow") {
        if (!value.is_array())
          v_.fail(key, value, "an array of CIDRs such as [\"192.168.1.0/24\", \"::1/128\"]");
        for (std::size_t i = 0; i < value.size(); ++i)
          c_.allow.push_back(v_.string(key + "[" + std::to_string(i) + "]", value[i], false));
      } else if (key == "audit_log") {
        c_.audit_log = path(key, value);
      } else if (key == "secret_file") {
        c_.secret_file = path(key, value);
      } else if (key == "audit_witness") {
        c_.audit_witness = path(key, value);
      } else if (key == "audit_witness_interval_s") {
        c_.audit_witness_interval_s = static_cast<int>(v_.integer(key, value, 1, 86'400, "seconds"));
      } else if (key == "audit_prompts") {
        c_.audit_prompts = v_.boolean(key, value);
      } else if (key == "tls_only") {
        c_.tls_only = v_.boolean(key, value);
      } else if (key == "limits") {
        limits(value);
      } else if (key == "queue") {
        queue(value);
      } else if (key == "health_checks") {
        health_checks(value);
      } else if (key == "circuit_breaker") {
        breaker(value);
      } else if (key == "retries") {
        c_.retries = static_cast<int>(v_.integer(key, value, 0, 10));
      } else if (key == "threads") {
        c_.threads = static_cast<int>(v_.integer(key, value, 0, 256));
      } else if (key == "connect_timeout_ms") {
        c_.connect_timeout = ms(v_.integer(key, value, 10, 600'000, "milliseconds"));
      } else if (key == "read_timeout_ms") {
        c_.read_timeout = ms(v_.integer(key, value, 100, 86'400'000, "milliseconds"));
      } else if (key == "metrics_interval_s") {
        c_.metrics_interval_s = v_.number(key, value, 0.5, 3600);
      } else if (key == "advertise") {
        c_.advertise = v_.boolean(key, value);
      } else if (key == "name") {
        c_.name = v_.string(key, value, false);
      } else if (key == "default_model") {
        c_.default_model = v_.string(key, value, false);
        if (c_.default_model.size() > 256) v_.fail(key, value, "a model name of at most 256 bytes");
      } else if (key == "alerts") {
        c_.alerts = monitor::parse_alert_config(value, "gateway", v_.origin(), "alerts.", c_.warnings);
      } else {
        v_.warn(key, kTopKeys);
      }
    }
  }

 private:
  fs::path path(const std::string& key, const json& value) {
    return config::resolve_path(v_.string(key, value, false), base_dir_);
  }
  fs::path existing_file(const std::string& key, const json& value) {
    fs::path p = path(key, value);
    if (!fs::is_regular_file(p)) v_.fail(key, value, "a file that exists (" + p.string() + " does not)");
    return p;
  }

  Listener listener(const json& item, std::size_t index) {
    const std::string at = "listen[" + std::to_string(index) + "]";
    v_.object(
        at, item,
        "{\"host\": \"0.0.0.0\", \"port\": 8443, \"tls\": {\"cert\": \"gw.crt\", \"key\": \"gw.key\"}}");
    Listener l;
    for (const auto& [key, value] : item.items()) {
      const std::string name = at + "." + key;
      if (key == "host") {
        l.host = v_.string(name, value, false);
      } else if (key == "port") {
        l.port = static_cast<unsigned short>(v_.integer(name, value, 0, 65535));
      } else if (key == "tls") {
        v_.object(name, value, "{\"cert\": \"gw.crt\", \"key\": \"gw.key\"}");
        ListenTls tls;
        for (const auto& [tkey, tvalue] : value.items()) {
          const std::string tname = name + "." + tkey;
          if (tkey == "cert")
            tls.cert = existing_file(tname, tvalue).string();
          else if (tkey == "key")
            tls.key = existing_file(tname, tvalue).string();
          else if (tkey == "client_ca")
            tls.client_ca = existing_file(tname, tvalue).string();
          else
            v_.warn(tname, kTlsKeys);
        }
        if (tls.cert.empty() || tls.key.empty())
          v_.fail(name, value, "both \"cert\" and \"key\" (PEM files)");
        l.tls = tls;
      } else {
        v_.warn(name, kListenKeys);
      }
    }
    return l;
  }

  Upstream upstream(const json& item, std::size_t index) {
    const std::string at = "upstreams[" + std::to_string(index) + "]";
    v_.object(at, item, "{\"url\": \"http://192.168.1.100:5000\", \"weight\": 2}");
    Upstream u;
    std::string api_key_env;
    for (const auto& [key, value] : item.items()) {
      const std::string name = at + "." + key;
      if (key == "url") {
        u.url = v_.string(name, value, false);
        auto parsed = http::parse_url(u.url);
        if (!parsed) v_.fail(name, value, "an http:// or https:// URL (" + parsed.error().message + ")");
        u.parsed = *parsed;
        // "http://node:5000/v1" would make every path /v1/v1/...: the gateway passes paths through.
        if (u.parsed.path == "/v1")
          v_.fail(name, value,
                  "the server's root URL without /v1 (\"" + u.parsed.origin() +
                      "\"): request paths such as /v1/chat/completions are passed through as they are");
      } else if (key == "name") {
        u.name = v_.string(name, value, false);
      } else if (key == "weight") {
        u.weight = static_cast<int>(v_.integer(name, value, 1, 1000));
      } else if (key == "standby") {
        u.standby = v_.boolean(name, value);
      } else if (key == "max_in_flight") {
        u.max_in_flight = static_cast<std::size_t>(v_.integer(name, value, 0, 1'000'000, "requests"));
      } else if (key == "api_key") {
        u.api_key = v_.string(name, value);
      } else if (key == "api_key_env") {
        api_key_env = v_.string(name, value, false);
        const char* env = std::getenv(api_key_env.c_str());
        if (env == nullptr || *env == '\0')
          v_.fail(name, value,
                  "the name of an environment variable that is set ($" + api_key_env + " is not)");
        u.api_key = env;
      } else if (key == "tls_ca_file") {
        u.tls_ca_file = existing_file(name, value).string();
      } else if (key == "tls_insecure") {
        u.tls_insecure = v_.boolean(name, value);
      } else {
        v_.warn(name, kUpstreamKeys);
      }
    }
    if (u.url.empty()) v_.fail(at, item, "an object with a \"url\"");
    if (u.name.empty()) u.name = u.parsed.host + ":" + u.parsed.port;
    return u;
  }

  void limits(const json& value) {
    v_.object("limits", value, "{\"requests_per_minute\": 60, \"tokens_per_minute\": 20000}");
    for (const auto& [key, item] : value.items()) {
      const std::string name = "limits." + key;
      if (key == "requests_per_minute")
        c_.limits.requests_per_minute = v_.integer(name, item, 0, 100'000'000);
      else if (key == "tokens_per_minute")
        c_.limits.tokens_per_minute = v_.integer(name, item, 0, 1'000'000'000'000);
      else if (key == "max_body_bytes")
        c_.limits.max_body_bytes =
            static_cast<std::size_t>(v_.integer(name, item, 1024, std::int64_t{1} << 34, "bytes"));
      else if (key == "max_header_bytes")
        c_.limits.max_header_bytes = static_cast<std::size_t>(v_.integer(name, item, 1024, 1 << 20, "bytes"));
      else if (key == "header_timeout_ms")
        c_.limits.header_timeout = std::chrono::milliseconds(v_.integer(name, item, 100, 3'600'000, "ms"));
      else if (key == "min_body_rate")
        c_.limits.min_body_rate = static_cast<std::size_t>(v_.integer(name, item, 0, 1 << 30, "bytes/s"));
      else if (key == "max_connections_per_client")
        c_.limits.max_connections_per_client = static_cast<std::size_t>(v_.integer(name, item, 0, 1 << 20));
      else if (key == "audio_seconds_per_hour")
        c_.limits.audio_seconds_per_hour = v_.integer(name, item, 0, std::int64_t{1} << 40);
      else if (key == "upload_max_body_bytes")
        c_.limits.upload_max_body_bytes =
            static_cast<std::size_t>(v_.integer(name, item, 1024, std::int64_t{1} << 34, "bytes"));
      else
        v_.warn(name, kLimitKeys);
    }
  }

  void queue(const json& value) {
    v_.object("queue", value, "{\"max_waiting\": 256, \"timeout_ms\": 30000}");
    for (const auto& [key, item] : value.items()) {
      const std::string name = "queue." + key;
      if (key == "max_waiting")
        c_.queue.max_waiting = static_cast<std::size_t>(v_.integer(name, item, 0, 1'000'000, "requests"));
      else if (key == "timeout_ms")
        c_.queue.timeout = ms(v_.integer(name, item, 0, 3'600'000, "milliseconds"));
      else
        v_.warn(name, kQueueKeys);
    }
  }

  void health_checks(const json& value) {
    v_.object("health_checks", value, "{\"interval_ms\": 2000, \"timeout_ms\": 1000, \"path\": \"/health\"}");
    for (const auto& [key, item] : value.items()) {
      const std::string name = "health_checks." + key;
      if (key == "interval_ms") {
        c_.health_checks.interval = ms(v_.integer(name, item, 50, 3'600'000, "milliseconds"));
      } else if (key == "timeout_ms") {
        c_.health_checks.timeout = ms(v_.integer(name, item, 10, 600'000, "milliseconds"));
      } else if (key == "path") {
        c_.health_checks.path = v_.string(name, item, false);
        if (c_.health_checks.path[0] != '/')
          v_.fail(name, item, "a path that starts with '/', such as \"/health\"");
      } else {
        v_.warn(name, kHealthKeys);
      }
    }
  }

  void breaker(const json& value) {
    v_.object("circuit_breaker", value, "{\"failures\": 3, \"cooldown_ms\": 5000}");
    for (const auto& [key, item] : value.items()) {
      const std::string name = "circuit_breaker." + key;
      if (key == "failures")
        c_.circuit_breaker.failures = static_cast<int>(v_.integer(name, item, 1, 1000));
      else if (key == "cooldown_ms")
        c_.circuit_breaker.cooldown = ms(v_.integer(name, item, 10, 3'600'000, "milliseconds"));
      else
        v_.warn(name, kBreakerKeys);
    }
  }

  config::Validator v_;
  fs::path base_dir_;
  GatewayConfig& c_;
};

}  // namespace

GatewayConfig parse_config(std::string_view text, const std::string& origin, const fs::path& base_dir) {
  const json doc = config::parse_object(text, origin);
  GatewayConfig c;
  Parser(origin, base_dir, c).top(doc);

  if (c.upstreams.empty())
    throw ConfigError(origin +
                      ": \"upstreams\" is missing; list at least one, such as \"upstreams\": [{\"url\": "
                      "\"http://192.168.1.100:5000\"}]");
  std::map<std::string, std::size_t> urls;  // where each upstream was first listed
  bool any_primary = false;
  for (std::size_t i = 0; i < c.upstreams.size(); ++i) {
    const auto& u = c.upstreams[i];
    if (auto [first, inserted] = urls.emplace(u.parsed.str(), i); !inserted)
      throw ConfigError(origin + ": \"upstreams[" + std::to_string(i) + "].url\" is \"" + u.url +
                        "\": upstream " + u.parsed.str() + " is listed twice (also upstreams[" +
                        std::to_string(first->second) + "]); list each server once, with a \"weight\"");
    any_primary = any_primary || !u.standby;
  }
  if (!any_primary)
    throw ConfigError(origin + ": every upstream is \"standby\": at least one must be a primary");
  if (c.listen.empty()) c.listen.push_back(Listener{});
  if (c.tls_only)
    for (std::size_t i = 0; i < c.listen.size(); ++i)
      if (!c.listen[i].tls)
        throw ConfigError(origin + ": \"tls_only\" is true but listen[" + std::to_string(i) +
                          "] has no \"tls\": give it {\"cert\": ..., \"key\": ...} or set tls_only to false");
  if (c.keys_db.empty()) c.keys_db = base_dir.empty() ? fs::path("gateway.db") : base_dir / "gateway.db";
  if (c.auth == "none")
    c.warnings.push_back(origin + ": \"auth\" is \"none\": anyone who can reach the gateway can use it");
  c.file = origin;
  return c;
}

GatewayConfig load_config(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw ConfigError(path.string() + ": cannot read the gateway configuration (" +
                      (fs::exists(path) ? "permission denied" : "no such file") +
                      "); write one like the example in deploy/gateway.json");
  }
  std::ostringstream text;
  text << in.rdbuf();
  const fs::path absolute = fs::absolute(path);
  return parse_config(text.str(), path.string(), absolute.parent_path());
}

}  // namespace clawbot::gateway
