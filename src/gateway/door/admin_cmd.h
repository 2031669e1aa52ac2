// `clawbot gateway keys create|list|revoke` and `clawbot gateway audit verify|tail|export`: the operator's
// side of the door (library clawbot_gateway_door_cli; main.cpp and the gateway command only call this).
#pragma once

#include <functional>
#include <optional>

namespace CLI {
class App;
}

namespace clawbot::gateway::door {

// Registers `keys` and `audit` under the `gateway` subcommand. Each action takes --config PATH (default
// ./gateway.json, or the gateway command's own --config when given there) to find keys_db and audit_log, and
// --db PATH / --log PATH to do without a config file. After parsing, the returned function runs the action
// that was given and returns its exit status, or nullopt when none was (then `gateway` itself runs).
//
// Exit status: 0 done; 1 failed (the reason on stderr); `audit verify`: 0 intact, 1 problems found, 2 cannot
// read the log or the database.
[[nodiscard]] std::function<std::optional<int>()> add_admin_commands(CLI::App& gateway_cmd);

}  // namespace clawbot::gateway::door
