// `clawbot doctor`: why the assistant cannot talk to its node, one check per line in the order a connection
// is made (config, name, TCP, TLS, key, latency, models, one token, memory), each failure with its fix. It
// stops at the first failure that makes the later checks meaningless and says which were skipped.
#pragma once

#include <functional>
#include <optional>

namespace CLI {
class App;
}

namespace clawbot::client {

// Registers `doctor` on `app`. After parsing, the returned function runs it and returns its exit status
// (0 healthy, 1 not), or nullopt when it was not given.
std::function<std::optional<int>()> add_doctor_command(CLI::App& app);

}  // namespace clawbot::client
