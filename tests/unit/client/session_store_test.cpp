#include "client/session_store.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>

#include "client/sessions_cmd.h"
#include "common/error.h"

namespace clawbot::client {
namespace {

namespace fs = std::filesystem;

class SessionStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "clawbot-sessions-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
    db_ = dir_ / "nested" / "sessions.db";  // a directory that does not exist yet: the store creates it
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  // Runs raw SQL on the file through a connection of its own, as another program would.
  void raw_sql(const fs::path& file, const char* sql) {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(file.c_str(), &raw), SQLITE_OK);
    char* message = nullptr;
    const int rc = sqlite3_exec(raw, sql, nullptr, nullptr, &message);
    const std::string text = message ? message : "";
    sqlite3_free(message);
    sqlite3_close(raw);
    ASSERT_EQ(rc, SQLITE_OK) << text;
  }

  fs::path dir_;
  fs::path db_;
};

// Runs `what` and returns the StoreError it throws; fails the test when it throws none.
template <typename Body>
StoreError error_from(Body&& what) {
  try {
    what();
  } catch (const StoreError& error) {
    return error;
  }
  ADD_FAILURE() << "no StoreError was thrown";
  return StoreError(StoreErrorKind::io, "");
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

TEST_F(SessionStoreTest, CreateListFind) {
  SessionStore store(db_);
  EXPECT_TRUE(fs::exists(db_));
  EXPECT_TRUE(store.list().empty());

  const auto alpha = store.create("alpha", "You are terse.", "qwen3-80b");
  EXPECT_GT(alpha.id, 0);
  EXPECT_EQ(alpha.name, "alpha");
  const auto beta = store.create("beta");
  // An odd name is only ever data: quotes and SQL in it change nothing.
  const auto odd = store.create("it's \"x\"; DROP TABLE sessions; -- ünïcode");

  const auto found = store.find("alpha");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->id, alpha.id);
  EXPECT_EQ(found->system_prompt, "You are terse.");
  EXPECT_EQ(found->model, "qwen3-80b");
  EXPECT_EQ(found->message_count, 0);
  EXPECT_EQ(found->created_ms, alpha.created_ms);
  ASSERT_TRUE(store.find(std::to_string(beta.id)));  // digits: the id
  EXPECT_EQ(store.find(std::to_string(beta.id))->name, "beta");
  EXPECT_EQ(store.find(odd.name)->id, odd.id);
  EXPECT_FALSE(store.find("gamma"));
  EXPECT_FALSE(store.find("99999"));

  // Most recently updated first: a message in alpha moves it to the top.
  store.append(alpha.id, role_user, "\n  first question, line one  \nline two");
  const auto sessions = store.list();
  ASSERT_EQ(sessions.size(), 3u);
  EXPECT_EQ(sessions[0].name, "alpha");
  EXPECT_EQ(sessions[0].message_count, 1);
  EXPECT_EQ(sessions[0].preview, "first question, line one");
  EXPECT_GT(sessions[0].updated_ms, sessions[1].updated_ms);  // strictly, even within one millisecond
  EXPECT_GT(sessions[1].updated_ms, sessions[2].updated_ms);

  const auto missing = error_from([&] { store.get("alpah"); });
  EXPECT_EQ(missing.kind(), StoreErrorKind::not_found);
  EXPECT_TRUE(contains(missing.what(), db_.string())) << missing.what();
  EXPECT_TRUE(contains(missing.what(), "no session \"alpah\"; did you mean \"alpha\"?")) << missing.what();
}

TEST_F(SessionStoreTest, AppendUpdateDelete) {
  SessionStore store(db_);
  const auto session = store.create("work");
  const auto question = store.append(session.id, role_user, "Why is the sky blue?");
  const auto answer = store.append(session.id, role_assistant, "Rayleigh", state_partial);
  EXPECT_GT(answer, question);

  auto messages = store.messages(session.id);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].role, "user");
  EXPECT_EQ(messages[0].state, "complete");
  EXPECT_EQ(messages[1].content, "Rayleigh");
  EXPECT_EQ(messages[1].state, "partial");
  EXPECT_FALSE(messages[1].stats.tokens);
  EXPECT_GT(messages[1].created_ms, 1'600'000'000'000);  // epoch milliseconds, not seconds

  // Streaming: updated as text arrives, then once more at the end with the figures.
  store.update_message(answer, "Rayleigh scattering", state_partial);
  EXPECT_EQ(store.messages(session.id)[1].content, "Rayleigh scattering");
  store.update_message(answer, "Rayleigh scattering of sunlight.", state_complete, {120.5, 33.25, 7});
  messages = store.messages(session.id);
  EXPECT_EQ(messages[1].content, "Rayleigh scattering of sunlight.");
  EXPECT_EQ(messages[1].state, "complete");
  EXPECT_EQ(messages[1].stats.ttft_ms, 120.5);
  EXPECT_EQ(messages[1].stats.tokens_per_s, 33.25);
  EXPECT_EQ(messages[1].stats.tokens, 7);
  EXPECT_EQ(messages[1].error, "");

  store.update_message(answer, "Rayleigh", state_interrupted, {}, "Ctrl-C");
  messages = store.messages(session.id);
  EXPECT_EQ(messages[1].state, "interrupted");
  EXPECT_EQ(messages[1].error, "Ctrl-C");
  EXPECT_FALSE(messages[1].stats.ttft_ms);

  store.delete_message(answer);  // /retry
  messages = store.messages(session.id);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].id, question);
  EXPECT_EQ(store.get("work").message_count, 1);

  store.set_system_prompt(session.id, "Answer in one line.");
  store.set_model(session.id, "llama-3.2-1b");
  EXPECT_EQ(store.get("work").system_prompt, "Answer in one line.");
  EXPECT_EQ(store.get("work").model, "llama-3.2-1b");

  EXPECT_EQ(error_from([&] { store.append(session.id, "robot", "x"); }).kind(),
            StoreErrorKind::invalid_argument);
  EXPECT_TRUE(contains(error_from([&] { store.append(session.id, role_user, "x", "done"); }).what(),
                       "message state \"done\" is not one of complete, partial, interrupted"));
  EXPECT_EQ(error_from([&] { store.update_message(answer, "x", state_complete); }).kind(),
            StoreErrorKind::not_found);
  EXPECT_EQ(error_from([&] { store.delete_message(answer); }).kind(), StoreErrorKind::not_found);
  const auto no_session = error_from([&] { store.append(424242, role_user, "x"); });
  EXPECT_EQ(no_session.kind(), StoreErrorKind::not_found);
  EXPECT_TRUE(contains(no_session.what(), "no session with id 424242")) << no_session.what();
  EXPECT_EQ(error_from([&] { store.messages(424242); }).kind(), StoreErrorKind::not_found);
  EXPECT_EQ(error_from([&] { store.set_system_prompt(424242, "x"); }).kind(), StoreErrorKind::not_found);
  // A refused write leaves nothing behind.
  EXPECT_EQ(store.messages(session.id).size(), 1u);
}

TEST_F(SessionStoreTest, RenameAndNameRules) {
  SessionStore store(db_);
  const auto first = store.create("first");
  store.create("second");

  store.rename("first", "renamed");
  EXPECT_FALSE(store.find("first"));
  EXPECT_EQ(store.get("renamed").id, first.id);
  store.rename(std::to_string(first.id), "renamed");  // to its own name: nothing to do

  const auto taken = error_from([&] { store.rename("renamed", "second"); });
  EXPECT_EQ(taken.kind(), StoreErrorKind::name_taken);
  EXPECT_TRUE(contains(taken.what(), "cannot rename \"renamed\" to \"second\": that name is already taken"))
      << taken.what();
  EXPECT_EQ(store.get("renamed").id, first.id);  // unchanged
  EXPECT_EQ(error_from([&] { store.create("second"); }).kind(), StoreErrorKind::name_taken);
  EXPECT_EQ(error_from([&] { store.rename("nope", "fresh"); }).kind(), StoreErrorKind::not_found);

  const std::string too_long(101, 'a');
  for (const std::string& bad :
       {std::string(), too_long, std::string("tab\there"), std::string("line\nbreak"), std::string("12345"),
        std::string("bad\xff utf8"), std::string("\xc0\xaf")}) {
    if (!bad.empty()) {  // create("") picks a name itself
      EXPECT_EQ(error_from([&] { store.create(bad); }).kind(), StoreErrorKind::invalid_argument) << bad;
    }
    EXPECT_EQ(error_from([&] { store.rename("second", bad); }).kind(), StoreErrorKind::invalid_argument)
        << bad;
  }
  EXPECT_TRUE(contains(error_from([&] { store.create("tab\there"); }).what(), "\"tab\\x09here\""));
  EXPECT_TRUE(
      contains(error_from([&] { store.create(too_long); }).what(), "101 bytes long; the limit is 100"));
  EXPECT_NO_THROW(store.create(std::string(100, 'b')));
  EXPECT_NO_THROW(store.create("日本語の会話"));
  EXPECT_EQ(store.list().size(), 4u);
}

TEST_F(SessionStoreTest, RemoveDropsTheSessionAndItsMessages) {
  SessionStore store(db_);
  const auto doomed = store.create("doomed");
  const auto kept = store.create("kept");
  store.append(doomed.id, role_user, "a");
  store.append(doomed.id, role_assistant, "b");
  store.append(kept.id, role_user, "c");

  const auto removed = store.remove("doomed");
  EXPECT_EQ(removed.id, doomed.id);
  EXPECT_EQ(removed.message_count, 2);
  EXPECT_FALSE(store.find("doomed"));
  EXPECT_EQ(error_from([&] { store.messages(doomed.id); }).kind(), StoreErrorKind::not_found);
  EXPECT_EQ(store.messages(kept.id).size(), 1u);

  const auto missing = error_from([&] { store.remove("doomed"); });
  EXPECT_EQ(missing.kind(), StoreErrorKind::not_found);
  EXPECT_TRUE(contains(missing.what(), "no session \"doomed\"")) << missing.what();

  // No orphaned rows are left for a later session to inherit.
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* count = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw, "SELECT count(*) FROM messages", -1, &count, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(count), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(count, 0), 1);
  sqlite3_finalize(count);
  sqlite3_close(raw);
}

TEST_F(SessionStoreTest, AutoNamesAreUniqueAndReadable) {
  SessionStore store(db_);
  const std::regex readable(R"(\d{4}-\d{2}-\d{2}-\d{4}(-\d+)?)");
  std::vector<std::string> names;
  for (int k = 0; k < 4; ++k) names.push_back(store.create("").name);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size());
  for (const auto& name : names) EXPECT_TRUE(std::regex_match(name, readable)) << name;
  // Within one minute the next ones count up from -2 (a test crossing a minute boundary starts a new base).
  for (std::size_t k = 1; k < names.size(); ++k) {
    if (names[k].substr(0, 15) == names[0]) {
      EXPECT_EQ(names[k], names[0] + "-" + std::to_string(k + 1));
    }
  }
  // A name a person picked that looks like an automatic one is skipped too.
  store.rename(names[0], "kept");
  store.create(names[0].substr(0, 15) + "-9", "", "");
  EXPECT_EQ(store.list().size(), 5u);
}

TEST_F(SessionStoreTest, ExportFormats) {
  SessionStore store(db_);
  const auto session = store.create("export me", "Be brief.", "qwen3");
  store.append(session.id, role_user, "Hello?");
  const auto answer = store.append(session.id, role_assistant, "Hi, I am", state_partial);
  store.update_message(answer, "Hi, I am", state_partial, {80.0, 25.0, 3}, "connection reset by peer");
  store.append(session.id, role_user, "Again");
  const auto stopped = store.append(session.id, role_assistant, "Sure", state_interrupted);
  store.update_message(stopped, "Sure", state_interrupted, {}, "");
  const auto info = store.get("export me");
  const auto messages = store.messages(session.id);

  const auto json = nlohmann::json::parse(export_json(info, messages).dump());
  EXPECT_EQ(json.at("name"), "export me");
  EXPECT_EQ(json.at("model"), "qwen3");
  EXPECT_EQ(json.at("system_prompt"), "Be brief.");
  EXPECT_TRUE(std::regex_match(json.at("created").get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  const auto& items = json.at("messages");
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[0].at("role"), "user");
  EXPECT_EQ(items[0].at("content"), "Hello?");
  EXPECT_EQ(items[0].at("state"), "complete");
  EXPECT_FALSE(items[0].contains("tokens"));
  EXPECT_EQ(items[1].at("state"), "partial");
  EXPECT_EQ(items[1].at("error"), "connection reset by peer");
  EXPECT_EQ(items[1].at("tokens"), 3);
  EXPECT_EQ(items[1].at("ttft_ms"), 80.0);
  EXPECT_EQ(items[3].at("state"), "interrupted");

  const std::string markdown = export_markdown(info, messages);
  EXPECT_EQ(markdown.rfind("# export me\n", 0), 0u) << markdown;
  EXPECT_TRUE(contains(markdown, "- Model: qwen3\n"));
  EXPECT_TRUE(contains(markdown, "## System prompt\n\nBe brief.\n"));
  EXPECT_TRUE(contains(markdown, "## User\n\nHello?\n"));
  EXPECT_TRUE(contains(markdown, "## Assistant (partial)\n\nHi, I am\n"));
  EXPECT_TRUE(contains(markdown, "> **Partial answer:** cut off before the end: connection reset by peer"));
  EXPECT_TRUE(contains(markdown, "*3 tokens · 25.0 tokens/s · first token after 80 ms*"));
  EXPECT_TRUE(contains(markdown, "## Assistant (interrupted)\n\nSure\n\n> **Interrupted** by the user."));
  EXPECT_EQ(format_utc_iso8601(1'700'000'000'123), "2023-11-14T22:13:20.123Z");
}

TEST_F(SessionStoreTest, SecondConnectionSeesCommitsAtOnce) {
  SessionStore writer(db_);
  SessionStore reader(db_);
  const auto session = writer.create("shared");
  ASSERT_TRUE(reader.find("shared"));
  const auto answer = writer.append(session.id, role_assistant, "partial text", state_partial);
  auto seen = reader.messages(session.id);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].content, "partial text");
  writer.update_message(answer, "partial text, and more", state_partial);
  EXPECT_EQ(reader.messages(session.id)[0].content, "partial text, and more");
  // The reader writes too; the writer sees it.
  reader.append(session.id, role_user, "from the other connection");
  EXPECT_EQ(writer.messages(session.id).size(), 2u);
  EXPECT_TRUE(fs::exists(db_.string() + "-wal"));  // WAL mode
}

TEST_F(SessionStoreTest, RowsSurviveSigkillRightAfterAppend) {
  std::int64_t session_id = 0;
  {
    SessionStore store(db_);
    session_id = store.create("crash").id;
  }  // closed: the child must not share an SQLite connection across fork()
  const pid_t child = fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    // The child: what chat does while an answer streams, then dies with no chance to clean up.
    SessionStore store(db_);
    store.append(session_id, role_user, "question");
    const auto answer = store.append(session_id, role_assistant, "first tokens", state_partial);
    store.update_message(answer, "first tokens and a few more", state_partial);
    store.append(session_id, role_user, "last one");
    kill(getpid(), SIGKILL);
    _exit(3);  // not reached
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  SessionStore store(db_);
  const auto messages = store.messages(session_id);
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[0].content, "question");
  EXPECT_EQ(messages[1].content, "first tokens and a few more");
  EXPECT_EQ(messages[1].state, "partial");
  EXPECT_EQ(messages[2].content, "last one");
}

// The fault seam: SQLite's unix VFS lets a test replace its system calls (as SQLite's own test_syscall.c
// does). While a DiskFull lives, every write fails with ENOSPC.
std::atomic<bool> disk_full{false};
ssize_t full_write(int fd, const void* data, size_t size) {
  if (disk_full) return errno = ENOSPC, -1;
  return ::write(fd, data, size);
}
ssize_t full_pwrite(int fd, const void* data, size_t size, off_t offset) {
  if (disk_full) return errno = ENOSPC, -1;
  return ::pwrite(fd, data, size, offset);
}
ssize_t full_pwrite64(int fd, const void* data, size_t size, off64_t offset) {
  if (disk_full) return errno = ENOSPC, -1;
  return ::pwrite64(fd, data, size, offset);
}

class DiskFull {
 public:
  DiskFull() {
    vfs_ = sqlite3_vfs_find(nullptr);
    EXPECT_EQ(vfs_->xSetSystemCall(vfs_, "write", reinterpret_cast<sqlite3_syscall_ptr>(full_write)),
              SQLITE_OK);
    EXPECT_EQ(vfs_->xSetSystemCall(vfs_, "pwrite", reinterpret_cast<sqlite3_syscall_ptr>(full_pwrite)),
              SQLITE_OK);
    // pwrite64 exists only in some builds of SQLite; NOTFOUND means this one uses pwrite.
    const int rc =
        vfs_->xSetSystemCall(vfs_, "pwrite64", reinterpret_cast<sqlite3_syscall_ptr>(full_pwrite64));
    EXPECT_TRUE(rc == SQLITE_OK || rc == SQLITE_NOTFOUND) << rc;
    disk_full = true;
  }
  ~DiskFull() {
    disk_full = false;
    for (const char* call : {"write", "pwrite", "pwrite64"}) vfs_->xSetSystemCall(vfs_, call, nullptr);
  }

 private:
  sqlite3_vfs* vfs_;
};

TEST_F(SessionStoreTest, FullDiskFailsTheWriteAndKeepsEverythingBefore) {
  SessionStore store(db_);
  const auto session = store.create("full");
  store.append(session.id, role_user, "stored before the disk filled");
  const std::string big_answer(256 * 1024, 'x');  // more than the page cache keeps: pages must be written
  {
    DiskFull full;
    const auto error = error_from([&] { store.append(session.id, role_assistant, big_answer); });
    EXPECT_EQ(error.kind(), StoreErrorKind::io) << error.what();
    EXPECT_TRUE(contains(error.what(), db_.string())) << error.what();
    EXPECT_TRUE(contains(error.what(), "disk")) << error.what();
    std::cerr << "full disk: " << error.what() << "\n";
  }
  // The failed write left nothing half-done, on this connection and on a fresh one, and writing works again.
  EXPECT_EQ(store.messages(session.id).size(), 1u);
  SessionStore reopened(db_);
  const auto messages = reopened.messages(session.id);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].content, "stored before the disk filled");
  reopened.append(session.id, role_assistant, big_answer);
  EXPECT_EQ(store.messages(session.id).at(1).content.size(), big_answer.size());
}

TEST_F(SessionStoreTest, FileThatIsNotADatabaseIsRefused) {
  fs::create_directories(db_.parent_path());
  {
    std::ofstream text(db_);
    for (int line = 0; line < 200; ++line) text << "these are my notes, not a database\n";
  }
  const auto error = error_from([&] { SessionStore store(db_); });
  EXPECT_EQ(error.kind(), StoreErrorKind::unusable);
  EXPECT_TRUE(contains(error.what(), db_.string())) << error.what();
  EXPECT_TRUE(contains(error.what(), "file is not a database")) << error.what();
  // The file is left as it was.
  EXPECT_EQ(fs::file_size(db_), 200u * 35u);
}

TEST_F(SessionStoreTest, OtherSqliteFileIsRefused) {
  fs::create_directories(db_.parent_path());
  raw_sql(db_, "CREATE TABLE recipes (name TEXT)");
  const auto error = error_from([&] { SessionStore store(db_); });
  EXPECT_EQ(error.kind(), StoreErrorKind::unusable);
  EXPECT_TRUE(contains(error.what(), "not a clawbot session database")) << error.what();
}

TEST_F(SessionStoreTest, NewerSchemaIsRefused) {
  { SessionStore(db_).create("made by a future clawbot"); }
  raw_sql(db_, "PRAGMA user_version = 7");
  const auto error = error_from([&] { SessionStore store(db_); });
  EXPECT_EQ(error.kind(), StoreErrorKind::unusable);
  EXPECT_TRUE(contains(error.what(), db_.string())) << error.what();
  EXPECT_TRUE(contains(error.what(), "schema version 7, newer than this clawbot knows (2)")) << error.what();
}

// Issue 17: an answer stopped at max_tokens is stored as "length" (not "complete") and exported so; a
// version-1 database (whose CHECK knew no "length") is migrated with its messages kept.
TEST_F(SessionStoreTest, LengthStateAndMigrationFromVersionOne) {
  fs::create_directories(db_.parent_path());
  raw_sql(db_, R"sql(
CREATE TABLE sessions (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, model TEXT NOT NULL DEFAULT '',
  system_prompt TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE messages (id INTEGER PRIMARY KEY,
  session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')), content TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('complete', 'partial', 'interrupted')), created_ms INTEGER NOT NULL,
  ttft_ms REAL, tokens_per_s REAL, tokens INTEGER, error TEXT NOT NULL DEFAULT '');
CREATE INDEX messages_by_session ON messages(session_id, id);
CREATE INDEX sessions_by_update ON sessions(updated_ms);
INSERT INTO sessions VALUES (1, 'old', 'm', '', 1000, 2000);
INSERT INTO messages VALUES (1, 1, 'user', 'hello', 'complete', 1000, NULL, NULL, NULL, '');
INSERT INTO messages VALUES (2, 1, 'assistant', 'hi th', 'partial', 1001, 12.5, NULL, 3, 'dropped');
PRAGMA user_version = 1;
)sql");
  SessionStore store(db_);
  const SessionInfo old = store.get("old");
  auto messages = store.messages(old.id);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[1].content, "hi th");
  EXPECT_EQ(messages[1].state, state_partial);
  EXPECT_EQ(messages[1].error, "dropped");
  EXPECT_EQ(*messages[1].stats.tokens, 3);

  const std::int64_t id = store.append(old.id, role_assistant, "Once upon", state_partial);
  store.update_message(id, "Once upon a", state_length);
  messages = store.messages(old.id);
  EXPECT_EQ(messages.back().state, state_length);
  const std::string md = export_markdown(store.get("old"), messages);
  EXPECT_TRUE(contains(md, "## Assistant (length)")) << md;
  EXPECT_TRUE(contains(md, "max_tokens")) << md;
  EXPECT_EQ(export_json(store.get("old"), messages)["messages"][2]["state"], "length");
  // Deleting a session still deletes its messages (the copied table kept its foreign key).
  store.remove("old");
  EXPECT_TRUE(store.list().empty());
  SessionStore again(db_);  // and a second open finds version 2 and leaves it alone
  EXPECT_TRUE(again.list().empty());
}

TEST_F(SessionStoreTest, UnwritableDirectoryIsNamed) {
  // /proc refuses new directories even to root.
  const fs::path impossible = "/proc/clawbot-sessions-test/sessions.db";
  const auto error = error_from([&] { SessionStore store(impossible); });
  EXPECT_TRUE(error.kind() == StoreErrorKind::unusable || error.kind() == StoreErrorKind::read_only);
  EXPECT_TRUE(contains(error.what(), "cannot create the directory /proc/clawbot-sessions-test"))
      << error.what();
}

// Opens the store in a child process that is not root (root writes read-only files anyway) and returns the
// kind and message of the error it got, or "no error".
std::pair<StoreErrorKind, std::string> open_as_unprivileged_user(const fs::path& db) {
  int channel[2];
  if (pipe(channel) != 0) return {StoreErrorKind::io, "pipe failed"};
  const pid_t child = fork();
  if (child == 0) {
    close(channel[0]);
    std::string report = "no error";
    int kind = -1;
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) {
      report = "cannot drop root";  // 65534: nobody
    } else {
      try {
        SessionStore store(db);
      } catch (const StoreError& error) {
        kind = static_cast<int>(error.kind());
        report = error.what();
      }
    }
    report = std::to_string(kind) + " " + report;
    [[maybe_unused]] const auto written = write(channel[1], report.data(), report.size());
    _exit(0);
  }
  close(channel[1]);
  std::string report;
  char buffer[512];
  for (ssize_t got; (got = read(channel[0], buffer, sizeof buffer)) > 0;) report.append(buffer, got);
  close(channel[0]);
  int status = 0;
  waitpid(child, &status, 0);
  const auto space = report.find(' ');
  if (space == std::string::npos) return {StoreErrorKind::io, "the child reported nothing"};
  return {static_cast<StoreErrorKind>(std::stoi(report.substr(0, space))), report.substr(space + 1)};
}

TEST_F(SessionStoreTest, ReadOnlyFileAndDirectoryAreNamed) {
  SessionStore(db_).create("x");  // the last connection to close removes the -wal and -shm files
  ASSERT_FALSE(fs::exists(db_.string() + "-wal"));
  fs::permissions(dir_, fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
  fs::permissions(db_.parent_path(), fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);

  fs::permissions(db_, fs::perms::owner_read | fs::perms::others_read);
  const auto [file_kind, file_message] = open_as_unprivileged_user(db_);
  EXPECT_EQ(file_kind, StoreErrorKind::read_only) << file_message;
  EXPECT_TRUE(contains(file_message, db_.string())) << file_message;
  EXPECT_TRUE(contains(file_message, "read-only")) << file_message;

  // A writable file in a directory that is not: WAL needs to create its -wal and -shm files beside it.
  fs::permissions(db_, fs::perms::all);
  const auto [dir_kind, dir_message] = open_as_unprivileged_user(db_);
  EXPECT_TRUE(dir_kind == StoreErrorKind::read_only || dir_kind == StoreErrorKind::unusable) << dir_message;
  EXPECT_TRUE(contains(dir_message, db_.string())) << dir_message;
  std::cerr << "read-only file: " << file_message << "\nread-only directory: " << dir_message << "\n";
}

TEST(SessionStoreDefaultPath, FollowsXdgDataHome) {
  const char* saved_xdg = std::getenv("XDG_DATA_HOME");
  const std::string saved = saved_xdg ? saved_xdg : "";
  setenv("XDG_DATA_HOME", "/srv/data", 1);
  EXPECT_EQ(SessionStore::default_path(), fs::path("/srv/data/clawbot/sessions.db"));
  setenv("XDG_DATA_HOME", "relative/ignored", 1);  // the XDG spec: a relative path is invalid
  const char* home = std::getenv("HOME");
  ASSERT_NE(home, nullptr);
  EXPECT_EQ(SessionStore::default_path(), fs::path(home) / ".local/share/clawbot/sessions.db");
  if (saved_xdg) {
    setenv("XDG_DATA_HOME", saved.c_str(), 1);
  } else {
    unsetenv("XDG_DATA_HOME");
  }
}

// `clawbot sessions` through its entry point, with stdout and stderr captured.
struct CommandResult {
  int status;
  std::string out;
  std::string err;
};

CommandResult run_command(const SessionsOptions& options) {
  std::ostringstream out, err;
  auto* saved_out = std::cout.rdbuf(out.rdbuf());
  auto* saved_err = std::cerr.rdbuf(err.rdbuf());
  const int status = run_sessions(options);
  std::cout.rdbuf(saved_out);
  std::cerr.rdbuf(saved_err);
  return {status, out.str(), err.str()};
}

TEST_F(SessionStoreTest, SessionsCommand) {
  {
    SessionStore store(db_);
    const auto session = store.create("trip planning", "", "qwen3");
    store.append(session.id, role_user,
                 "Plan a three-day trip to Kyoto with temples, food markets and a day hike");
    store.append(session.id, role_assistant, "Day one", state_partial);
    store.create("empty one");
  }
  SessionsOptions options;
  options.db = db_.string();
  options.action = "list";
  auto listed = run_command(options);
  EXPECT_EQ(listed.status, 0) << listed.err;
  EXPECT_TRUE(contains(listed.out, "NAME")) << listed.out;
  EXPECT_TRUE(contains(listed.out, "trip planning         2  ")) << listed.out;
  EXPECT_TRUE(contains(listed.out, "Plan a three-day trip to Kyoto with temples, fo…")) << listed.out;

  options.json = true;
  listed = run_command(options);
  const auto array = nlohmann::json::parse(listed.out);
  ASSERT_EQ(array.size(), 2u);
  EXPECT_EQ(array[1].at("name"), "trip planning");
  EXPECT_EQ(array[1].at("messages"), 2);

  options.action = "show";
  options.name = "trip planning";
  const auto shown = run_command(options);
  EXPECT_EQ(shown.status, 0) << shown.err;
  EXPECT_TRUE(contains(shown.out, "Day one\n[partial]\n")) << shown.out;

  options.action = "export";
  options.format = "json";
  options.output = (dir_ / "trip.json").string();
  EXPECT_EQ(run_command(options).status, 0);
  std::ifstream exported(options.output);
  EXPECT_EQ(nlohmann::json::parse(exported).at("messages").size(), 2u);

  options.output.clear();
  options.format = "txt";
  const auto bad_format = run_command(options);
  EXPECT_EQ(bad_format.status, 1);
  EXPECT_TRUE(contains(bad_format.err, "unknown export format \"txt\": use md or json")) << bad_format.err;

  options.action = "rm";
  options.name = "trip plans";
  const auto unknown = run_command(options);
  EXPECT_EQ(unknown.status, 1);
  EXPECT_TRUE(contains(unknown.err, "no session \"trip plans\"; did you mean \"trip planning\"?"))
      << unknown.err;
  options.name = "trip planning";
  EXPECT_EQ(run_command(options).status, 0);
  EXPECT_FALSE(SessionStore(db_).find("trip planning"));

  options.action = "rename";
  options.name = "empty one";
  options.new_name = "still empty";
  EXPECT_EQ(run_command(options).status, 0);
  EXPECT_TRUE(SessionStore(db_).find("still empty"));
}

// `sessions import` takes back what `sessions export --format json` wrote (the web chat writes the same
// shape): the name, model, system prompt, every message with its state, figures and error.
TEST_F(SessionStoreTest, ImportTakesBackAnExport) {
  {
    SessionStore store(db_);
    const auto session = store.create("round trip", "Be brief.", "qwen3");
    store.append(session.id, role_user, "Hello?");
    const auto answer = store.append(session.id, role_assistant, "Hi, I am", state_partial);
    store.update_message(answer, "Hi, I am", state_partial, {80.0, 25.0, 3}, "connection reset by peer");
    store.append(session.id, role_user, "Again");
    store.append(session.id, role_assistant, "Sure", state_length);
  }
  SessionsOptions options;
  options.db = db_.string();
  options.action = "export";
  options.format = "json";
  options.name = "round trip";
  options.output = (dir_ / "round.json").string();
  ASSERT_EQ(run_command(options).status, 0);

  options = SessionsOptions{};
  options.db = db_.string();
  options.action = "import";
  options.file = (dir_ / "round.json").string();
  const auto same_name = run_command(options);
  EXPECT_EQ(same_name.status, 1);
  EXPECT_TRUE(contains(same_name.err,
                       "a session named \"round trip\" exists already: choose another name with --name"))
      << same_name.err;
  options.name = "round trip 2";
  const auto imported = run_command(options);
  ASSERT_EQ(imported.status, 0) << imported.err;
  EXPECT_EQ(imported.out, "imported \"round trip 2\" (4 messages)\n");

  SessionStore store(db_);
  const auto original = store.get("round trip");
  const auto copy = store.get("round trip 2");
  auto a = export_json(original, store.messages(original.id));
  auto b = export_json(copy, store.messages(copy.id));
  for (auto* j : {&a, &b}) {
    j->erase("name");
    j->erase("created");
    j->erase("updated");
    for (auto& m : j->at("messages")) m.erase("created");
  }
  EXPECT_EQ(a, b);
}

TEST(SessionImport, RefusesWhatIsNotASessionNamingTheMember) {
  const auto why = [](const nlohmann::json& exported) {
    try {
      import_json(exported);
    } catch (const ClawbotError& e) {
      EXPECT_EQ(e.error().kind, ErrorKind::invalid_request);
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  const nlohmann::json good = {
      {"format", "clawbot-session"}, {"version", 1}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  EXPECT_EQ(why(good), "(accepted)");
  EXPECT_EQ(import_json(good).messages.at(0).state, "complete");
  auto other = good;
  other["format"] = "chatgpt";
  EXPECT_TRUE(contains(why(other), "not a clawbot session")) << why(other);
  other = good;
  other["version"] = 2;
  EXPECT_TRUE(contains(why(other), "version 2 is not one this clawbot reads")) << why(other);
  other = good;
  other["messages"][0]["role"] = "robot";
  EXPECT_TRUE(contains(why(other), "messages[0].role must be system, user or assistant")) << why(other);
  other = good;
  other["messages"][0]["state"] = "done";
  EXPECT_TRUE(contains(why(other), "messages[0].state must be complete, partial, interrupted or length"));
  other = good;
  other["messages"][0]["tokens"] = "many";
  EXPECT_TRUE(contains(why(other), "messages[0].tokens must be a number")) << why(other);
  other = good;
  other["messages"][0].erase("content");
  EXPECT_TRUE(contains(why(other), "messages[0].content is missing")) << why(other);
  EXPECT_TRUE(contains(why(nlohmann::json::array()), "a session export is a JSON object"));
}

}  // namespace
}  // namespace clawbot::client
