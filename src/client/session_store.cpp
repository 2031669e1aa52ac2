#include "client/session_store.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <system_error>

#include "common/edit_distance.h"
#include "common/text.h"
#include "common/user_dirs.h"

namespace clawbot::client {

namespace {

// PRAGMA user_version of the schema below. A newer file is refused (an older clawbot would misread it); an
// older one is migrated in open_schema(). Version 2 added the message state 'length'.
constexpr std::int64_t schema_version = 2;

// The messages table of version 2; the migration creates it under another name first.
std::string messages_table_sql(std::string_view name) {
  return "CREATE TABLE " + std::string(name) + R"sql( (
  id           INTEGER PRIMARY KEY,
  session_id   INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  role         TEXT    NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
  content      TEXT    NOT NULL,
  state        TEXT    NOT NULL CHECK (state IN ('complete', 'partial', 'interrupted', 'length')),
  created_ms   INTEGER NOT NULL,
  ttft_ms      REAL,
  tokens_per_s REAL,
  tokens       INTEGER,
  error        TEXT    NOT NULL DEFAULT ''
);
)sql";
}

constexpr const char* sessions_table_sql = R"sql(
CREATE TABLE sessions (
  id            INTEGER PRIMARY KEY,
  name          TEXT    NOT NULL UNIQUE,
  model         TEXT    NOT NULL DEFAULT '',
  system_prompt TEXT    NOT NULL DEFAULT '',
  created_ms    INTEGER NOT NULL,
  updated_ms    INTEGER NOT NULL
);
CREATE INDEX sessions_by_update ON sessions(updated_ms);
)sql";

constexpr const char* messages_index_sql = "CREATE INDEX messages_by_session ON messages(session_id, id);";

constexpr std::size_t name_max_bytes = 100;
constexpr std::size_t preview_max_bytes = 200;

// updated_ms for a change made now (the clock bound as ?9): the clock, but always after every other session's
// last change, so "most recently updated first" is a strict order even within one millisecond. Part of the
// writing statement, so it reads the table under the same lock.
std::string with_next_update(std::string_view before, std::string_view after) {
  return std::string(before) + "max(?9, (SELECT coalesce(max(updated_ms), 0) + 1 FROM sessions))" +
         std::string(after);
}

// The columns read_session() expects, in its order.
constexpr std::string_view session_columns = R"sql(
  SELECT s.id, s.name, s.model, s.system_prompt, s.created_ms, s.updated_ms,
         (SELECT count(*) FROM messages m WHERE m.session_id = s.id),
         (SELECT substr(m.content, 1, 1000) FROM messages m
           WHERE m.session_id = s.id AND m.role = 'user' ORDER BY m.id LIMIT 1)
    FROM sessions s )sql";

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// The longest prefix of text that is at most max_bytes and does not end inside a UTF-8 sequence.
std::string_view utf8_prefix(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  std::size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

std::string first_line(std::string_view text) {
  // The first line with something on it: a message that starts with a blank line still gets a preview.
  while (!text.empty()) {
    const auto newline = text.find('\n');
    auto line = text.substr(0, newline);
    if (const auto trimmed = text::trim(line, " \t\r"); !trimmed.empty())
      return std::string(utf8_prefix(trimmed, preview_max_bytes));
    if (newline == std::string_view::npos) break;
    text.remove_prefix(newline + 1);
  }
  return {};
}

SessionInfo read_session(const sqlite::Statement& row) {
  SessionInfo info;
  info.id = row.int64_at(0);
  info.name = row.text_at(1);
  info.model = row.text_at(2);
  info.system_prompt = row.text_at(3);
  info.created_ms = row.int64_at(4);
  info.updated_ms = row.int64_at(5);
  info.message_count = row.int64_at(6);
  info.preview = first_line(row.text_at(7));
  return info;
}

bool valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    std::size_t length = 0;
    char32_t code = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2, code = lead & 0x1Fu;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, code = lead & 0x0Fu;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, code = lead & 0x07u;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3Fu);
    }
    // Overlong forms, surrogates and values past Unicode are not UTF-8.
    constexpr char32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < smallest[length] || (code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF) return false;
    i += length;
  }
  return true;
}

// Shown in messages: the name with control characters escaped, so an error cannot garble the terminal.
std::string quote_name(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Empty when the name is usable, else the problem.
std::string name_problem(std::string_view name) {
  if (name.empty()) return "a session name cannot be empty";
  if (name.size() > name_max_bytes) {
    return "session name " + quote_name(utf8_prefix(name, 40)) + "... is " + std::to_string(name.size()) +
           " bytes long; the limit is " + std::to_string(name_max_bytes);
  }
  const bool has_control = std::any_of(name.begin(), name.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7F;
  });
  if (has_control) return "session name " + quote_name(name) + " contains a control character";
  if (!valid_utf8(name)) return "session name " + quote_name(name) + " is not valid UTF-8";
  if (std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return "session name " + quote_name(name) + " is only digits, which read as a session id: add a letter";
  }
  return {};
}

bool is_role(std::string_view role) {
  return role == role_system || role == role_user || role == role_assistant;
}
bool is_state(std::string_view state) {
  return state == state_complete || state == state_partial || state == state_interrupted ||
         state == state_length;
}

std::optional<std::int64_t> parse_id(std::string_view text) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  std::int64_t id = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return id;
}

// Creates the directory the database goes in, so that a first run on a new machine just works.
const std::filesystem::path& prepare_location(const std::filesystem::path& db) {
  const auto parent = db.parent_path();
  std::error_code ec;
  if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      throw StoreError(ec == std::errc::read_only_file_system || ec == std::errc::permission_denied
                           ? StoreErrorKind::read_only
                           : StoreErrorKind::unusable,
                       db.string() + ": cannot create the directory " + parent.string() + ": " +
                           ec.message() + " (pass another --db, or fix the permissions)");
    }
  }
  return db;
}

}  // namespace

std::filesystem::path SessionStore::default_path() {
  const auto data = user_dirs::find(user_dirs::Kind::data);
  if (!data) {
    throw StoreError(
        StoreErrorKind::unusable,
        "cannot find the session database: " + user_dirs::missing(user_dirs::Kind::data) + " (pass --db)");
  }
  return *data / "clawbot" / "sessions.db";
}

SessionStore::SessionStore(const std::filesystem::path& db) : db_(prepare_location(db)) {
  open_schema();
}

void SessionStore::fail(StoreErrorKind kind, const std::string& problem) const {
  throw StoreError(kind, path() + ": " + problem);
}

void SessionStore::open_schema() {
  // The first read of the file: where a file that is not a database shows itself.
  const auto read_version = [this] {
    sqlite::Statement version(db_, "PRAGMA user_version");
    version.step();
    return version.int64_at(0);
  };
  const auto foreign_tables = [this] {
    sqlite::Statement tables(db_, "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'");
    tables.step();
    return tables.int64_at(0);
  };
  const std::int64_t version = read_version();
  const auto refuse_newer = [this](std::int64_t found) {
    fail(StoreErrorKind::unusable, "the session database has schema version " + std::to_string(found) +
                                       ", newer than this clawbot knows (" + std::to_string(schema_version) +
                                       "): use a newer clawbot, or pass another --db");
  };
  const auto refuse_foreign = [this] {
    fail(StoreErrorKind::unusable,
         "this SQLite file is not a clawbot session database (it has tables but no clawbot schema version): "
         "pass another --db");
  };
  if (version > schema_version) refuse_newer(version);
  if (version == 0 && foreign_tables() > 0) refuse_foreign();

  // WAL: readers (clawbot sessions) never block the writer (clawbot chat), and a commit is one append to the
  // log. synchronous=NORMAL under WAL keeps every commit across a crash of the process; only a power cut can
  // lose the last few, never corrupt the file.
  db_.exec("PRAGMA journal_mode = WAL");
  db_.exec("PRAGMA synchronous = NORMAL");
  db_.exec("PRAGMA foreign_keys = ON");

  if (version < schema_version) {
    sqlite::Transaction transaction(db_);
    // Another process may have created or migrated it between the read above and this lock.
    const std::int64_t locked_version = read_version();
    if (locked_version > schema_version) refuse_newer(locked_version);
    if (locked_version == 0) {
      if (foreign_tables() > 0) refuse_foreign();
      db_.exec(sessions_table_sql);
      db_.exec(messages_table_sql("messages").c_str());
      db_.exec(messages_index_sql);
    } else if (locked_version == 1) {
      // A CHECK constraint cannot be altered: the table is copied into one with the new constraint. Nothing
      // refers to messages, so dropping the old one cascades nowhere.
      db_.exec(messages_table_sql("messages_v2").c_str());
      db_.exec("INSERT INTO messages_v2 SELECT * FROM messages");
      db_.exec("DROP TABLE messages");
      db_.exec("ALTER TABLE messages_v2 RENAME TO messages");
      db_.exec(messages_index_sql);
    }
    db_.exec(("PRAGMA user_version = " + std::to_string(schema_version)).c_str());
    transaction.commit();
  }
}

SessionInfo SessionStore::create(std::string_view name, std::string_view system_prompt,
                                 std::string_view model) {
  if (!name.empty()) {
    if (auto problem = name_problem(name); !problem.empty()) fail(StoreErrorKind::invalid_argument, problem);
  }
  const std::int64_t now = now_ms();
  // The write lock first: nobody can take the name between the check and the insert.
  sqlite::Transaction transaction(db_);
  const auto taken = [this](std::string_view candidate) {
    sqlite::Statement exists(db_, "SELECT 1 FROM sessions WHERE name = ?1");
    exists.bind(1, candidate);
    return exists.step();
  };
  std::string chosen(name);
  if (chosen.empty()) {
    const std::time_t seconds = static_cast<std::time_t>(now / 1000);
    std::tm local{};
    localtime_r(&seconds, &local);
    char base[32];
    std::strftime(base, sizeof base, "%Y-%m-%d-%H%M", &local);
    chosen = base;
    for (int suffix = 2; taken(chosen); ++suffix) chosen = std::string(base) + "-" + std::to_string(suffix);
  } else if (taken(chosen)) {
    fail(StoreErrorKind::name_taken, "session name " + quote_name(chosen) +
                                         " is already taken: pick another, or remove that session first");
  }
  sqlite::Statement insert(db_,
                           with_next_update("INSERT INTO sessions (name, model, system_prompt, created_ms, "
                                            "updated_ms) VALUES (?1, ?2, ?3, ?9, ",
                                            ") RETURNING id, updated_ms"));
  insert.bind(1, chosen).bind(2, model).bind(3, system_prompt).bind(9, now);
  SessionInfo info;
  if (!insert.step()) fail(StoreErrorKind::io, "the new session was not stored");
  info.id = insert.int64_at(0);
  info.updated_ms = insert.int64_at(1);
  insert.run();  // to the end, so the statement is done before COMMIT
  transaction.commit();
  info.name = std::move(chosen);
  info.model = model;
  info.system_prompt = system_prompt;
  info.created_ms = now;
  return info;
}

std::optional<SessionInfo> SessionStore::find(std::string_view name_or_id) {
  {
    sqlite::Statement by_name(db_, std::string(session_columns) + "WHERE s.name = ?1");
    if (by_name.bind(1, name_or_id).step()) return read_session(by_name);
  }
  if (const auto id = parse_id(name_or_id)) {
    sqlite::Statement by_id(db_, std::string(session_columns) + "WHERE s.id = ?1");
    if (by_id.bind(1, *id).step()) return read_session(by_id);
  }
  return std::nullopt;
}

SessionInfo SessionStore::get(std::string_view name_or_id) {
  if (auto found = find(name_or_id)) return std::move(*found);
  std::vector<std::string> names;
  sqlite::Statement all(db_, "SELECT name FROM sessions");
  while (all.step()) names.push_back(all.text_at(0));
  std::string problem = "no session " + quote_name(name_or_id);
  const auto close = closest_names(name_or_id, names);
  if (!close.empty()) {
    problem += "; did you mean ";
    for (std::size_t k = 0; k < close.size(); ++k) {
      problem += (k == 0 ? "" : k + 1 == close.size() ? " or " : ", ") + quote_name(close[k]);
    }
    problem += "?";
  } else if (names.empty()) {
    problem += " (there are no sessions yet)";
  } else {
    problem += " (`clawbot sessions list` shows the " + std::to_string(names.size()) + " there are)";
  }
  fail(StoreErrorKind::not_found, problem);
}

std::vector<SessionInfo> SessionStore::list() {
  std::vector<SessionInfo> sessions;
  sqlite::Statement all(db_, std::string(session_columns) + "ORDER BY s.updated_ms DESC, s.id DESC");
  while (all.step()) sessions.push_back(read_session(all));
  return sessions;
}

std::vector<StoredMessage> SessionStore::messages(std::int64_t session_id) {
  // One read transaction: the session check and the rows come from the same snapshot.
  sqlite::Transaction snapshot(db_, sqlite::Transaction::Lock::read);
  sqlite::Statement exists(db_, "SELECT 1 FROM sessions WHERE id = ?1");
  if (!exists.bind(1, session_id).step()) {
    fail(StoreErrorKind::not_found, "no session with id " + std::to_string(session_id));
  }
  sqlite::Statement rows(db_,
                         "SELECT id, role, content, state, created_ms, ttft_ms, tokens_per_s, tokens, error "
                         "FROM messages WHERE session_id = ?1 ORDER BY id");
  rows.bind(1, session_id);
  std::vector<StoredMessage> out;
  while (rows.step()) {
    StoredMessage message;
    message.id = rows.int64_at(0);
    message.role = rows.text_at(1);
    message.content = rows.text_at(2);
    message.state = rows.text_at(3);
    message.created_ms = rows.int64_at(4);
    if (!rows.null_at(5)) message.stats.ttft_ms = rows.double_at(5);
    if (!rows.null_at(6)) message.stats.tokens_per_s = rows.double_at(6);
    if (!rows.null_at(7)) message.stats.tokens = rows.int64_at(7);
    message.error = rows.text_at(8);
    out.push_back(std::move(message));
  }
  return out;
}

void SessionStore::touch(std::int64_t session_id, std::int64_t now) {
  sqlite::Statement update(db_, with_next_update("UPDATE sessions SET updated_ms = ", " WHERE id = ?1"));
  update.bind(1, session_id).bind(9, now).run();
  if (db_.changes() == 0) fail(StoreErrorKind::not_found, "no session with id " + std::to_string(session_id));
}

std::int64_t SessionStore::append(std::int64_t session_id, std::string_view role, std::string_view content,
                                  std::string_view state) {
  if (!is_role(role)) {
    fail(StoreErrorKind::invalid_argument,
         "message role " + quote_name(role) + " is not one of system, user, assistant");
  }
  if (!is_state(state)) {
    fail(StoreErrorKind::invalid_argument,
         "message state " + quote_name(state) + " is not one of complete, partial, interrupted, length");
  }
  const std::int64_t now = now_ms();
  sqlite::Transaction transaction(db_);
  touch(session_id, now);
  sqlite::Statement insert(db_,
                           "INSERT INTO messages (session_id, role, content, state, created_ms) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)");
  insert.bind(1, session_id).bind(2, role).bind(3, content).bind(4, state).bind(5, now).run();
  const std::int64_t id = db_.last_insert_rowid();
  transaction.commit();
  return id;
}

void SessionStore::update_message(std::int64_t message_id, std::string_view content, std::string_view state,
                                  const MessageStats& stats, std::string_view error) {
  if (!is_state(state)) {
    fail(StoreErrorKind::invalid_argument,
         "message state " + quote_name(state) + " is not one of complete, partial, interrupted, length");
  }
  sqlite::Transaction transaction(db_);
  sqlite::Statement owner(db_, "SELECT session_id FROM messages WHERE id = ?1");
  if (!owner.bind(1, message_id).step()) {
    fail(StoreErrorKind::not_found, "no message with id " + std::to_string(message_id));
  }
  const std::int64_t session_id = owner.int64_at(0);
  sqlite::Statement update(db_,
                           "UPDATE messages SET content = ?1, state = ?2, ttft_ms = ?3, tokens_per_s = ?4, "
                           "tokens = ?5, error = ?6 WHERE id = ?7");
  update.bind(1, content)
      .bind(2, state)
      .bind(3, stats.ttft_ms)
      .bind(4, stats.tokens_per_s)
      .bind(5, stats.tokens)
      .bind(6, error)
      .bind(7, message_id)
      .run();
  touch(session_id, now_ms());
  transaction.commit();
}

void SessionStore::delete_message(std::int64_t message_id) {
  sqlite::Transaction transaction(db_);
  sqlite::Statement owner(db_, "SELECT session_id FROM messages WHERE id = ?1");
  if (!owner.bind(1, message_id).step()) {
    fail(StoreErrorKind::not_found, "no message with id " + std::to_string(message_id));
  }
  const std::int64_t session_id = owner.int64_at(0);
  sqlite::Statement remove_row(db_, "DELETE FROM messages WHERE id = ?1");
  remove_row.bind(1, message_id).run();
  touch(session_id, now_ms());
  transaction.commit();
}

void SessionStore::set_system_prompt(std::int64_t session_id, std::string_view text) {
  sqlite::Statement update(
      db_, with_next_update("UPDATE sessions SET system_prompt = ?1, updated_ms = ", " WHERE id = ?2"));
  update.bind(1, text).bind(2, session_id).bind(9, now_ms()).run();
  if (db_.changes() == 0) fail(StoreErrorKind::not_found, "no session with id " + std::to_string(session_id));
}

void SessionStore::set_model(std::int64_t session_id, std::string_view model) {
  sqlite::Statement update(
      db_, with_next_update("UPDATE sessions SET model = ?1, updated_ms = ", " WHERE id = ?2"));
  update.bind(1, model).bind(2, session_id).bind(9, now_ms()).run();
  if (db_.changes() == 0) fail(StoreErrorKind::not_found, "no session with id " + std::to_string(session_id));
}

void SessionStore::rename(std::string_view from, std::string_view to) {
  if (auto problem = name_problem(to); !problem.empty()) fail(StoreErrorKind::invalid_argument, problem);
  sqlite::Transaction transaction(db_);
  const SessionInfo session = get(from);
  if (session.name == to) return;  // nothing to do; the transaction rolls back an empty change
  if (find(to)) {
    fail(StoreErrorKind::name_taken, "cannot rename " + quote_name(session.name) + " to " + quote_name(to) +
                                         ": that name is already taken");
  }
  sqlite::Statement update(db_, "UPDATE sessions SET name = ?1 WHERE id = ?2");
  update.bind(1, to).bind(2, session.id).run();
  transaction.commit();
}

SessionInfo SessionStore::remove(std::string_view name_or_id) {
  sqlite::Transaction transaction(db_);
  const SessionInfo session = get(name_or_id);
  // Both tables explicitly: the cascade would do it too, but only on connections that enabled foreign keys.
  sqlite::Statement messages_rows(db_, "DELETE FROM messages WHERE session_id = ?1");
  messages_rows.bind(1, session.id).run();
  sqlite::Statement session_row(db_, "DELETE FROM sessions WHERE id = ?1");
  session_row.bind(1, session.id).run();
  transaction.commit();
  return session;
}

}  // namespace clawbot::client
