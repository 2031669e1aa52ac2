// Internal to src/backup: what clawbot keeps on this machine, found by the same rules the commands that own
// it use (clawbot.json's search and session_db, gateway.json's keys_db, secret_file and audit_log, the model
// directories of CLAWBOT_MODELS), copied consistently into a staging directory, and the manifest that says
// where each piece lives.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace clawbot::backup {

// Items, as `restore --item` names them.
inline constexpr const char* item_names[] = {"sessions", "keys", "audit", "configs", "models", "kb"};
// `restore --item kb:NAME`: the one knowledge base NAME (NAME.kb) of the item "kb".
inline constexpr std::string_view one_kb_prefix = "kb:";
inline constexpr const char* manifest_name = "clawbot-manifest.json";

struct SourceOptions {
  std::string client_config;            // clawbot.json (empty: its usual search)
  std::string gateway_config;           // gateway.json (empty: $CLAWBOT_GATEWAY_CONFIG, the user's, ./)
  std::string session_db;               // empty: clawbot.json's session_db, else the default
  std::vector<std::string> model_dirs;  // empty: the model directories (common/model_path.h)
  std::vector<std::string> items;       // only these (item_names); empty: all
};

struct StateFile {
  std::string item;              // one of item_names
  std::string kind;              // "sqlite", "audit" or "file"
  std::filesystem::path path;    // where it lives (absolute)
  std::filesystem::path stored;  // where it is in the snapshot (absolute): the staging copy, or `path` itself
  std::string sha256;            // of the stored bytes (files and the audit log)
  std::uint64_t size = 0;
  nlohmann::json to_json() const;
  static StateFile from_json(const nlohmann::json& value);
};

struct StagedState {
  std::vector<StateFile> files;
  std::vector<std::filesystem::path> backup_paths;  // what restic backs up: the staging dir, the model dirs
  std::vector<std::string> notes;                   // what was not found, and so not backed up
};

// ${XDG_STATE_HOME:-~/.local/state}/clawbot/backup: staging/, model-sums.json, last.json.
std::filesystem::path state_dir();

// Empties `staging`, copies the databases (SQLite's online backup API: one consistent read transaction,
// writers go on), the keys database before the audit log (so that the log copy reaches at least the anchor),
// the audit log up to its last whole line, the secret and the configs into it, hashes the model files
// (reusing the sums of files unchanged since the last backup, kept in `sums_cache`), and writes the manifest.
StagedState stage_state(const SourceOptions& options, const std::filesystem::path& staging,
                        const std::filesystem::path& sums_cache);

// gateway.json: `flag`, else $CLAWBOT_GATEWAY_CONFIG, else
// ${XDG_CONFIG_HOME:-~/.config}/clawbot/gateway.json, else ./gateway.json, the first that is given or exists;
// nullopt when none.
std::optional<std::filesystem::path> find_gateway_config(const std::string& flag);

// Seconds since the Unix epoch.
std::int64_t now_unix();

// SHA-256 of a file, lower-case hex.
std::string file_sha256(const std::filesystem::path& file);

}  // namespace clawbot::backup
