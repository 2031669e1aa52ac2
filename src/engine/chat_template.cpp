#include <llama.h>

#include "engine/engine.h"

namespace clawbot::engine {
namespace {

std::string joined_builtin_names() {
  std::string all;
  for (const auto& n : ChatTemplate::builtin_names()) all += (all.empty() ? "" : ", ") + n;
  return all;
}

// libllama recognises a template by its text or its built-in name; -1 means it does not know it.
int32_t render(const std::string& source, std::span<const ChatMessage> messages, bool add_assistant,
               std::string& out) {
  std::vector<llama_chat_message> chat;
  chat.reserve(messages.size());
  size_t total = 0;
  for (const auto& m : messages) {
    chat.push_back({m.role.c_str(), m.content.c_str()});
    total += m.role.size() + m.content.size();
  }
  out.assign(total * 2 + 256, '\0');
  int32_t n = llama_chat_apply_template(source.c_str(), chat.data(), chat.size(), add_assistant, out.data(),
                                        static_cast<int32_t>(out.size()));
  if (n > static_cast<int32_t>(out.size())) {
    out.assign(static_cast<size_t>(n), '\0');
    n = llama_chat_apply_template(source.c_str(), chat.data(), chat.size(), add_assistant, out.data(),
                                  static_cast<int32_t>(out.size()));
  }
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return n;
}

}  // namespace

std::vector<std::string> ChatTemplate::builtin_names() {
  const int32_t n = llama_chat_builtin_templates(nullptr, 0);
  std::vector<const char*> names(static_cast<size_t>(n));
  llama_chat_builtin_templates(names.data(), names.size());
  return {names.begin(), names.end()};
}

ChatTemplate ChatTemplate::from_model(const Model& model) {
  const auto& source = model.info().chat_template;
  if (source.empty()) {
    throw EngineError("model '" + model.info().name +
                      "' has no chat template; pick a built-in one with --chat-template NAME (" +
                      joined_builtin_names() + ")");
  }
  std::string probe;
  const std::vector<ChatMessage> hello{{"user", "hello"}};
  if (render(source, hello, true, probe) < 0) {
    throw EngineError("the chat template of model '" + model.info().name +
                      "' is not one libllama can apply; pick a built-in one with --chat-template NAME (" +
                      joined_builtin_names() + ")");
  }
  return ChatTemplate(model.info().name + " (from model)", source);
}

ChatTemplate ChatTemplate::builtin(std::string_view name) {
  for (const auto& n : builtin_names()) {
    if (n == name) return ChatTemplate(n, n);
  }
  throw EngineError("unknown chat template '" + std::string(name) +
                    "'; built-in templates are: " + joined_builtin_names());
}

std::string ChatTemplate::apply(std::span<const ChatMessage> messages, bool add_assistant_prefix) const {
  std::string out;
  if (render(source_, messages, add_assistant_prefix, out) < 0) {
    throw EngineError("chat template '" + name_ + "' cannot format these messages");
  }
  return out;
}

}  // namespace clawbot::engine
