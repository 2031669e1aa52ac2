// The audit log verifier (src/gateway/door/audit_verify.cpp, `clawbot gateway audit verify`): whoever can
// write the log file controls every byte of it. Any log is a report naming its problems by line, never a
// crash or a hang; a report with no problem has as many records as lines.
//
// One keys database (with its audit secret and anchor) is made at start by writing a few records; each input
// is a log verified against it. The seeds are that log's lines.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "gateway/door/door.h"
#include "seed_writer.h"

namespace {

namespace fs = std::filesystem;
using namespace clawbot::gateway::door;

const fs::path& keys_db() {
  static const fs::path db = [] {
    const fs::path dir = clawbot::fuzz::scratch_dir();
    {
      AuditLog log(dir / "audit.log", dir / "keys.db");
      for (int i = 0; i < 4; ++i) {
        AuditRecord record;
        record.time = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000 + i));
        record.key_id = "key" + std::to_string(i % 2);
        record.client = "127.0.0.1";
        record.route = "/v1/chat/completions";
        record.model = "stories260K";
        record.upstream = "http://127.0.0.1:8081";
        record.status = i == 3 ? 499 : 200;
        record.tokens_in = 10 + i;
        record.tokens_out = 20 * i;
        record.latency_ms = 12.5 * i;
        if (i == 2) record.prompt = "say \"hi\"\n\u00e9";
        log.append(std::move(record));
      }
      if (!log.flush()) std::abort();
    }
    return dir / "keys.db";
  }();
  return db;
}

void write_seeds(const fs::path& dir) {
  (void)keys_db();
  std::ifstream in(clawbot::fuzz::scratch_dir() / "audit.log", std::ios::binary);
  std::stringstream whole;
  whole << in.rdbuf();
  const std::string log = whole.str();
  clawbot::fuzz::write_file(dir / "intact", log);
  clawbot::fuzz::write_file(dir / "first-line", log.substr(0, log.find('\n') + 1));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  clawbot::fuzz::write_seeds_if_asked(write_seeds);
  (void)keys_db();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fs::path log = clawbot::fuzz::scratch_dir() / "fuzz.log";
  clawbot::fuzz::write_file(log, std::string_view(reinterpret_cast<const char*>(data), size));
  const VerifyReport report = verify_audit_log(log, keys_db());
  (void)report.summary();
  for (const auto& problem : report.problems) {
    if (problem.message.empty()) std::abort();
    (void)to_string(problem.kind);
  }
  if (report.records > report.lines) std::abort();
  return 0;
}
