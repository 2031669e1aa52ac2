// `clawbot kb`: create, add, search, ask, chat, eval, info, list, rm. The knowledge base itself is kb/kb.h;
// this is its command line, which reaches the embedding, reranking and chat models through the assistant's
// API client (clawbot.json's endpoint, key and retry policy).
#pragma once

#include <functional>
#include <optional>

namespace CLI {
class App;
}

namespace clawbot::kb {

// Registers `kb` on `app`. After parsing, the returned function runs it and returns its exit status, or
// nullopt when the command line named another command.
std::function<std::optional<int>()> add_kb_command(CLI::App& app);

}  // namespace clawbot::kb
