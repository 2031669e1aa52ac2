// The front-end's subcommands on the command line: `config`, `ask`, `chat` and `sessions` (main.cpp only
// calls this).
#pragma once

#include <functional>
#include <optional>

#include "client/assistant.h"

namespace CLI {
class App;
class ParseError;
}  // namespace CLI

namespace clawbot::client {

// The flags every client command shares: --config, --endpoint, --model, --temperature, --max-tokens,
// --timeout.
void add_client_flags(CLI::App& command, ConfigSearch& search, ClientOverrides& overrides);

// The session database: `flag` when given, else session_db of the clawbot.json in effect, else the default.
std::string session_db_path(const std::string& flag);

// Registers config, ask and chat on `app`. After parsing, the returned function runs the one that was given
// and returns its exit status, or nullopt when none of them was.
std::function<std::optional<int>()> add_client_commands(CLI::App& app);

// Registers `sessions` (list, show, rename, rm, export) on `app`; the returned function as above.
std::function<std::optional<int>()> add_sessions_command(CLI::App& app);

// The one place command-line mistakes end: --help and --version print and exit 0; anything else (an unknown
// command or option, a bad value, a missing argument) is one message on stderr naming the command, with the
// closest command name for an unknown one, and exit status 2 (README: "2 on bad usage").
int exit_for_parse_error(CLI::App& app, const CLI::ParseError& error, int argc, const char* const* argv);

}  // namespace clawbot::client
