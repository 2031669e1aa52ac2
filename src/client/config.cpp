#include "client/config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "client/endpoint_auto.h"
#include "common/cli_error.h"
#include "common/json_config.h"
#include "common/user_dirs.h"

namespace clawbot::client {

using nlohmann::json;
namespace fs = std::filesystem;

std::chrono::milliseconds RetryPolicy::delay(int retry, double jitter) const {
  const double ms = static_cast<double>(base_delay.count()) * std::pow(backoff_factor, retry - 1) * jitter;
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(ms)));
}

std::string ClientConfig::resolved_api_key() const {
  if (!api_key_env.empty()) {
    const char* value = std::getenv(api_key_env.c_str());
    if (value == nullptr || *value == '\0')
      throw ConfigError("api_key_env names $" + api_key_env + ", which is not set in this environment (" +
                        (file.empty() ? std::string("built-in") : file.string()) +
                        "): export it, or set api_key instead");
    return value;
  }
  return api_key;
}

namespace {

const std::vector<std::string> kTopKeys = {
    "model_endpoint", "max_tokens",  "temperature", "network_timeout", "retry_policy", "api_key",
    "api_key_env",    "tls_ca_file", "model",       "system_prompt",   "session_db",   "context_length"};
const std::vector<std::string> kRetryKeys = {"max_retries", "backoff_factor", "base_delay"};

// The shared validator, plus where each value came from (for `config show`).
class Validator : public config::Validator {
 public:
  Validator(std::string origin, ClientConfig& config)
      : config::Validator(std::move(origin), config.warnings), config_(config) {}
  void note(const std::string& key) { config_.source[key] = origin(); }

 private:
  ClientConfig& config_;
};

void check_endpoint(const Validator& v, const json& value, const std::string& text) {
  if (text == "auto") return;
  const std::string allowed = "an http:// or https:// URL such as \"http://192.168.1.100:5000\", or \"auto\"";
  const auto scheme_end = text.find("://");
  if (scheme_end == std::string::npos) v.fail("model_endpoint", value, allowed);
  const std::string scheme = text.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") v.fail("model_endpoint", value, allowed);
  const std::string rest = text.substr(scheme_end + 3);
  if (rest.empty() || rest[0] == '/' || rest[0] == ':')
    v.fail("model_endpoint", value, allowed + " (no host)");
}

// Relative paths in a file are relative to the file's folder, as people expect of a config file.
std::string resolve_path(const std::string& path, const std::string& origin_file) {
  return config::resolve_path(path, fs::path(origin_file).parent_path());
}

}  // namespace

ClientConfig parse_config(std::string_view text, const std::string& origin) {
  ClientConfig config;
  const json doc = config::parse_object(text, origin);

  Validator v(origin, config);
  for (const auto& [key, value] : doc.items()) {
    if (key == "model_endpoint") {
      config.model_endpoint = v.string(key, value);
      check_endpoint(v, value, config.model_endpoint);
      while (config.model_endpoint.size() > 1 && config.model_endpoint.back() == '/')
        config.model_endpoint.pop_back();
    } else if (key == "max_tokens") {
      config.max_tokens = v.integer(key, value, 1, 10'000'000);
    } else if (key == "temperature") {
      config.temperature = v.number(key, value, 0.0, 2.0);
    } else if (key == "network_timeout") {
      if (value.is_number() && value.get<double>() > 0 && value.get<double>() < 100)
        v.fail(key, value,
               "an integer number of milliseconds from 100 to 86400000 (it is in milliseconds: " +
                   value.dump() + " seconds is " + std::to_string(value.get<std::int64_t>() * 1000) + ")");
      config.network_timeout =
          std::chrono::milliseconds(v.integer(key, value, 100, 86'400'000, "milliseconds"));
    } else if (key == "retry_policy") {
      if (!value.is_object())
        v.fail(key, value, "an object such as {\"max_retries\": 3, \"backoff_factor\": 1.5}");
      for (const auto& [sub, subvalue] : value.items()) {
        const std::string name = "retry_policy." + sub;
        if (sub == "max_retries") {
          config.retry_policy.max_retries = static_cast<int>(v.integer(name, subvalue, 0, 100));
        } else if (sub == "backoff_factor") {
          config.retry_policy.backoff_factor = v.number(name, subvalue, 1.0, 10.0);
        } else if (sub == "base_delay") {
          config.retry_policy.base_delay =
              std::chrono::milliseconds(v.integer(name, subvalue, 0, 600'000, "milliseconds"));
        } else {
          v.warn(name, kRetryKeys);
          continue;
        }
        v.note(name);
      }
    } else if (key == "api_key") {
      config.api_key = v.string(key, value);
    } else if (key == "api_key_env") {
      config.api_key_env = v.string(key, value, false);
      const auto& s = config.api_key_env;
      const bool valid_name = (std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_') &&
                              std::all_of(s.begin(), s.end(), [](char c) {
                                return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                              });
      if (!valid_name) v.fail(key, value, "the name of an environment variable, such as \"CLAWBOT_API_KEY\"");
    } else if (key == "tls_ca_file") {
      config.tls_ca_file = resolve_path(v.string(key, value), origin);
      if (!config.tls_ca_file.empty() && !fs::is_regular_file(config.tls_ca_file))
        v.fail(key, value, "a PEM file that exists (" + config.tls_ca_file + " does not)");
    } else if (key == "model") {
      config.model = v.string(key, value);
    } else if (key == "system_prompt") {
      config.system_prompt = v.string(key, value);
    } else if (key == "session_db") {
      config.session_db = resolve_path(v.string(key, value, false), origin);
    } else if (key == "context_length") {
      config.context_length = v.integer(key, value, 0, 10'000'000, "tokens");
    } else {
      v.warn(key, kTopKeys);
      continue;
    }
    if (key != "retry_policy") v.note(key);
  }
  if (!config.api_key.empty() && !config.api_key_env.empty())
    throw ConfigError(origin +
                      ": both \"api_key\" and \"api_key_env\" are set; keep one (api_key_env keeps the key "
                      "out of the file)");
  config.file = origin;
  return config;
}

std::optional<fs::path> user_config_path() {
  const auto base = user_dirs::find(user_dirs::Kind::config);
  if (!base) return std::nullopt;
  return *base / "clawbot" / "clawbot.json";
}

std::optional<ConfigLocation> find_config(const ConfigSearch& search) {
  if (!search.explicit_path.empty()) {
    if (!fs::exists(search.explicit_path))
      throw ConfigError("--config " + search.explicit_path + ": no such file (`clawbot config init " +
                        search.explicit_path + "` writes one)");
    return ConfigLocation{search.explicit_path, "--config"};
  }
  if (const char* env = std::getenv("CLAWBOT_CONFIG"); env != nullptr && *env != '\0') {
    if (!fs::exists(env))
      throw ConfigError(std::string("$CLAWBOT_CONFIG names ") + env + ", which does not exist");
    return ConfigLocation{env, "$CLAWBOT_CONFIG"};
  }
  if (fs::exists("clawbot.json")) return ConfigLocation{"clawbot.json", "./clawbot.json"};
  if (const auto user = user_config_path(); user && fs::exists(*user))
    return ConfigLocation{*user, "user config"};
  return std::nullopt;
}

ClientConfig load_config(const ConfigSearch& search) {
  const auto location = find_config(search);
  if (!location) return ClientConfig{};
  std::ifstream in(location->path, std::ios::binary);
  if (!in) throw ConfigError(location->path.string() + ": cannot be read (check its permissions)");
  std::ostringstream text;
  text << in.rdbuf();
  ClientConfig config = parse_config(text.str(), location->path.string());
  config.file = location->path;
  return config;
}

std::string starter_config_text() {
  return R"(// clawbot.json: the assistant's settings (`clawbot config show` prints what is in effect).
// Comments are allowed. Paths are relative to this file's folder. Remove the // to use a line.
{
  // The node or gateway to ask: an http:// or https:// URL, or "auto" to find one on the LAN.
  "model_endpoint": "http://127.0.0.1:5000",

  // The API key of a gateway: keep it out of this file with api_key_env.
  // "api_key_env": "CLAWBOT_API_KEY",

  // The CA that signed an https:// endpoint's certificate (PEM).
  // "tls_ca_file": "ca.pem",

  // The model to ask for (default: the first the endpoint lists), and a system prompt for new chats.
  // "model": "qwen3-next-80b-a3b",
  // "system_prompt": "You are a concise assistant.",

  // Where conversations are kept (default: ~/.local/share/clawbot/sessions.db).
  // "session_db": "sessions.db",

  // Tokens of context to plan for (default: what the server reports).
  // "context_length": 32768,

  // Longest answer, in tokens, and the sampling temperature (0: always the likeliest token).
  "max_tokens": 8192,
  "temperature": 0.7,

  // Milliseconds to wait for a connection and for each sign of life (a token, a keep-alive);
  // a long answer may take longer in all, as long as the server keeps talking.
  "network_timeout": 30000,

  // Retries on refused connections, timeouts and 429/502/503/504 answers: the delay before retry k is
  // base_delay x backoff_factor^(k-1) milliseconds, with jitter; a server's Retry-After wins.
  "retry_policy": { "max_retries": 3, "backoff_factor": 1.5, "base_delay": 500 }
}
)";
}

namespace {

std::string mask_key(const std::string& key) {
  if (key.empty()) return "";
  if (key.size() <= 8) return std::string(key.size(), '*');
  return key.substr(0, 3) + "..." + key.substr(key.size() - 4);
}

nlohmann::ordered_json effective_values(const ClientConfig& c) {
  return nlohmann::ordered_json{{"model_endpoint", c.model_endpoint},
                                {"max_tokens", c.max_tokens},
                                {"temperature", c.temperature},
                                {"network_timeout", c.network_timeout.count()},
                                {"retry_policy.max_retries", c.retry_policy.max_retries},
                                {"retry_policy.backoff_factor", c.retry_policy.backoff_factor},
                                {"retry_policy.base_delay", c.retry_policy.base_delay.count()},
                                {"api_key", mask_key(c.api_key)},
                                {"api_key_env", c.api_key_env},
                                {"tls_ca_file", c.tls_ca_file},
                                {"model", c.model},
                                {"system_prompt", c.system_prompt},
                                {"session_db", c.session_db},
                                {"context_length", c.context_length}};
}

}  // namespace

// What "auto" finds now (or the cached choice), for `config show --json`.
static nlohmann::ordered_json describe_auto_json() {
  try {
    const AutoEndpoint found = resolve_auto_endpoint();
    nlohmann::ordered_json j = found.to_json();
    j["description"] = found.describe();
    return j;
  } catch (const ConfigError& e) {
    return {{"url", nullptr}, {"error", e.what()}};
  }
}

int run_config(const ConfigCommand& cmd) {
  try {
    if (cmd.action == "init") {
      const fs::path path =
          cmd.init_path.empty()
              ? user_dirs::require(user_dirs::Kind::config, "name the file: clawbot config init FILE") /
                    "clawbot" / "clawbot.json"
              : fs::path(cmd.init_path);
      if (fs::exists(path) && !cmd.force) {
        return cli_error("clawbot config init", path.string() + " exists; --force replaces it", 1);
      }
      if (path.has_parent_path()) fs::create_directories(path.parent_path());
      {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << starter_config_text();
        if (!out) {
          return cli_error("clawbot config init", "cannot write " + path.string(), 1);
        }
      }
      ::chmod(path.c_str(), 0600);  // it may come to hold an API key
      std::cout << "wrote " << path.string() << "\n";
      return 0;
    }
    const auto location = find_config(cmd.search);
    if (cmd.action == "path") {
      if (!location) {
        std::cerr << "no clawbot.json found (searched --config, $CLAWBOT_CONFIG, ./clawbot.json, "
                  << (user_config_path() ? user_config_path()->string()
                                         : "no user config: " + user_dirs::missing(user_dirs::Kind::config))
                  << ")\n";
        return 1;
      }
      std::cout << location->path.string() << "\n";
      return 0;
    }
    const ClientConfig config = load_config(cmd.search);
    for (const auto& w : config.warnings) std::cerr << "warning: " << w << "\n";
    const nlohmann::ordered_json values = effective_values(config);
    if (cmd.json) {
      nlohmann::ordered_json out = {{"file", location ? location->path.string() : ""},
                                    {"values", nlohmann::ordered_json::object()}};
      for (const auto& [key, value] : values.items()) {
        const auto it = config.source.find(key);
        out["values"][key] = {{"value", value},
                              {"source", it == config.source.end() ? "default" : it->second}};
      }
      if (config.model_endpoint == "auto") out["auto"] = describe_auto_json();
      std::cout << out.dump(2) << "\n";
      return 0;
    }
    std::cout << "# config file: "
              << (location ? location->path.string() + " (" + location->reason + ")"
                           : "none found; built-in defaults (clawbot config init writes one)")
              << "\n";
    for (const auto& [key, value] : values.items()) {
      const auto it = config.source.find(key);
      std::string shown = value.is_string() ? value.get<std::string>() : value.dump();
      if (shown.empty()) shown = "-";
      std::printf("%-28s %-40s %s\n", key.c_str(), shown.c_str(),
                  it == config.source.end() ? "default" : it->second.c_str());
    }
    if (config.model_endpoint == "auto") {
      std::fflush(stdout);
      try {
        std::cout << "# model_endpoint auto resolves to " << resolve_auto_endpoint().describe() << "\n";
      } catch (const ConfigError& e) {
        std::cout << "# model_endpoint auto resolves to nothing: " << e.what() << "\n";
      }
    }
    return 0;
  } catch (const ConfigError& e) {
    return cli_error("clawbot config", e.what(), 2);
  } catch (const std::exception& e) {
    return cli_error("clawbot config", e.what(), 1);
  }
}

}  // namespace clawbot::client
