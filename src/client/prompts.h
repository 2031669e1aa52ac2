// The prompts of the writing and code tasks, one source for `clawbot ask --template`, `clawbot code` and the
// browser chat: the chat reads them from serve or the gateway (GET and POST /v1/clawbot/prompts), which build
// them with these functions and the ones of client/code_prompts.h, so the page and the CLI never drift apart.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace clawbot::client {

// The writing tasks people ask for most: name → system prompt (translate's has a {language} slot).
struct WritingTemplate {
  const char* name;
  const char* description;
  const char* system_prompt;
};
std::span<const WritingTemplate> writing_templates();
// By name ("summarize" is summarise), or null.
const WritingTemplate* find_writing_template(std::string_view name);
// "continue, polish, summarise, translate": for a message that names them.
std::string writing_template_names();
// Its system prompt, with translate's {language} filled in.
std::string writing_system_prompt(const WritingTemplate& chosen, std::string_view language);

inline constexpr std::string_view prompts_route = "/v1/clawbot/prompts";

// GET: {"writing": [{"name", "description"}], "code": [{"name", "description"}]}.
nlohmann::json prompt_tasks();

// POST: {"task", "text", "language"? (translate: into what; default English), "file_name"? (code: its
// language, by extension; default snippet.txt)} → {"task", "messages": [{"role", "content"}]}, the messages
// the CLI sends for that text (the code whole, with its line numbers for a review). A body that is not that
// throws ClawbotError (invalid_request) naming the field.
nlohmann::json prompt_messages(const nlohmann::json& body);

}  // namespace clawbot::client
