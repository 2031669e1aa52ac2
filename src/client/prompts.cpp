#include "client/prompts.h"

#include <filesystem>
#include <limits>
#include <string>

#include "client/code_prompts.h"
#include "common/error.h"
#include "common/json_read.h"
#include "common/text.h"

namespace clawbot::client {

namespace {

using nlohmann::json;

// A string member of the request, or `fallback` when absent; anything else is a 400 naming it.
std::string string_member(const json& body, const char* name, const char* fallback) {
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) {
    if (fallback == nullptr)
      throw_invalid(std::string("'") + name + "' is missing: it must be a string", name);
    return fallback;
  }
  if (!it->is_string())
    throw_invalid(std::string("'") + name + "' must be a string, got " + json_read::describe(*it), name);
  return it->get<std::string>();
}

json messages_json(const std::vector<ChatMessage>& messages) {
  json out = json::array();
  for (const auto& m : messages) out.push_back({{"role", m.role}, {"content", m.content}});
  return out;
}

// What `clawbot code review|tests` sends for this code, whole (the page's user pasted it; a too-long one is
// the server's context_length_exceeded, as for any chat).
json code_task(std::string_view task, const std::string& text, const std::string& file_name) {
  const std::filesystem::path file(file_name);
  const Language language = language_for(file);
  check_source_text(text, file_name);
  const LineWindow window = window_around_line(text, 1, std::numeric_limits<std::size_t>::max());
  if (task == "review") return messages_json(review_messages(language, file_name, window));
  return messages_json(
      tests_messages(language, file_name, window, suggested_test_path(file).filename().string()));
}

}  // namespace

std::span<const WritingTemplate> writing_templates() {
  static const WritingTemplate templates[] = {
      {"continue", "continue the text in the same voice",
       "Continue the text the user gives you, in the same language, style and voice. Write only the "
       "continuation, without repeating the text or commenting on it."},
      {"polish", "fix grammar and improve clarity, same meaning",
       "Improve the text the user gives you: correct grammar, spelling and punctuation, and make it clearer "
       "and "
       "smoother, keeping its meaning, language and tone. Write only the improved text."},
      {"summarise", "a short summary of the main points",
       "Summarise the text the user gives you: its main points in a few sentences or a short bulleted list, "
       "in "
       "the text's language. Write only the summary."},
      {"translate", "translate into --to LANGUAGE (default English)",
       "Translate the text the user gives you into {language}. Keep its meaning, tone and formatting. Write "
       "only the translation."},
  };
  return templates;
}

const WritingTemplate* find_writing_template(std::string_view name) {
  for (const auto& t : writing_templates())
    if (name == t.name || (name == "summarize" && std::string_view(t.name) == "summarise")) return &t;
  return nullptr;
}

std::string writing_template_names() {
  std::string names;
  for (const auto& t : writing_templates()) names += (names.empty() ? "" : ", ") + std::string(t.name);
  return names;
}

std::string writing_system_prompt(const WritingTemplate& chosen, std::string_view language) {
  std::string system = chosen.system_prompt;
  constexpr std::string_view slot = "{language}";
  for (auto at = system.find(slot); at != std::string::npos; at = system.find(slot, at + language.size()))
    system.replace(at, slot.size(), language);
  return system;
}

json prompt_tasks() {
  json writing = json::array();
  for (const auto& t : writing_templates())
    writing.push_back({{"name", t.name}, {"description", t.description}});
  const json code = json::array({
      {{"name", "review"}, {"description", "likely bugs, one line each (clawbot code review)"}},
      {{"name", "tests"}, {"description", "a unit-test file for the code (clawbot code tests)"}},
  });
  return {{"writing", std::move(writing)}, {"code", code}};
}

json prompt_messages(const json& body) {
  if (!body.is_object()) throw_invalid("the body must be a JSON object, got " + json_read::describe(body));
  const std::string task = string_member(body, "task", nullptr);
  const std::string text = string_member(body, "text", nullptr);
  if (text::trim(text, text::any_space).empty())
    throw_invalid("'text' is empty: there is nothing to work on", "text");
  json messages;
  if (task == "review" || task == "tests") {
    try {
      messages = code_task(task, text, string_member(body, "file_name", "snippet.txt"));
    } catch (const CodeInputError& e) {
      throw_invalid(e.what(), "text");
    }
  } else {
    const WritingTemplate* chosen = find_writing_template(task);
    if (chosen == nullptr)
      throw_invalid("no task " + json_read::describe(json(task)) + ": there are " + writing_template_names() +
                        ", review and tests",
                    "task");
    // As `clawbot ask --template NAME` sends piped text: the template as the system prompt, the text as the
    // question.
    messages =
        messages_json({{"system", writing_system_prompt(*chosen, string_member(body, "language", "English"))},
                       {"user", text}});
  }
  return {{"task", task}, {"messages", std::move(messages)}};
}

}  // namespace clawbot::client
