// The assistant client's conversation store: sessions and their messages in one SQLite file.
//
// Durability is the point: `clawbot chat` inserts an answer as "partial" at its first token and updates it as
// text arrives, each write its own committed transaction, so a crash, a cut network or Ctrl-C loses nothing
// that was already on the screen. WAL mode lets `clawbot sessions` read while a chat writes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/sqlite_db.h"
#include "common/store_error.h"

namespace clawbot::client {

// Roles and states, as stored. Anything else is refused with StoreErrorKind::invalid_argument.
inline constexpr std::string_view role_system = "system";
inline constexpr std::string_view role_user = "user";
inline constexpr std::string_view role_assistant = "assistant";
inline constexpr std::string_view state_complete = "complete";
inline constexpr std::string_view state_partial = "partial";          // cut off by a network failure or crash
inline constexpr std::string_view state_interrupted = "interrupted";  // the user pressed Ctrl-C
inline constexpr std::string_view state_length = "length";  // whole, but stopped at max_tokens or the context

// How an answer was generated; each figure is absent when unknown (a user message has none).
struct MessageStats {
  std::optional<double> ttft_ms;       // time to first token
  std::optional<double> tokens_per_s;  // decode speed
  std::optional<std::int64_t> tokens;  // tokens generated
};

struct StoredMessage {
  std::int64_t id = 0;
  std::string role;             // role_system, role_user or role_assistant
  std::string content;          // as much of it as arrived
  std::string state;            // state_complete, state_partial or state_interrupted
  std::int64_t created_ms = 0;  // Unix epoch, milliseconds
  MessageStats stats;
  std::string error;  // why it is partial or interrupted; empty when complete
};

struct SessionInfo {
  std::int64_t id = 0;
  std::string name;
  std::string model;
  std::string system_prompt;
  std::int64_t created_ms = 0;  // Unix epoch, milliseconds
  std::int64_t updated_ms = 0;  // the last change to its messages, system prompt or model
  std::int64_t message_count = 0;
  std::string preview;  // the first line of the first user message (at most 200 bytes); empty when none
};

// One SQLite connection. Use a SessionStore from one thread at a time; several stores (threads or processes)
// may share one file. Every method throws StoreError, whose message names the file and the problem.
class SessionStore {
 public:
  // $XDG_DATA_HOME/clawbot/sessions.db, else ~/.local/share/clawbot/sessions.db.
  static std::filesystem::path default_path();

  // Creates the parent directories and the schema when missing. Refuses a file that is not SQLite, an SQLite
  // file of something else, and a schema newer than this clawbot knows.
  explicit SessionStore(const std::filesystem::path& db);

  const std::string& path() const noexcept { return db_.path(); }

  // An empty name picks a unique readable one from the local date and time: 2026-11-25-1453, then
  // 2026-11-25-1453-2, ... A name is 1 to 100 bytes of UTF-8 without control characters, not digits only
  // (digits are read as an id).
  SessionInfo create(std::string_view name, std::string_view system_prompt = {}, std::string_view model = {});
  // By name, or by id when name_or_id is all digits and no session has that name.
  std::optional<SessionInfo> find(std::string_view name_or_id);
  // Like find(), but throws StoreErrorKind::not_found naming the closest names that exist.
  SessionInfo get(std::string_view name_or_id);
  std::vector<SessionInfo> list();  // most recently updated first

  std::vector<StoredMessage> messages(std::int64_t session_id);  // oldest first
  // Returns the new message's id.
  std::int64_t append(std::int64_t session_id, std::string_view role, std::string_view content,
                      std::string_view state = state_complete);
  void update_message(std::int64_t message_id, std::string_view content, std::string_view state,
                      const MessageStats& stats = {}, std::string_view error = {});
  void delete_message(std::int64_t message_id);  // /retry drops the last answer

  void set_system_prompt(std::int64_t session_id, std::string_view text);
  void set_model(std::int64_t session_id, std::string_view model);
  void rename(std::string_view from, std::string_view to);
  SessionInfo remove(std::string_view name_or_id);  // the session and all its messages; returns what it was

 private:
  void open_schema();
  void touch(std::int64_t session_id,
             std::int64_t now_ms);  // updated_ms; throws when there is no such session
  [[noreturn]] void fail(StoreErrorKind kind, const std::string& problem) const;

  sqlite::Database db_;
};

// Readable Markdown: a title, the model and dates, then each message under its role as a heading. Partial and
// interrupted answers are marked so, with the reason.
std::string export_markdown(const SessionInfo& session, std::span<const StoredMessage> messages);
// {name, model, system_prompt, created, updated, messages: [{role, content, state, created, ...}]}; times as
// ISO 8601 UTC strings.
nlohmann::json export_json(const SessionInfo& session, std::span<const StoredMessage> messages);

// export_json's shape read back (`clawbot sessions import`, and what the browser chat exports): the name,
// model, system prompt and messages with their states, figures and errors (ids and times are the store's).
// Throws ClawbotError (invalid_request) naming the member at fault.
struct ImportedSession {
  std::string name;
  std::string model;
  std::string system_prompt;
  std::vector<StoredMessage> messages;
};
ImportedSession import_json(const nlohmann::json& exported);

// Local time as "2026-11-25 14:53" (what people read in tables and exports).
std::string format_local_time(std::int64_t epoch_ms);
// UTC as "2026-11-25T13:53:07.250Z" (what programs read).
std::string format_utc_iso8601(std::int64_t epoch_ms);

}  // namespace clawbot::client
