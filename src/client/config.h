// clawbot.json: the front-end's configuration. Found at --config, $CLAWBOT_CONFIG, ./clawbot.json,
// ${XDG_CONFIG_HOME:-~/.config}/clawbot/clawbot.json, in that order; every key is validated (a wrong type or
// range names the key, the value and what is allowed), an unknown key is a warning that suggests the closest
// known one. Comments (// and /* */) are allowed, so `config init` can write a commented file.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/json_config.h"

namespace clawbot::client {

// A file that cannot be used: its message names the file, the key, the value and what is allowed.
using ConfigError = config::ConfigError;

struct RetryPolicy {
  int max_retries = 3;
  double backoff_factor = 1.5;
  std::chrono::milliseconds base_delay{500};  // the delay before the first retry

  // Delay before retry k (1-based): base × factor^(k−1), times a jitter factor `jitter` in [0.8, 1.2].
  std::chrono::milliseconds delay(int retry, double jitter) const;
};

struct ClientConfig {
  std::string model_endpoint = "http://127.0.0.1:5000";  // http(s) URL, or "auto" (mDNS discovery)
  std::int64_t max_tokens = 8192;
  double temperature = 0.7;
  std::chrono::milliseconds network_timeout{30'000};  // connection, and every silence; not the whole answer
  RetryPolicy retry_policy;
  std::string api_key;      // sent as Authorization: Bearer
  std::string api_key_env;  // or: the environment variable that holds it
  std::string tls_ca_file;  // PEM file of the CA that signed an https endpoint's certificate
  std::string model;        // empty: the first model the endpoint lists
  std::string system_prompt;
  std::string session_db;           // empty: the session store's default path
  std::int64_t context_length = 0;  // 0: the context the server reports

  std::filesystem::path file;                 // the file read; empty when none was found
  std::map<std::string, std::string> source;  // key → where its value came from
  std::vector<std::string> warnings;          // unknown keys, with suggestions

  // The key to send, from api_key or the environment variable api_key_env names (ConfigError when that is
  // unset).
  std::string resolved_api_key() const;
};

struct ConfigSearch {
  std::string explicit_path;  // --config
};

// The file that would be read, and why (for messages); nullopt when no file exists anywhere in the search.
struct ConfigLocation {
  std::filesystem::path path;
  std::string reason;  // "--config", "$CLAWBOT_CONFIG", "./clawbot.json", "user config"
};
std::optional<ConfigLocation> find_config(const ConfigSearch& search);
// ${XDG_CONFIG_HOME:-~/.config}/clawbot/clawbot.json (common/user_dirs.h); nullopt when neither is set.
std::optional<std::filesystem::path> user_config_path();

// Parses and validates one file's text (`origin` names it in messages). Unset keys keep their defaults.
ClientConfig parse_config(std::string_view text, const std::string& origin);
// find_config + parse_config; defaults when no file exists. Throws ConfigError.
ClientConfig load_config(const ConfigSearch& search);

// The commented starting file that `config init` writes.
std::string starter_config_text();

struct ConfigCommand {
  std::string action;  // show | init | path
  ConfigSearch search;
  std::string init_path;  // init: where to write (default: user_config_path())
  bool force = false;
  bool json = false;
};
int run_config(const ConfigCommand& cmd);

}  // namespace clawbot::client
