// The audit log: written from several threads, re-opened, and tampered with in copies that verify must
// catch, each problem named by its line and seq.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../support/temp_dir.h"
#include "common/sqlite_db.h"
#include "gateway/door/audit_format.h"
#include "gateway/door/door.h"
#include "gateway/door/keys_db.h"

namespace door = clawbot::gateway::door;
namespace fs = std::filesystem;
using clawbot::testing::TempDir;
using Kind = door::AuditProblem::Kind;

namespace {

door::AuditRecord record(int i) {
  door::AuditRecord r;
  r.time = std::chrono::system_clock::time_point{} + std::chrono::milliseconds(1'750'000'000'000LL + i);
  r.key_id = "0123456789ab";
  r.client = "192.168.1.5";
  r.route = "/v1/chat/completions";
  r.model = "qwen";
  r.upstream = "node-" + std::to_string(i % 3);
  r.status = 200;
  r.tokens_in = 10 + i;
  r.tokens_out = 20;
  r.latency_ms = 12.3456;
  return r;
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void write_lines(const fs::path& path, const std::vector<std::string>& lines) {
  std::ofstream out(path, std::ios::trunc);
  for (const auto& line : lines) out << line << '\n';
}

std::string describe(const door::VerifyReport& report) {
  std::string text = report.summary();
  for (const auto& p : report.problems) text += "\n  " + p.message;
  return text;
}

// A log of `n` records, written and closed (so the anchor is at seq n).
class AuditTamper : public ::testing::Test {
 protected:
  void SetUp() override {
    door::AuditLog log(log_path, db_path);
    for (int i = 1; i <= 10; ++i) log.append(record(i));
  }
  door::VerifyReport verify_with(const std::vector<std::string>& lines) {
    write_lines(copy_path, lines);
    return door::verify_audit_log(copy_path, db_path);
  }

  TempDir dir{"clawbot-audit-"};
  fs::path log_path = dir / "audit.log";
  fs::path copy_path = dir / "copy.log";
  fs::path db_path = dir / "gateway.db";
};

// Whether this process holds a POSIX (fcntl) lock on the file, as /proc/locks lists them:
// "1: POSIX  ADVISORY  READ 4711 fd:01:123456 1073741826 1073742335".
bool process_holds_lock(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return false;
  std::ifstream locks("/proc/locks");
  for (std::string line; std::getline(locks, line);) {
    std::istringstream fields(line);
    std::string number, kind, mode, access, pid, device;
    fields >> number >> kind;
    if (kind == "->") fields >> kind;  // a waiter
    fields >> mode >> access >> pid >> device;
    const auto inode = device.substr(device.rfind(':') + 1);
    if (kind == "POSIX" && pid == std::to_string(::getpid()) && inode == std::to_string(st.st_ino))
      return true;
  }
  return false;
}

}  // namespace

// Issue 16 item 8: opening the audit log beside a KeyVerifier (as the gateway does) once opened and closed
// the database file, which dropped the SQLite lock the process held on it; the next SQLite client to close
// the file then deleted the gateway's -wal and -shm, and every later anchor update was lost.
TEST(GatewayAuditLog, TheDatabaseStaysLockedWhileTheGatewayHasItOpen) {
  TempDir dir("clawbot-audit-");
  door::KeyStore(dir / "gateway.db").create("someone");
  door::KeyVerifier keys(dir / "gateway.db");
  ASSERT_TRUE(process_holds_lock(dir / "gateway.db")) << "SQLite holds no lock in WAL mode: test is moot";
  door::AuditLog log(dir / "audit.log", dir / "gateway.db");
  log.append(record(1));
  ASSERT_TRUE(log.flush());
  EXPECT_TRUE(process_holds_lock(dir / "gateway.db"))
      << "the process lost its lock on the database: another SQLite client would delete its -wal";
  keys.refresh();
  EXPECT_EQ(keys.active_keys(), 1u);
}

TEST(GatewayAuditLog, ManyThreadsOneIntactChain) {
  TempDir dir("clawbot-audit-");
  constexpr int threads = 4, per_thread = 250;
  {
    door::AuditLog log(dir / "audit.log", dir / "gateway.db");
    std::vector<std::thread> writers;
    for (int t = 0; t < threads; ++t)
      writers.emplace_back([&log, t] {
        for (int i = 0; i < per_thread; ++i) log.append(record(t * per_thread + i));
      });
    for (auto& w : writers) w.join();
    EXPECT_TRUE(log.flush());
    EXPECT_EQ(read_lines(dir / "audit.log").size(),
              std::size_t{threads * per_thread});  // all on disk at flush
    EXPECT_EQ(log.dropped(), 0u);
    EXPECT_EQ(log.last_error(), "");
  }
  const auto report = door::verify_audit_log(dir / "audit.log", dir / "gateway.db");
  EXPECT_TRUE(report.intact()) << describe(report);
  EXPECT_EQ(report.summary(), "1000 records, chain intact");
  EXPECT_TRUE(report.anchored);
  EXPECT_EQ(report.first_seq, 1);
  EXPECT_EQ(report.last_seq, 1000);
  std::int64_t expected = 1;
  for (const auto& line : read_lines(dir / "audit.log")) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j.at("seq").get<std::int64_t>(), expected++);
    EXPECT_FALSE(j.contains("prompt"));
    EXPECT_EQ(j.at("time").get<std::string>().size(), 24u);  // 2025-06-15T15:06:40.123Z
    EXPECT_EQ(j.at("latency_ms").get<double>(), 12.346);
  }
}

TEST(GatewayAuditLog, RecordFieldsAndPromptOnlyWhenGiven) {
  TempDir dir("clawbot-audit-");
  {
    door::AuditLog log(dir / "audit.log", dir / "gateway.db");
    auto r = record(1);
    r.time = std::chrono::system_clock::time_point{} + std::chrono::milliseconds(1'700'000'000'123LL);
    log.append(r);
    r.prompt = "what is 2+2?";
    r.status = 429;
    log.append(r);
  }
  const auto lines = read_lines(dir / "audit.log");
  ASSERT_EQ(lines.size(), 2u);
  const auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first.at("time"), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(first.at("key_id"), "0123456789ab");
  EXPECT_EQ(first.at("client"), "192.168.1.5");
  EXPECT_EQ(first.at("route"), "/v1/chat/completions");
  EXPECT_EQ(first.at("upstream"), "node-1");
  EXPECT_EQ(first.at("tokens_in"), 11);
  EXPECT_EQ(first.at("prev"), std::string(64, '0'));  // genesis
  EXPECT_FALSE(first.contains("prompt"));
  const auto second = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(second.at("prompt"), "what is 2+2?");
  EXPECT_EQ(second.at("status"), 429);
  EXPECT_EQ(second.at("prev"), first.at("hash"));
}

TEST(GatewayAuditLog, ReopeningContinuesTheChain) {
  TempDir dir("clawbot-audit-");
  {
    door::AuditLog log(dir / "audit.log", dir / "gateway.db");
    for (int i = 0; i < 3; ++i) log.append(record(i));
  }
  {
    door::AuditLog log(dir / "audit.log", dir / "gateway.db");
    EXPECT_EQ(log.opening_warning(), "");
    for (int i = 0; i < 2; ++i) log.append(record(i));
  }
  const auto report = door::verify_audit_log(dir / "audit.log", dir / "gateway.db");
  EXPECT_TRUE(report.intact()) << describe(report);
  EXPECT_EQ(report.records, 5u);
  EXPECT_EQ(report.last_seq, 5);
}

TEST(GatewayAuditLog, ACutLastLineStaysOneUnparsableLine) {
  TempDir dir("clawbot-audit-");
  {
    door::AuditLog log(dir / "audit.log", dir / "gateway.db");
    for (int i = 0; i < 3; ++i) log.append(record(i));
  }
  {
    std::ofstream out(dir / "audit.log", std::ios::app);
    out << R"({"seq":4,"time":"2025-)";  // as a crash in the middle of a write leaves it
  }
  {
    door::AuditLog log(dir / "audit.log", dir / "gateway.db");
    log.append(record(9));
  }
  const auto report = door::verify_audit_log(dir / "audit.log", dir / "gateway.db");
  ASSERT_EQ(report.problems.size(), 1u) << describe(report);
  EXPECT_EQ(report.problems[0].kind, Kind::unparsable);
  EXPECT_EQ(report.problems[0].line, 4u);
  EXPECT_EQ(report.last_seq, 4);  // the chain went on from seq 3
}

TEST(GatewayAuditLog, ALogCutWhileTheGatewayWasDownKeepsItsGap) {
  TempDir dir("clawbot-audit-");
  {
    door::AuditLog log(dir / "audit.log", dir / "gateway.db");
    for (int i = 0; i < 5; ++i) log.append(record(i));
  }
  auto lines = read_lines(dir / "audit.log");
  lines.resize(3);
  write_lines(dir / "audit.log", lines);
  {
    door::AuditLog log(dir / "audit.log", dir / "gateway.db");
    EXPECT_NE(log.opening_warning().find("anchor is at seq 5"), std::string::npos) << log.opening_warning();
    log.append(record(6));
  }
  const auto report = door::verify_audit_log(dir / "audit.log", dir / "gateway.db");
  ASSERT_EQ(report.problems.size(), 1u) << describe(report);
  EXPECT_EQ(report.problems[0].kind, Kind::deleted);
  EXPECT_EQ(report.problems[0].message, "records 4..5 deleted between line 3 and line 4");
}

TEST(GatewayAuditLog, VerifyNeedsTheSecretTheLogWasWrittenWith) {
  TempDir dir("clawbot-audit-");
  {
    door::AuditLog log(dir / "audit.log", dir / "gateway.db");
    log.append(record(1));
  }
  EXPECT_TRUE(door::verify_audit_log(dir / "audit.log", dir / "gateway.db").intact());
  { door::KeyStore other(dir / "other.db"); }  // another database, with a secret of its own
  EXPECT_FALSE(door::verify_audit_log(dir / "audit.log", dir / "other.db").intact());
  EXPECT_THROW(door::verify_audit_log(dir / "audit.log", dir / "gateway.db", dir / "no.secret"),
               std::runtime_error);
  EXPECT_THROW(door::verify_audit_log(dir / "audit.log", dir / "missing.db"), std::runtime_error);
  EXPECT_THROW(door::verify_audit_log(dir / "missing.log", dir / "gateway.db"), std::runtime_error);
}

TEST_F(AuditTamper, CleanCopyIsIntact) {
  const auto report = verify_with(read_lines(log_path));
  EXPECT_TRUE(report.intact()) << describe(report);
  EXPECT_EQ(report.summary(), "10 records, chain intact");
}

TEST_F(AuditTamper, EditedField) {
  auto lines = read_lines(log_path);
  const auto at = lines[3].find("\"status\":200");
  ASSERT_NE(at, std::string::npos);
  lines[3].replace(at, 12, "\"status\":500");
  const auto report = verify_with(lines);
  ASSERT_EQ(report.problems.size(), 1u) << describe(report);
  EXPECT_EQ(report.problems[0].kind, Kind::edited);
  EXPECT_EQ(report.problems[0].line, 4u);
  EXPECT_EQ(report.problems[0].seq_first, 4);
  EXPECT_EQ(report.problems[0].message, "line 4 (seq 4): edited: its content does not match its hash");
}

TEST_F(AuditTamper, EditedFieldAndHash) {
  auto lines = read_lines(log_path);
  auto j = nlohmann::ordered_json::parse(lines[5]);
  j["client"] = "10.6.6.6";
  j["hash"] = std::string(64, 'f');
  lines[5] = j.dump();
  const auto report = verify_with(lines);
  ASSERT_EQ(report.problems.size(), 1u) << describe(report);
  EXPECT_EQ(report.problems[0].kind, Kind::edited);
  EXPECT_EQ(report.problems[0].line, 6u);
  EXPECT_NE(report.problems[0].message.find("hash was changed too"), std::string::npos);
}

TEST_F(AuditTamper, InsertedForgedLine) {
  auto lines = read_lines(log_path);
  // A forger copies line 5's hash as prev and the next seq, but cannot compute the HMAC.
  auto j = nlohmann::ordered_json::parse(lines[5]);  // seq 6
  j["route"] = "/v1/forged";
  j["hash"] = std::string(64, 'a');
  lines.insert(lines.begin() + 5, j.dump());
  const auto report = verify_with(lines);
  ASSERT_EQ(report.problems.size(), 1u) << describe(report);
  EXPECT_EQ(report.problems[0].kind, Kind::inserted);
  EXPECT_EQ(report.problems[0].line, 6u);
  EXPECT_EQ(report.problems[0].seq_first, 6);
}

TEST_F(AuditTamper, InsertedDuplicateOfAValidLine) {
  auto lines = read_lines(log_path);
  lines.insert(lines.begin() + 7, lines[2]);  // line 8 is now a copy of line 3
  const auto report = verify_with(lines);
  ASSERT_EQ(report.problems.size(), 1u) << describe(report);
  EXPECT_EQ(report.problems[0].kind, Kind::inserted);
  EXPECT_EQ(report.problems[0].line, 8u);
  EXPECT_EQ(report.problems[0].message, "line 8 (seq 3): inserted: a copy of line 3");
}

TEST_F(AuditTamper, ReplayedLastLine) {
  auto lines = read_lines(log_path);
  lines.push_back(lines[9]);
  const auto report = verify_with(lines);
  ASSERT_EQ(report.problems.size(), 1u) << describe(report);
  EXPECT_EQ(report.problems[0].kind, Kind::inserted);
  EXPECT_EQ(report.problems[0].message, "line 11 (seq 10): inserted: a copy of line 10");
}

TEST_F(AuditTamper, DeletedOneLine) {
  auto lines = read_lines(log_path);
  lines.erase(lines.begin() + 4);  // seq 5
  const auto report = verify_with(lines);
  ASSERT_EQ(report.problems.size(), 1u) << describe(report);
  EXPECT_EQ(report.problems[0].kind, Kind::deleted);
  EXPECT_EQ(report.problems[0].seq_first, 5);
  EXPECT_EQ(report.problems[0].seq_last, 5);
  EXPECT_EQ(report.problems[0].message, "record 5 deleted between line 4 and line 5");
}

TEST_F(AuditTamper, DeletedSeveralLines) {
  auto lines = read_lines(log_path);
  lines.erase(lines.begin() + 4, lines.begin() + 7);  // seq 5..7
  const auto report = verify_with(lines);
  ASSERT_EQ(report.problems.size(), 1u) << describe(report);
  EXPECT_EQ(report.problems[0].message, "records 5..7 deleted between line 4 and line 5");
}

TEST_F(AuditTamper, DeletedFirstLines) {
  auto lines = read_lines(log_path);
  lines.erase(lines.begin(), lines.begin() + 2);
  const auto report = verify_with(lines);
  ASSERT_EQ(report.problems.size(), 1u) << describe(report);
  EXPECT_EQ(report.problems[0].message, "records 1..2 deleted before line 1");
}

TEST_F(AuditTamper, TruncatedTail) {
  auto lines = read_lines(log_path);
  lines.resize(8);
  const auto report = verify_with(lines);
  ASSERT_EQ(report.problems.size(), 1u) << describe(report);
  EXPECT_EQ(report.problems[0].kind, Kind::truncated);
  EXPECT_EQ(report.problems[0].seq_first, 9);
  EXPECT_EQ(report.problems[0].seq_last, 10);
  EXPECT_EQ(report.problems[0].message.rfind("records 9..10 missing at the end", 0), 0u)
      << report.problems[0].message;
  // An empty log: everything is missing.
  const auto empty = verify_with({});
  ASSERT_EQ(empty.problems.size(), 1u) << describe(empty);
  EXPECT_EQ(empty.problems[0].kind, Kind::truncated);
  EXPECT_EQ(empty.problems[0].seq_first, 1);
}

TEST_F(AuditTamper, GarbageLine) {
  auto lines = read_lines(log_path);
  lines.insert(lines.begin() + 2, "this is not json");
  lines.insert(lines.begin() + 6, R"({"seq":5})");
  const auto report = verify_with(lines);
  ASSERT_EQ(report.problems.size(), 2u) << describe(report);
  EXPECT_EQ(report.problems[0].kind, Kind::unparsable);
  EXPECT_EQ(report.problems[0].line, 3u);
  EXPECT_EQ(report.problems[1].kind, Kind::unparsable);
  EXPECT_EQ(report.problems[1].line, 7u);
  EXPECT_EQ(report.summary(), "2 problems in 10 records");
}

TEST_F(AuditTamper, SeveralProblemsInOneLog) {
  auto lines = read_lines(log_path);
  lines[1].replace(lines[1].find("\"tokens_out\":20"), 15, "\"tokens_out\":21");  // edit seq 2
  lines.erase(lines.begin() + 5);                                                 // delete seq 6
  lines.resize(8);                                                                // cut seq 10
  const auto report = verify_with(lines);
  ASSERT_EQ(report.problems.size(), 3u) << describe(report);
  EXPECT_EQ(report.problems[0].message, "line 2 (seq 2): edited: its content does not match its hash");
  EXPECT_EQ(report.problems[1].message, "record 6 deleted between line 5 and line 6");
  EXPECT_EQ(report.problems[2].kind, Kind::truncated);
  EXPECT_EQ(report.problems[2].seq_first, 10);
}

// --- issue 16 item 9: the anchor is MACed; the head is witnessed outside the machine ---

namespace {

// What root, holding the secret, can do: change a record and compute the chain again from there on.
std::vector<std::string> rewrite_chain(const std::vector<std::string>& lines, const fs::path& secret_file,
                                       std::size_t edit_index) {
  std::ifstream in(secret_file);
  std::string hex;
  in >> hex;
  const std::string secret = *door::detail::from_hex(hex);
  std::vector<std::string> out;
  std::string prev = door::detail::genesis_hash;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    auto j = nlohmann::ordered_json::parse(lines[i]);
    if (i == edit_index) j["status"] = 500;
    j["prev"] = prev;
    j.erase("hash");
    std::string body = j.dump();
    body.pop_back();
    prev = door::detail::audit_mac(secret, body);
    out.push_back(
        door::detail::audit_line(body, prev).substr(0, door::detail::audit_line(body, prev).size() - 1));
  }
  return out;
}

}  // namespace

TEST_F(AuditTamper, AnAnchorEditedInTheDatabaseIsReported) {
  {
    clawbot::sqlite::Database db(db_path);
    db.exec("UPDATE audit_anchor SET seq = 7");  // to hide records 8..10 cut from the log
  }
  auto lines = read_lines(log_path);
  lines.resize(7);
  const auto report = verify_with(lines);
  ASSERT_EQ(report.problems.size(), 1u) << describe(report);
  EXPECT_EQ(report.problems[0].kind, Kind::broken);
  EXPECT_NE(report.problems[0].message.find("anchor (seq 7) was changed outside clawbot"), std::string::npos)
      << describe(report);
}

TEST(GatewayAuditLog, TheWitnessCatchesWhatRootCanDoToTheLogAndTheDatabase) {
  TempDir dir("clawbot-audit-");
  const fs::path log_path = dir / "audit.log", db_path = dir / "gateway.db", witness = dir / "standby";
  fs::create_directory(witness);
  {
    door::AuditOptions options;
    options.witness_dir = witness;
    door::AuditLog log(log_path, db_path, options);
    for (int i = 1; i <= 5; ++i) log.append(record(i));
  }  // closing witnesses the head: seq 5
  const auto heads = read_lines(witness / "audit-witness.jsonl");
  ASSERT_EQ(heads.size(), 1u);
  const auto head = nlohmann::json::parse(heads[0]);
  EXPECT_EQ(head.at("seq"), 5);
  EXPECT_EQ(head.at("hash"), nlohmann::json::parse(read_lines(log_path).back()).at("hash"));

  auto report = door::verify_audit_log(log_path, db_path, {}, witness);
  EXPECT_TRUE(report.intact()) << describe(report);
  EXPECT_EQ(report.summary(), "5 records, chain intact and matches 1 witnessed head");

  // On demand, after more records: the head moves on; a tampered log is not witnessed.
  {
    door::AuditLog log(log_path, db_path);
    log.append(record(6));
  }
  EXPECT_EQ(door::witness_audit_head(log_path, db_path, {}, witness).seq, 6);
  EXPECT_EQ(read_lines(witness / "audit-witness.jsonl").size(), 2u);
  const auto original = read_lines(log_path);
  auto edited = original;
  edited[2] = edited[2].replace(edited[2].find("\"status\":200"), 12, "\"status\":201");
  write_lines(dir / "edited.log", edited);
  EXPECT_THROW(door::witness_audit_head(dir / "edited.log", db_path, {}, witness), std::runtime_error);

  // Root cuts the log and removes the anchor: intact without the witness, caught with it.
  {
    clawbot::sqlite::Database db(db_path);
    db.exec("DELETE FROM audit_anchor");
  }
  write_lines(dir / "cut.log", {original.begin(), original.begin() + 3});
  EXPECT_TRUE(door::verify_audit_log(dir / "cut.log", db_path).intact());
  report = door::verify_audit_log(dir / "cut.log", db_path, {}, witness);
  ASSERT_FALSE(report.intact());
  EXPECT_EQ(report.problems[0].kind, Kind::truncated);
  EXPECT_NE(
      report.problems[0].message.find("records 4..5 missing: the log ends at seq 3 but seq 5 is the head "
                                      "witnessed at "),
      std::string::npos)
      << describe(report);

  // Root rewrites record 2 and computes the chain again with the secret: caught at each witnessed head.
  write_lines(dir / "rewritten.log", rewrite_chain(original, dir / "gateway.secret", 1));
  EXPECT_TRUE(door::verify_audit_log(dir / "rewritten.log", db_path).intact());
  report = door::verify_audit_log(dir / "rewritten.log", db_path, {}, witness);
  ASSERT_EQ(report.problems.size(), 2u) << describe(report);
  EXPECT_EQ(report.problems[0].kind, Kind::rewritten);
  EXPECT_NE(report.problems[0].message.find("record 5 differs from the head witnessed at "),
            std::string::npos)
      << describe(report);
  EXPECT_NE(report.problems[1].message.find("the log was rewritten"), std::string::npos);
}
