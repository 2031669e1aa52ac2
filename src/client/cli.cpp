#include "client/cli.h"

#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "client/session_store.h"
#include "client/sessions_cmd.h"
#include "common/cli_error.h"
#include "common/edit_distance.h"

namespace clawbot::client {

namespace {
ChatKbRunner& chat_kb_runner() {
  static ChatKbRunner runner;
  return runner;
}
}  // namespace

void set_chat_kb_runner(ChatKbRunner runner) {
  chat_kb_runner() = std::move(runner);
}

void add_client_flags(CLI::App& command, ConfigSearch& search, ClientOverrides& overrides) {
  command.add_option(
      "--config", search.explicit_path,
      "clawbot.json to read (default: $CLAWBOT_CONFIG, ./clawbot.json, ~/.config/clawbot/clawbot.json)");
  command.add_option("--endpoint", overrides.endpoint, "Node or gateway URL (overrides model_endpoint)");
  command.add_option("--model", overrides.model, "Model to ask for (overrides model)");
  command.add_option("--temperature", overrides.temperature, "Sampling temperature, 0 to 2");
  command.add_option("--max-tokens", overrides.max_tokens, "Longest answer in tokens");
  command.add_option("--timeout", overrides.timeout_ms,
                     "Milliseconds of silence before giving up (network_timeout)");
}

std::string session_db_path(const std::string& flag) {
  if (!flag.empty()) return flag;
  try {
    const ClientConfig config = load_config({});
    if (!config.session_db.empty()) return config.session_db;
  } catch (const ConfigError& e) {
    std::cerr << "warning: " << e.what() << " (using the default session database)\n";
  }
  return SessionStore::default_path().string();
}

int exit_for_parse_error(CLI::App& app, const CLI::ParseError& error, int argc, const char* const* argv) {
  if (error.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success))
    return app.exit(error);  // --help, --version: printed as CLI11 does, exit 0
  // The command the words name, as deep as they go; an unknown word where a subcommand is required is the
  // mistake itself.
  const CLI::App* at = &app;
  std::string command = "clawbot";
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word.front() == '-') break;  // options: the words after them are their values
    const CLI::App* sub = nullptr;
    try {
      sub = at->get_subcommand(word);
    } catch (const CLI::OptionNotFound&) {
    }
    if (sub != nullptr) {
      at = sub;
      command += " " + sub->get_name();
      continue;
    }
    const auto subcommands = at->get_subcommands(std::function<bool(const CLI::App*)>{});
    if (subcommands.empty() || at->get_require_subcommand_min() == 0) break;
    std::vector<std::string> names;
    for (const auto* s : subcommands) names.push_back(s->get_name());
    const auto close = closest_names(word, names);
    std::string all;
    for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
    std::string message = "unknown command '" + word + "'";
    if (!close.empty()) {
      message += "; did you mean";
      for (std::size_t k = 0; k < close.size(); ++k)
        message += (k == 0 ? " '" : k + 1 == close.size() ? "' or '" : "', '") + close[k];
      message += "'?";
    }
    message += "\n" + command + " commands: " + all + " (" + command + " --help says what each does)";
    return cli_error(command, message, 2);
  }
  return cli_error(command, std::string(error.what()) + " (" + command + " --help lists what it takes)", 2);
}

std::function<std::optional<int>()> add_client_commands(CLI::App& app) {
  auto config = std::make_shared<ConfigCommand>();
  auto* config_cmd =
      app.add_subcommand("config", "The assistant's clawbot.json: show what is in effect, or write one");
  config_cmd->require_subcommand(1);
  auto* show = config_cmd->add_subcommand("show", "Print the effective settings and where each came from");
  show->add_option("--config", config->search.explicit_path, "clawbot.json to read");
  show->add_flag("--json", config->json, "Print JSON");
  auto* init = config_cmd->add_subcommand("init", "Write a commented starting clawbot.json");
  init->add_option("path", config->init_path, "Where (default: ~/.config/clawbot/clawbot.json)");
  init->add_flag("--force", config->force, "Replace an existing file");
  auto* path = config_cmd->add_subcommand("path", "Print the path of the clawbot.json in effect");
  path->add_option("--config", config->search.explicit_path, "clawbot.json to read");

  auto ask = std::make_shared<AskOptions>();
  auto* ask_cmd = app.add_subcommand(
      "ask",
      "One question, one answer on stdout; piped text is added (git diff | clawbot ask \"commit message\")");
  ask_cmd->add_option("question", ask->question, "The question (the words are joined)");
  add_client_flags(*ask_cmd, ask->search, ask->overrides);
  ask_cmd->add_option("-s,--system", ask->system, "System prompt (default: the config's system_prompt)");
  ask_cmd->add_option("-t,--template", ask->template_name, "continue, polish, summarise or translate");
  ask_cmd->add_option("--to", ask->language, "translate: the language to translate into")
      ->capture_default_str();
  ask_cmd->add_flag("--json", ask->json,
                    "Print one JSON object (content, finish_reason, usage, timings, error)");
  ask_cmd->add_flag("--save", ask->save,
                    "Store the question and the answer as a session (clawbot sessions list shows it)");
  ask_cmd->add_flag("--stats", ask->stats, "Time to first token and tokens/s on stderr");
  ask_cmd->add_flag("--list-templates", ask->list_templates, "List the templates");

  auto chat = std::make_shared<ChatOptions>();
  auto* chat_cmd =
      app.add_subcommand("chat", "Interactive assistant: streaming, history, sessions kept in SQLite");
  add_client_flags(*chat_cmd, chat->search, chat->overrides);
  chat_cmd->add_option("--session", chat->session, "Resume this session, or start it under this name");
  chat_cmd->add_option("-s,--system", chat->system,
                       "System prompt of a new session (or replace a resumed one's)");
  chat_cmd->add_option("--db", chat->db,
                       "Session database (default: session_db, else ~/.local/share/clawbot/sessions.db)");
  chat_cmd->add_option("--kb", chat->kb,
                       "Answer from this knowledge base with numbered citations, or say it has no answer "
                       "(clawbot kb chat; questions a line)");

  return [=]() -> std::optional<int> {
    if (config_cmd->parsed()) {
      config->action = config_cmd->get_subcommands().at(0)->get_name();
      return run_config(*config);
    }
    if (ask_cmd->parsed()) return run_ask(*ask);
    if (chat_cmd->parsed()) {
      if (chat->kb.empty()) return run_chat(*chat);
      if (!chat_kb_runner()) return cli_error("clawbot chat", "this build has no knowledge base", 2);
      return chat_kb_runner()(*chat);
    }
    return std::nullopt;
  };
}

std::function<std::optional<int>()> add_sessions_command(CLI::App& app) {
  auto sessions = std::make_shared<SessionsOptions>();
  auto* cmd = app.add_subcommand(
      "sessions", "Stored conversations of chat and ask --save: list, show, rename, rm, export, import");
  cmd->require_subcommand(1)->fallthrough();  // fallthrough: --db also after the action
  cmd->add_option("--db", sessions->db,
                  "Session database (default: session_db of clawbot.json, else "
                  "${XDG_DATA_HOME:-~/.local/share}/clawbot/sessions.db)");
  cmd->add_subcommand("list", "Sessions, most recently updated first")
      ->add_flag("--json", sessions->json, "Print a JSON array instead of the table");
  cmd->add_subcommand("show", "Print a conversation")
      ->add_option("name", sessions->name, "Session name or id")
      ->required();
  auto* rename = cmd->add_subcommand("rename", "Rename a session");
  rename->add_option("old", sessions->name, "Session name or id")->required();
  rename->add_option("new", sessions->new_name, "New name")->required();
  cmd->add_subcommand("rm", "Delete a session and its messages")
      ->add_option("name", sessions->name, "Session name or id")
      ->required();
  auto* export_cmd = cmd->add_subcommand("export", "Write a session as Markdown or JSON");
  export_cmd->add_option("name", sessions->name, "Session name or id")->required();
  export_cmd->add_option("--format", sessions->format, "md or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"md", "json"}));
  export_cmd->add_option("-o,--output", sessions->output, "File to write (default: stdout)");
  auto* import_cmd = cmd->add_subcommand(
      "import",
      "Store a session from its JSON export (sessions export --format json, or the web chat's Export)");
  import_cmd->add_option("file", sessions->file, "The JSON file (-: standard input)")->required();
  import_cmd->add_option("--name", sessions->name, "Name of the new session (default: the file's name)");
  return [=]() -> std::optional<int> {
    if (!cmd->parsed()) return std::nullopt;
    sessions->action = cmd->get_subcommands().at(0)->get_name();
    sessions->db = session_db_path(sessions->db);  // --db, else clawbot.json's session_db
    return run_sessions(*sessions);
  };
}

}  // namespace clawbot::client
