// `clawbot top [URL]`: a node's or a gateway's /metrics in a terminal, like htop: tokens/s, latency
// percentiles, slots and queue, the memory bar with its 90% mark, GPUs, and a gateway's upstreams. ncurses
// (TERM), keys only: q quits (0), Ctrl-C exits 130; a resize redraws; a server that goes away is shown as
// unreachable and tried again every interval.
#pragma once

#include <functional>
#include <optional>

namespace CLI {
class App;
}

namespace clawbot::monitor {

// Registers `top` on `app`. After parsing, the returned function runs it and returns its exit status, or
// nullopt when it was not given.
std::function<std::optional<int>()> add_top_command(CLI::App& app);

}  // namespace clawbot::monitor
