// `clawbot gateway audit verify`: walks the hash chain of an audit log and names every edited, inserted,
// deleted or unreadable record, and records cut from the end (against the anchor in the keys database).
//
// The walk keeps the last accepted record and looks one record ahead:
// - a record that chains to the last accepted one is accepted; if its HMAC is wrong it was EDITED, unless
//   the next record also chains to the last accepted one (then it is a forged record INSERTED before it);
// - a record that does not chain, while the next one does, was INSERTED (a copy of a valid line included);
// - otherwise a seq gap means records were DELETED, and the walk continues from the record after the gap.
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <stdexcept>
#include <unordered_map>

#include "common/error.h"
#include "gateway/door/audit_format.h"
#include "gateway/door/keys_db.h"

namespace clawbot::gateway::door {

namespace {

struct Item {
  std::size_t line = 0;
  bool parsed = false;
  std::string error;  // why it is not a record
  std::int64_t seq = 0;
  std::string prev, hash;
  bool mac_ok = false;
};

std::string range_text(std::int64_t first, std::int64_t last) {
  return first == last ? "record " + std::to_string(first)
                       : "records " + std::to_string(first) + ".." + std::to_string(last);
}

std::string at_line(std::size_t line, std::int64_t seq) {
  return "line " + std::to_string(line) + " (seq " + std::to_string(seq) + ")";
}
std::string at_line(const Item& item) {
  return at_line(item.line, item.seq);
}

}  // namespace

std::string_view to_string(AuditProblem::Kind kind) noexcept {
  switch (kind) {
    case AuditProblem::Kind::edited:
      return "edited";
    case AuditProblem::Kind::inserted:
      return "inserted";
    case AuditProblem::Kind::deleted:
      return "deleted";
    case AuditProblem::Kind::truncated:
      return "truncated";
    case AuditProblem::Kind::unparsable:
      return "unparsable";
    case AuditProblem::Kind::broken:
      return "broken";
    case AuditProblem::Kind::rewritten:
      return "rewritten";
  }
  return "problem";
}

std::string VerifyReport::summary() const {
  const std::string count = std::to_string(records) + (records == 1 ? " record" : " records");
  if (intact())
    return count + ", chain intact" + (anchored ? "" : " (no anchor in the database to check the end)") +
           (witnessed == 0 ? ""
                           : " and matches " + std::to_string(witnessed) +
                                 (witnessed == 1 ? " witnessed head" : " witnessed heads"));
  return std::to_string(problems.size()) + (problems.size() == 1 ? " problem in " : " problems in ") + count;
}

VerifyReport verify_audit_log(const std::filesystem::path& log, const std::filesystem::path& keys_db,
                              const std::filesystem::path& secret_file,
                              const std::filesystem::path& witness_dir) {
  std::ifstream in(log, std::ios::binary);
  if (!in)
    throw ClawbotError(ErrorKind::internal,
                       "cannot read the audit log " + log.string() + ": " + std::strerror(errno));
  if (!std::filesystem::exists(keys_db))
    throw ClawbotError(ErrorKind::internal,
                       "cannot read the keys database " + keys_db.string() + ": no such file");
  sqlite::Database db(keys_db);
  const detail::Secrets secrets = detail::open_door(db, secret_path(keys_db, secret_file), false);
  const std::string* const secret = &secrets.audit;
  const auto anchor = detail::read_anchor(db, secrets);
  std::vector<std::size_t> bad_witness_lines;
  std::vector<detail::WitnessedHead> witnessed;
  if (!witness_dir.empty()) witnessed = detail::read_witness(witness_dir, bad_witness_lines);
  // seq -> the hash the chain accepted for it, for the witnessed seqs only.
  std::unordered_map<std::int64_t, std::string> accepted_at;
  for (const auto& head : witnessed) accepted_at.emplace(head.seq, std::string());

  VerifyReport report;
  report.anchored = anchor.has_value();
  report.witnessed = witnessed.size();
  std::deque<Item> ahead;
  std::size_t line_number = 0;
  const auto read_one = [&]() -> bool {
    std::string text;
    if (!std::getline(in, text)) return false;
    Item item;
    item.line = ++line_number;
    if (const auto parsed = detail::parse_audit_line(text, item.error)) {
      item.parsed = true;
      item.seq = parsed->seq;
      item.prev = parsed->prev;
      item.hash = parsed->hash;
      item.mac_ok = !parsed->body.empty() && detail::audit_mac(*secret, parsed->body) == parsed->hash;
    }
    ahead.push_back(std::move(item));
    return true;
  };
  // The first record after the current one (unparsable lines skipped), reading on as needed.
  const auto next_record = [&]() -> const Item* {
    for (std::size_t i = 0;; ++i) {
      while (i >= ahead.size())
        if (!read_one()) return nullptr;
      if (ahead[i].parsed) return &ahead[i];
    }
  };

  const auto add = [&report](AuditProblem::Kind kind, std::size_t line, std::int64_t first, std::int64_t last,
                             std::string message) {
    report.problems.push_back(AuditProblem{kind, line, first, last, std::move(message)});
  };

  // The last accepted record.
  std::string prev_hash = detail::genesis_hash;
  std::int64_t prev_seq = 0;
  std::size_t prev_line = 0;
  std::int64_t unreadable_since = 0;  // unparsable lines since the last accepted record
  bool break_explained = false;  // the last accepted record's own hash was changed: the next cannot chain
  std::vector<std::pair<std::size_t, std::string>> copies;  // (problem index, hash) of valid inserted records

  const auto accept = [&](const Item& item) {
    if (const auto w = accepted_at.find(item.seq); w != accepted_at.end()) w->second = item.hash;
    prev_hash = item.hash;
    prev_seq = item.seq;
    prev_line = item.line;
    unreadable_since = 0;
  };

  while (!ahead.empty() || read_one()) {
    const Item item = std::move(ahead.front());
    ahead.pop_front();
    report.lines = item.line;
    if (!item.parsed) {
      add(AuditProblem::Kind::unparsable, item.line, 0, 0,
          "line " + std::to_string(item.line) + ": not an audit record (" + item.error + ")");
      ++unreadable_since;
      continue;
    }
    ++report.records;
    if (report.records == 1) report.first_seq = item.seq;
    const Item* next = next_record();
    const bool chains = item.prev == prev_hash;
    const bool next_chains_before = next != nullptr && next->prev == prev_hash;

    if (chains && item.mac_ok) {
      accept(item);
      break_explained = false;
      continue;
    }
    if (chains) {
      if (next_chains_before && next->prev != item.hash) {
        add(AuditProblem::Kind::inserted, item.line, item.seq, item.seq,
            at_line(item) +
                ": inserted: not written by the gateway (its hash does not match its content), and "
                "the next record follows the one before it");
        continue;
      }
      const bool hash_changed = next != nullptr && next->prev != item.hash;
      add(AuditProblem::Kind::edited, item.line, item.seq, item.seq,
          at_line(item) + ": edited: its content does not match its hash" +
              (hash_changed ? " (and its hash was changed too)" : ""));
      accept(item);
      break_explained = hash_changed;
      continue;
    }
    // It does not chain to the last accepted record.
    if (next_chains_before || (item.mac_ok && item.seq <= prev_seq)) {
      add(AuditProblem::Kind::inserted, item.line, item.seq, item.seq,
          at_line(item) + (item.mac_ok
                               ? ": inserted: a copy of an earlier record"
                               : ": inserted: not written by the gateway (its hash does not match its "
                                 "content), and it does not follow the record before it"));
      if (item.mac_ok) copies.emplace_back(report.problems.size() - 1, item.hash);
      continue;
    }
    if (item.seq > prev_seq + 1 + unreadable_since) {
      const std::int64_t first = prev_seq + 1 + unreadable_since, last = item.seq - 1;
      add(AuditProblem::Kind::deleted, item.line, first, last,
          range_text(first, last) + " deleted " +
              (prev_line == 0
                   ? "before line " + std::to_string(item.line)
                   : "between line " + std::to_string(prev_line) + " and line " + std::to_string(item.line)));
    } else if (!break_explained && unreadable_since == 0) {
      add(AuditProblem::Kind::broken, item.line, item.seq, item.seq,
          at_line(item) + ": does not follow the record before it (its prev is not that record's hash)");
    }
    if (!item.mac_ok)
      add(AuditProblem::Kind::edited, item.line, item.seq, item.seq,
          at_line(item) + ": edited: its content does not match its hash");
    accept(item);
    break_explained = false;
  }
  report.last_seq = prev_seq;
  report.last_hash = prev_hash;

  if (anchor && !anchor->intact) {
    add(AuditProblem::Kind::broken, 0, anchor->seq, anchor->seq,
        "the database's anchor (seq " + std::to_string(anchor->seq) +
            ") was changed outside clawbot: its MAC does not verify, so the end of the log cannot be checked "
            "against it");
  } else if (anchor) {
    if (anchor->seq > prev_seq) {
      add(AuditProblem::Kind::truncated, 0, prev_seq + 1, anchor->seq,
          range_text(prev_seq + 1, anchor->seq) + " missing at the end (after line " +
              std::to_string(report.lines) + "; the database's anchor is at seq " +
              std::to_string(anchor->seq) + ")");
    } else if (anchor->seq == prev_seq && anchor->hash != prev_hash && prev_seq > 0) {
      add(AuditProblem::Kind::broken, prev_line, prev_seq, prev_seq,
          "line " + std::to_string(prev_line) + " (seq " + std::to_string(prev_seq) +
              "): differs from the database's anchor for that seq");
    }
  }

  const std::string witness_file = (witness_dir / detail::witness_file_name).string();
  for (const std::size_t line : bad_witness_lines)
    add(AuditProblem::Kind::unparsable, 0, 0, 0,
        witness_file + " line " + std::to_string(line) + ": not a witnessed head");
  for (const auto& head : witnessed) {
    const std::string when = "the head witnessed at " + (head.time.empty() ? "?" : head.time) + " (" +
                             witness_file + " line " + std::to_string(head.line) + ")";
    const std::string& found = accepted_at[head.seq];
    if (head.seq > prev_seq) {
      add(AuditProblem::Kind::truncated, 0, prev_seq + 1, head.seq,
          range_text(prev_seq + 1, head.seq) + " missing: the log ends at seq " + std::to_string(prev_seq) +
              " but seq " + std::to_string(head.seq) + " is " + when);
    } else if (found.empty()) {
      add(AuditProblem::Kind::rewritten, 0, head.seq, head.seq,
          "record " + std::to_string(head.seq) + ", " + when + ", is not in the log's chain");
    } else if (found != head.hash) {
      add(AuditProblem::Kind::rewritten, 0, head.seq, head.seq,
          "record " + std::to_string(head.seq) + " differs from " + when + ": the log was rewritten");
    }
  }

  // Name the original of each copied record: a second pass, only when there are copies.
  if (!copies.empty()) {
    std::unordered_map<std::string, std::vector<std::size_t>> lines_of;
    for (const auto& [index, hash] : copies) lines_of.emplace(hash, std::vector<std::size_t>{});
    std::ifstream again(log, std::ios::binary);
    std::string text;
    for (std::size_t number = 1; std::getline(again, text); ++number) {
      std::string error;
      if (const auto parsed = detail::parse_audit_line(text, error)) {
        const auto found = lines_of.find(parsed->hash);
        if (found != lines_of.end()) found->second.push_back(number);
      }
    }
    for (const auto& [index, hash] : copies) {
      AuditProblem& problem = report.problems[index];
      for (const std::size_t original : lines_of[hash]) {
        if (original == problem.line) continue;
        problem.message = at_line(problem.line, problem.seq_first) + ": inserted: a copy of line " +
                          std::to_string(original);
        break;
      }
    }
  }
  return report;
}

AuditHead witness_audit_head(const std::filesystem::path& log, const std::filesystem::path& keys_db,
                             const std::filesystem::path& secret_file,
                             const std::filesystem::path& witness_dir) {
  // The witness file may not exist yet: the first witness checks against nothing.
  const bool has_witness = std::filesystem::exists(witness_dir / detail::witness_file_name);
  const VerifyReport report = verify_audit_log(log, keys_db, secret_file, has_witness ? witness_dir : "");
  if (!report.intact()) {
    std::string message = log.string() + ": " + report.summary() + ": not witnessing a log that fails verify";
    for (const auto& problem : report.problems) message += "\n  " + problem.message;
    throw ClawbotError(ErrorKind::internal, message);
  }
  if (report.records == 0)
    throw ClawbotError(ErrorKind::internal, log.string() + ": no records yet: nothing to witness");
  detail::append_witness(witness_dir, report.last_seq, report.last_hash, log);
  return AuditHead{report.last_seq, report.last_hash};
}

}  // namespace clawbot::gateway::door
