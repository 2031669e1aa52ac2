// The model's chat format, from llama.cpp's `common` chat layer: its Jinja chat template (or a built-in one)
// turns messages, tools and options into a prompt, with the grammar that constrains the answer (tool calls,
// structured output) and the parser that reads the answer back into content, reasoning and tool calls.
//
// This header shows only our own types: `common` is compiled against its own (vendored) nlohmann JSON, so its
// headers stay inside chat_format.cpp.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"

namespace clawbot::engine {

struct ChatToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text
};

// A message as the template sees it.
struct ChatTurn {
  std::string role;  // system, user, assistant, tool
  std::string content;
  std::string reasoning_content;
  std::vector<ChatToolCall> tool_calls;
  std::string tool_call_id;
  std::string tool_name;
};

struct ChatToolSpec {
  std::string name;
  std::string description;
  std::string parameters;  // JSON schema, as JSON text
};

// llama-server's --reasoning-format: none keeps thinking in the content; deepseek and auto move it to
// reasoning_content.
enum class ReasoningFormat { none, deepseek, automatic };
// none, deepseek, auto; throws EngineError naming the choices.
ReasoningFormat reasoning_format_from_name(std::string_view name);
const char* reasoning_format_name(ReasoningFormat format);

enum class ToolMode { automatic, none, required };

struct ChatFormatRequest {
  std::vector<ChatTurn> messages;
  std::vector<ChatToolSpec> tools;
  ToolMode tool_mode = ToolMode::automatic;
  bool parallel_tool_calls = true;
  std::string json_schema;  // the answer must be JSON valid for it (JSON text); empty: free text
  bool add_generation_prompt = true;
  std::optional<bool> enable_thinking;  // none: the template's default
};

// Reads a model's answer back into a message: content, reasoning and tool calls. Shareable between threads
// (parsing keeps no state).
class ChatParser {
 public:
  struct State;
  ChatParser() = default;  // the answer is all content
  explicit ChatParser(std::shared_ptr<const State> state) : state_(std::move(state)) {}
  // `partial`: the answer so far (a stream); a tool call being written comes back with the arguments so far.
  // Throws EngineError when a whole answer does not follow the format.
  ChatTurn parse(const std::string& text, bool partial) const;

 private:
  std::shared_ptr<const State> state_;
};

// A request formatted: the prompt, and how to constrain and read the answer.
struct FormattedPrompt {
  std::string prompt;
  std::string grammar;  // GBNF; empty: none
  bool grammar_lazy = false;
  std::vector<std::string> grammar_trigger_patterns;
  std::vector<Token> grammar_trigger_tokens;
  std::vector<std::string> additional_stops;
  std::vector<Token> preserved_tokens;  // the format's tags that are one token each: shown in the answer
  std::string format;  // common's name for the answer's format (peg-native, content-only, ...)
  ChatParser parser;
};

// A request the template cannot format, or a schema the grammar converter cannot handle: its message says
// what (the converter's own words), `field` which part of the request.
class ChatFormatError : public EngineError {
 public:
  ChatFormatError(const std::string& message, std::string field)
      : EngineError(message), field_(std::move(field)) {}
  const std::string& field() const noexcept { return field_; }

 private:
  std::string field_;
};

class ChatFormatter {
 public:
  // `override_source`: empty for the model's own template; a built-in name (chatml, llama3, ...; no tools),
  // or Jinja source. Throws EngineError when there is no template to use or the Jinja does not parse.
  static ChatFormatter create(const Model& model, const std::string& name, const std::string& override_source,
                              ReasoningFormat reasoning_format);
  ChatFormatter(ChatFormatter&&) noexcept;
  ChatFormatter& operator=(ChatFormatter&&) noexcept;
  ~ChatFormatter();

  // Throws ChatFormatError for what the template or the grammar converter refuses.
  FormattedPrompt format(const ChatFormatRequest& request) const;

  const std::string& name() const noexcept { return name_; }
  const std::string& source() const noexcept { return source_; }
  bool jinja() const noexcept { return jinja_; }
  bool supports_tools() const noexcept { return supports_tools_; }
  ReasoningFormat reasoning_format() const noexcept { return reasoning_format_; }

 private:
  struct Templates;
  struct ShapeCache;
  ChatFormatter() = default;
  FormattedPrompt format_fully(const ChatFormatRequest& request, std::string* generation_prompt) const;
  std::unique_ptr<Templates> templates_;
  // What a request's shape (tools, tool choice, schema, thinking) makes of the answer (grammar, triggers,
  // parser) does not depend on its messages: kept per shape, so that a later request with the same shape
  // renders only its prompt (3 template renders instead of common's template analysis, dozens of renders).
  std::unique_ptr<ShapeCache> shapes_;
  std::optional<Tokenizer> tokenizer_;  // the trigger words and preserved tokens as token ids
  std::string name_;
  std::string source_;
  bool jinja_ = true;
  bool supports_tools_ = false;
  ReasoningFormat reasoning_format_ = ReasoningFormat::automatic;
};

// A JSON schema as a GBNF grammar (common's json-schema-to-grammar); throws ChatFormatError (field
// `field`) with the converter's message when it cannot convert it.
std::string json_schema_grammar(const std::string& schema, const std::string& field);

}  // namespace clawbot::engine
