// The front-end commands: `clawbot ask` (one-shot, scriptable) and `clawbot chat` (interactive sessions).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "client/api_client.h"
#include "client/config.h"
#include "client/prompts.h"  // the writing templates (ask --template)
#include "client/session_store.h"

namespace clawbot::client {

// Command-line values that win over clawbot.json (`config show` names them as the source).
struct ClientOverrides {
  std::string endpoint;
  std::string model;
  std::optional<double> temperature;
  std::optional<std::int64_t> max_tokens;
  std::optional<std::int64_t> timeout_ms;
};

// load_config + the overrides; warnings go to stderr. Throws ConfigError.
ClientConfig load_client_config(const ConfigSearch& search, const ClientOverrides& overrides);

struct AskOptions {
  ConfigSearch search;
  ClientOverrides overrides;
  std::vector<std::string> question;  // the words of the question
  std::string system;                 // system prompt (default: the config's)
  std::string template_name;          // continue | polish | summarise | translate
  std::string language = "English";   // translate: into what
  bool json = false;                  // one JSON object on stdout at the end
  bool stats = false;                 // the time-to-first-token line on stderr
  bool list_templates = false;
  bool save = false;  // store the exchange as a session
};
// Exit status: 0 answered, 1 the request failed or was cut off, 2 bad usage or config, 130 interrupted.
int run_ask(const AskOptions& options);

struct ChatOptions {
  ConfigSearch search;
  ClientOverrides overrides;
  std::string session;  // resume or create this one (default: a new one)
  std::string system;
  std::string db;  // session store (default: session_db of the config, else the store's default)
  std::string kb;  // answer from this knowledge base (clawbot kb), with citations
};
int run_chat(const ChatOptions& options);

// `chat --kb NAME` runs the knowledge base's chat (kb/kb_cmd.h registers it; the client does not link kb).
using ChatKbRunner = std::function<int(const ChatOptions&)>;
void set_chat_kb_runner(ChatKbRunner runner);

// How an answer is stored: complete, length (stopped at max_tokens or the end of the context), partial (cut
// off by a failure) or interrupted; and what was measured of it.
std::string_view answer_state(const ChatOutcome& out);
MessageStats answer_stats(const ChatOutcome& out);

// Fitting a conversation into the model's context: the system prompt and the newest turns stay, the oldest
// turns go first. Token counts are estimated from bytes, calibrated by what the server reported last.
struct ContextFit {
  std::vector<ChatMessage> messages;
  int dropped_messages = 0;
  std::int64_t estimated_tokens = 0;
  bool fits = true;  // false when even the system prompt and the last message are too long
};
ContextFit fit_to_context(std::span<const ChatMessage> conversation, std::int64_t context_tokens,
                          std::int64_t answer_reserve, double tokens_per_byte);
std::int64_t estimate_tokens(const ChatMessage& message, double tokens_per_byte);

}  // namespace clawbot::client
