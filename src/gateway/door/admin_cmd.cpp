#include "gateway/door/admin_cmd.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/cli_error.h"
#include "common/store_error.h"
#include "gateway/config.h"
#include "gateway/door/audit_format.h"
#include "gateway/door/door.h"
#include "gateway/door/keys_db.h"

namespace clawbot::gateway::door {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct AdminOptions {
  std::string config;  // empty: the gateway command's --config, else ./gateway.json
  std::string db, log, secret, witness;
  // keys create
  std::string name;
  std::int64_t rpm = 0, tpm = 0, audio_seconds_per_hour = 0;
  bool admin = false;
  // keys list
  bool json = false;
  // keys revoke
  std::string id_or_name;
  // audit tail
  std::size_t lines = 20;
  bool follow = false;
  // audit export
  std::string format = "jsonl";
  std::string since;
  std::string output;
};

// A failure the user can act on; its message goes to stderr as it is.
struct CommandError : std::runtime_error {
  CommandError(int status_, const std::string& message) : std::runtime_error(message), status(status_) {}
  int status;
};

struct State {
  explicit State(CLI::App& gateway) : gateway_cmd(gateway) {}
  CLI::App& gateway_cmd;
  AdminOptions options;
  CLI::App* keys_create = nullptr;
  CLI::App* keys_list = nullptr;
  CLI::App* keys_revoke = nullptr;
  CLI::App* audit_verify = nullptr;
  CLI::App* audit_tail = nullptr;
  CLI::App* audit_export = nullptr;
  CLI::App* audit_witness = nullptr;

  std::optional<GatewayConfig> loaded;

  fs::path config_path() const {
    if (!options.config.empty()) return options.config;
    if (const CLI::Option* parent = gateway_cmd.get_option_no_throw("--config");
        parent && parent->count() > 0)
      return parent->as<std::string>();
    return "gateway.json";
  }
  const GatewayConfig& config(std::string_view missing_flag, int status) {
    if (!loaded) {
      try {
        loaded = load_config(config_path());
      } catch (const std::exception& e) {
        throw CommandError(status, std::string(e.what()) + " (or pass " + std::string(missing_flag) + ")");
      }
    }
    return *loaded;
  }
  fs::path db_path(int status = 1) {
    if (!options.db.empty()) return options.db;
    return config("--db PATH", status).keys_db;
  }
  // gateway.json's, unless the paths were all given on the command line (then secret_path's default).
  fs::path secret_file(int status = 1) {
    if (!options.secret.empty()) return options.secret;
    if (!options.db.empty() && !config_given()) return {};
    return config("--db PATH", status).secret_file;
  }
  fs::path witness_dir(int status) {
    if (!options.witness.empty()) return options.witness;
    if (!options.db.empty() && !options.log.empty() && !config_given()) return {};
    return config("--log PATH and --db PATH", status).audit_witness;
  }
  bool config_given() const {
    if (!options.config.empty()) return true;
    const CLI::Option* parent = gateway_cmd.get_option_no_throw("--config");
    return parent != nullptr && parent->count() > 0;
  }
  fs::path log_path(int status = 1) {
    if (!options.log.empty()) return options.log;
    const auto& c = config("--log PATH", status);
    if (c.audit_log.empty())
      throw CommandError(
          status,
          c.file.string() + " sets no \"audit_log\": the gateway keeps no audit log (or pass --log PATH)");
    return c.audit_log;
  }
};

void add_paths(CLI::App& command, AdminOptions& options, bool log) {
  command.add_option("--config", options.config,
                     "gateway.json that names keys_db and audit_log (default: ./gateway.json)");
  command.add_option("--db", options.db, "Keys database (instead of keys_db of --config)");
  command.add_option("--secret", options.secret,
                     "The gateway's secret file (instead of secret_file of --config; default: beside the "
                     "database, .secret)");
  if (log) command.add_option("--log", options.log, "Audit log (instead of audit_log of --config)");
}

void print_notes(const std::vector<std::string>& notes) {
  for (const auto& note : notes) std::cerr << note << "\n";
}

std::string limit_text(std::int64_t limit) {
  return limit > 0 ? std::to_string(limit) : "default";
}

// --- keys ---

int keys_create(State& state) {
  const fs::path db = state.db_path();
  KeyStore store(db, state.secret_file());
  print_notes(store.notes());
  const AdminOptions& o = state.options;
  const Created created = store.create(o.name, o.rpm, o.tpm, o.audio_seconds_per_hour, o.admin);
  // Only the key on stdout, so that `KEY=$(clawbot gateway keys create --name x)` works.
  std::cout << created.key << std::endl;
  std::cerr
      << "created key " << created.row.info.id << " \"" << created.row.info.name
      << "\" (requests/min: " << limit_text(created.row.info.requests_per_minute)
      << ", tokens/min: " << limit_text(created.row.info.tokens_per_minute)
      << ", audio s/hour: " << limit_text(created.row.info.audio_seconds_per_hour)
      << (created.row.info.admin ? ", admin" : "") << ") in " << db.string()
      << "\nit is shown only now: store it where its user can read it (the gateway keeps only a hash)\n";
  return 0;
}

int keys_list(State& state) {
  const fs::path db = state.db_path();
  if (!fs::exists(db)) throw CommandError(1, db.string() + ": no such keys database (create a key first)");
  KeyStore store(db, state.secret_file());
  print_notes(store.notes());
  const auto rows = store.list();
  const auto tampered = std::count_if(rows.begin(), rows.end(), [](const KeyRow& r) { return !r.intact; });
  if (tampered > 0)
    std::cerr << "warning: " << tampered
              << " row(s) were forged or changed outside clawbot (their MAC does not verify): the gateway "
                 "refuses those keys\n";
  if (state.options.json) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& row : rows)
      out.push_back({{"id", row.info.id},
                     {"name", row.info.name},
                     {"created_at", row.created_at},
                     {"requests_per_minute", row.info.requests_per_minute},
                     {"tokens_per_minute", row.info.tokens_per_minute},
                     {"audio_seconds_per_hour", row.info.audio_seconds_per_hour},
                     {"admin", row.info.admin},
                     {"revoked_at", row.revoked() ? nlohmann::ordered_json(row.revoked_at) : nullptr},
                     {"intact", row.intact}});
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (rows.empty()) {
    std::cout << "no keys yet in " << db.string() << " (clawbot gateway keys create --name NAME)\n";
    return 0;
  }
  std::vector<std::array<std::string, 8>> table{
      {"ID", "NAME", "CREATED", "REQ/MIN", "TOKENS/MIN", "AUDIO S/HOUR", "ADMIN", "STATUS"}};
  for (const auto& row : rows)
    table.push_back({row.info.id, row.info.name, row.created_at, limit_text(row.info.requests_per_minute),
                     limit_text(row.info.tokens_per_minute), limit_text(row.info.audio_seconds_per_hour),
                     row.info.admin ? "yes" : "no",
                     !row.intact     ? std::string("TAMPERED (refused)")
                     : row.revoked() ? "revoked " + row.revoked_at
                                     : std::string("active")});
  std::array<std::size_t, 8> width{};
  for (const auto& cells : table)
    for (std::size_t c = 0; c < cells.size(); ++c) width[c] = std::max(width[c], cells[c].size());
  for (const auto& cells : table) {
    std::string line;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      line += cells[c];
      if (c + 1 < cells.size()) line += std::string(width[c] - cells[c].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
  return 0;
}

int keys_revoke(State& state) {
  const fs::path db = state.db_path();
  if (!fs::exists(db)) throw CommandError(1, db.string() + ": no such keys database");
  KeyStore store(db, state.secret_file());
  print_notes(store.notes());
  const std::string& which = state.options.id_or_name;
  const auto row = store.find(which);
  if (!row) throw CommandError(1, "no key with the id or active name \"" + which + "\" in " + db.string());
  if (row->revoked()) {
    std::cerr << "key " << row->info.id << " \"" << row->info.name << "\" was already revoked at "
              << row->revoked_at << "\n";
    return 0;
  }
  store.revoke(row->info.id);
  std::cout << "revoked key " << row->info.id << " \"" << row->info.name
            << "\" (a running gateway refuses it within a second)\n";
  return 0;
}

// --- audit ---

int audit_verify(State& state) {
  const fs::path log = state.log_path(2);
  const fs::path db = state.db_path(2);
  VerifyReport report;
  try {
    report = verify_audit_log(log, db, state.secret_file(2), state.witness_dir(2));
  } catch (const std::exception& e) {
    throw CommandError(2, e.what());
  }
  for (const auto& problem : report.problems) std::cout << problem.message << "\n";
  std::cout << log.string() << ": " << report.summary() << "\n";
  return report.intact() ? 0 : 1;
}

int audit_witness(State& state) {
  const fs::path log = state.log_path();
  const fs::path db = state.db_path();
  const fs::path dir = state.witness_dir(1);
  if (dir.empty())
    throw CommandError(1,
                       "no witness directory: pass --witness DIR or set \"audit_witness\" in gateway.json");
  const AuditHead head = witness_audit_head(log, db, state.secret_file(), dir);
  std::cout << "witnessed seq " << head.seq << " (" << head.hash << ") of " << log.string() << " in "
            << (dir / detail::witness_file_name).string() << "\n";
  return 0;
}

std::string human_line(std::string_view line) {
  std::string error;
  const auto parsed = detail::parse_audit_line(line, error);
  if (!parsed) return "? " + std::string(line);
  const json& f = parsed->fields;
  const auto text = [&f](const char* key) {
    const auto it = f.find(key);
    if (it == f.end() || it->is_null()) return std::string("-");
    std::string s = it->is_string() ? it->get<std::string>() : it->dump();
    return s.empty() ? std::string("-") : s;
  };
  std::string out = text("time") + "  #" + std::to_string(parsed->seq) + "  key " + text("key_id") + "  " +
                    text("client") + "  " + text("status") + "  " + text("route") + "  " + text("model") +
                    " -> " + text("upstream") + "  " + text("tokens_in") + "/" + text("tokens_out") +
                    " tokens  " + text("latency_ms") + " ms";
  if (f.contains("prompt"))
    out += "  prompt: " + f.at("prompt").dump(-1, ' ', false, json::error_handler_t::replace);
  return out;
}

// The last `n` lines of a file, read from its end.
std::vector<std::string> last_lines(std::ifstream& in, std::size_t n, std::streamoff size) {
  constexpr std::streamoff block = 64 * 1024;
  std::string data;
  std::streamoff pos = size;
  while (pos > 0) {
    const std::streamoff count = std::min(block, pos);
    pos -= count;
    std::string chunk(static_cast<std::size_t>(count), '\0');
    in.seekg(pos);
    in.read(chunk.data(), count);
    data.insert(0, chunk);
    const std::size_t newlines = static_cast<std::size_t>(std::count(data.begin(), data.end(), '\n'));
    if (newlines > n) break;  // n complete lines after the first newline (the last may lack one)
  }
  std::vector<std::string> lines;
  std::size_t end = data.size();
  if (end > 0 && data[end - 1] == '\n') --end;
  while (lines.size() < n && end > 0) {
    const std::size_t nl = data.rfind('\n', end - 1);
    const std::size_t start = nl == std::string::npos ? 0 : nl + 1;
    if (nl == std::string::npos && pos > 0) break;  // should not happen: we read past n newlines
    lines.push_back(data.substr(start, end - start));
    if (nl == std::string::npos) break;
    end = nl;
  }
  std::reverse(lines.begin(), lines.end());
  return lines;
}

int audit_tail(State& state) {
  const fs::path path = state.log_path();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CommandError(1, "cannot read the audit log " + path.string());
  std::error_code ec;
  auto size = static_cast<std::streamoff>(fs::file_size(path, ec));
  if (ec) throw CommandError(1, "cannot read the audit log " + path.string() + ": " + ec.message());
  const bool raw = state.options.json;
  for (const auto& line : last_lines(in, state.options.lines, size))
    std::cout << (raw ? line : human_line(line)) << "\n";
  std::cout.flush();
  if (!state.options.follow) return 0;

  std::string partial;
  std::streamoff offset = size;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    size = static_cast<std::streamoff>(fs::file_size(path, ec));
    if (ec) continue;  // moved away for a moment: try again
    if (size < offset) {
      std::cerr << "(" << path.string() << " was truncated or replaced: following it from its start)\n";
      offset = 0;
      partial.clear();
    }
    if (size == offset) continue;
    std::ifstream again(path, std::ios::binary);
    again.seekg(offset);
    std::string chunk(static_cast<std::size_t>(size - offset), '\0');
    again.read(chunk.data(), size - offset);
    chunk.resize(static_cast<std::size_t>(again.gcount()));
    offset += static_cast<std::streamoff>(chunk.size());
    partial += chunk;
    std::size_t start = 0;
    for (std::size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
      const std::string_view line(partial.data() + start, nl - start);
      std::cout << (raw ? std::string(line) : human_line(line)) << "\n";
    }
    partial.erase(0, start);
    std::cout.flush();
  }
}

std::string csv_cell(const json& value) {
  std::string s = value.is_null() ? "" : value.is_string() ? value.get<std::string>() : value.dump();
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string quoted = "\"";
  for (const char c : s) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

int audit_export(State& state) {
  const fs::path path = state.log_path();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CommandError(1, "cannot read the audit log " + path.string());
  std::optional<std::chrono::sys_time<std::chrono::milliseconds>> since;
  if (!state.options.since.empty()) {
    since = detail::parse_rfc3339(state.options.since);
    if (!since)
      throw CommandError(1, "--since \"" + state.options.since +
                                "\" is not an RFC 3339 time such as 2025-01-31T09:00:00Z or 2025-01-31");
  }
  std::ofstream file;
  if (!state.options.output.empty()) {
    file.open(state.options.output, std::ios::binary | std::ios::trunc);
    if (!file) throw CommandError(1, "cannot write " + state.options.output);
  }
  std::ostream& out = state.options.output.empty() ? std::cout : file;
  const bool csv = state.options.format == "csv";
  static const std::vector<std::string> columns = {
      "seq",    "time",      "key_id",     "client",     "route",  "model", "upstream",
      "status", "tokens_in", "tokens_out", "latency_ms", "prompt", "prev",  "hash"};
  if (csv) {
    for (std::size_t c = 0; c < columns.size(); ++c) out << (c ? "," : "") << columns[c];
    out << "\r\n";
  }
  std::size_t written = 0, skipped = 0;
  for (std::string line; std::getline(in, line);) {
    std::string error;
    const auto parsed = detail::parse_audit_line(line, error);
    if (!parsed) {
      ++skipped;
      continue;
    }
    if (since) {
      const auto time = parsed->fields.find("time");
      const auto at = time != parsed->fields.end() && time->is_string()
                          ? detail::parse_rfc3339(time->get<std::string>())
                          : std::nullopt;
      if (!at || *at < *since) continue;
    }
    if (csv) {
      for (std::size_t c = 0; c < columns.size(); ++c) {
        const auto it = parsed->fields.find(columns[c]);
        out << (c ? "," : "") << (it == parsed->fields.end() ? std::string() : csv_cell(*it));
      }
      out << "\r\n";
    } else {
      out << line << "\n";
    }
    ++written;
  }
  out.flush();
  if (!out) throw CommandError(1, "writing the export failed");
  std::cerr << written << (written == 1 ? " record" : " records") << " exported";
  if (skipped > 0)
    std::cerr << "; " << skipped << " unreadable line(s) skipped (clawbot gateway audit verify names them)";
  std::cerr << "\n";
  return 0;
}

}  // namespace

std::function<std::optional<int>()> add_admin_commands(CLI::App& gateway_cmd) {
  auto state = std::make_shared<State>(gateway_cmd);
  AdminOptions& o = state->options;

  auto* keys = gateway_cmd.add_subcommand("keys", "API keys of the gateway: create, list, revoke");
  keys->require_subcommand(1);
  state->keys_create =
      keys->add_subcommand("create", "Make a key; prints only the key on stdout (shown once)");
  state->keys_create
      ->add_option("name,--name", o.name, "Who or what the key is for (unique among active keys)")
      ->required();
  state->keys_create->add_option("--rpm", o.rpm, "Requests per minute (0: the gateway's default)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
  state->keys_create
      ->add_option("--tpm", o.tpm, "Prompt + completion tokens per minute (0: the gateway's default)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
  state->keys_create
      ->add_option("--audio-seconds-per-hour", o.audio_seconds_per_hour,
                   "Seconds of speech sent to /v1/audio/* (files and live) in any hour (0: the gateway's "
                   "default, limits.audio_seconds_per_hour)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
  state->keys_create->add_flag(
      "--admin", o.admin, "May write under /v1/kb (create knowledge bases, upload and delete documents)");
  add_paths(*state->keys_create, o, false);
  state->keys_list =
      keys->add_subcommand("list", "Every key: id, name, created, limits, revoked (never the secret)");
  state->keys_list->add_flag("--json", o.json, "Print a JSON array");
  add_paths(*state->keys_list, o, false);
  state->keys_revoke = keys->add_subcommand("revoke", "Revoke a key (it stays listed, for the audit trail)");
  state->keys_revoke->add_option("key", o.id_or_name, "The key's id or name")->required();
  add_paths(*state->keys_revoke, o, false);

  auto* audit = gateway_cmd.add_subcommand(
      "audit", "The audit log: verify its hash chain, witness its head, tail it, export it");
  audit->require_subcommand(1);
  state->audit_verify = audit->add_subcommand(
      "verify",
      "Check the hash chain: name every edited, inserted or deleted record (exit 0 intact, 1 problems, "
      "2 cannot read)");
  state->audit_verify->add_option("--witness", o.witness,
                                  "Also check the log against the heads witnessed in this directory "
                                  "(default: audit_witness of --config)");
  add_paths(*state->audit_verify, o, true);
  state->audit_witness = audit->add_subcommand(
      "witness", "Verify the log, then append its head (seq, hash, time) to DIR/audit-witness.jsonl");
  state->audit_witness->add_option("--witness", o.witness,
                                   "The witness directory (default: audit_witness of --config)");
  add_paths(*state->audit_witness, o, true);
  state->audit_tail = audit->add_subcommand("tail", "The last records, one line each");
  state->audit_tail->add_option("-n,--lines", o.lines, "How many")->capture_default_str();
  state->audit_tail->add_flag("-f,--follow", o.follow, "Keep printing records as they are appended");
  state->audit_tail->add_flag("--json", o.json, "Print the log's own JSON lines");
  add_paths(*state->audit_tail, o, true);
  state->audit_export =
      audit->add_subcommand("export", "Every record (or those since a time) as JSON lines or CSV");
  state->audit_export->add_option("--format", o.format, "jsonl or csv")
      ->capture_default_str()
      ->check(CLI::IsMember({"jsonl", "csv"}));
  state->audit_export->add_option("--since", o.since, "Only records at or after this RFC 3339 time");
  state->audit_export->add_option("-o,--output", o.output, "File to write (default: stdout)");
  add_paths(*state->audit_export, o, true);

  return [state]() -> std::optional<int> {
    const std::pair<CLI::App*, int (*)(State&)> actions[] = {
        {state->keys_create, keys_create},     {state->keys_list, keys_list},
        {state->keys_revoke, keys_revoke},     {state->audit_verify, audit_verify},
        {state->audit_tail, audit_tail},       {state->audit_export, audit_export},
        {state->audit_witness, audit_witness},
    };
    for (const auto& [command, action] : actions) {
      if (!command->parsed()) continue;
      const std::string what =
          "clawbot gateway " + command->get_parent()->get_name() + " " + command->get_name();
      try {
        return action(*state);
      } catch (const CommandError& e) {
        return cli_error(what, e.what(), e.status);
      } catch (const std::exception& e) {
        return cli_error(what, e.what(), command == state->audit_verify ? 2 : 1);
      }
    }
    return std::nullopt;
  };
}

}  // namespace clawbot::gateway::door
