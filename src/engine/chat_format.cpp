// The one unit that includes llama.cpp's `common` chat headers (see chat_format.h).
#include "engine/chat_format.h"

#include <algorithm>
#include <exception>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>

#include <chat.h>
#include <json-schema-to-grammar.h>
#include <llama.h>
#include <log.h>

namespace clawbot::engine {

struct ChatParser::State {
  common_chat_parser_params params;
};

struct ChatFormatter::Templates {
  common_chat_templates_ptr templates;
};

struct ChatFormatter::ShapeCache {
  struct Shape {
    std::string generation_prompt;  // what common's parser expects the answer to follow
    FormattedPrompt formatted;      // all but the prompt
  };
  static constexpr std::size_t max_shapes = 64;  // then forgotten all at once: shapes are few in practice
  std::mutex mutex;
  std::unordered_map<std::string, Shape> shapes;
};

namespace {

common_reasoning_format to_common(ReasoningFormat format) {
  switch (format) {
    case ReasoningFormat::none:
      return COMMON_REASONING_FORMAT_NONE;
    case ReasoningFormat::deepseek:
      return COMMON_REASONING_FORMAT_DEEPSEEK;
    case ReasoningFormat::automatic:
      return COMMON_REASONING_FORMAT_AUTO;
  }
  return COMMON_REASONING_FORMAT_AUTO;
}

common_chat_msg to_common(const ChatTurn& turn) {
  common_chat_msg message;
  message.role = turn.role;
  message.content = turn.content;
  message.reasoning_content = turn.reasoning_content;
  message.tool_call_id = turn.tool_call_id;
  message.tool_name = turn.tool_name;
  for (const auto& call : turn.tool_calls) message.tool_calls.push_back({call.name, call.arguments, call.id});
  return message;
}

ChatTurn from_common(const common_chat_msg& message) {
  ChatTurn turn;
  turn.role = message.role.empty() ? "assistant" : message.role;
  turn.content = message.content;
  turn.reasoning_content = message.reasoning_content;
  for (const auto& call : message.tool_calls) turn.tool_calls.push_back({call.id, call.name, call.arguments});
  return turn;
}

bool is_builtin_name(const std::string& name) {
  const auto names = ChatTemplate::builtin_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Where the root rule's body starts; npos when there is none.
std::size_t root_body(const std::string& grammar) {
  static const std::string root = "root ::= ";
  if (grammar.compare(0, root.size(), root) == 0) return root.size();
  const auto line = grammar.find("\n" + root);
  return line == std::string::npos ? line : line + 1 + root.size();
}

// The end of the parenthesized group that starts at `open` (quotes and character classes skipped); npos when
// it does not close on its line.
std::size_t group_end(const std::string& grammar, std::size_t open) {
  int depth = 0;
  for (std::size_t i = open; i < grammar.size() && grammar[i] != '\n'; ++i) {
    const char c = grammar[i];
    if (c == '"' || c == '[') {
      const char close = c == '"' ? '"' : ']';
      for (++i; i < grammar.size() && grammar[i] != close; ++i) {
        if (grammar[i] == '\\') ++i;
      }
    } else if (c == '(') {
      ++depth;
    } else if (c == ')' && --depth == 0) {
      return i;
    }
  }
  return std::string::npos;
}

// common's grammars for tool calls and structured output begin with the generation prompt the template has
// already put at the end of the prompt (llama.cpp's sampler feeds those tokens to the grammar before the
// first sampled one). Our sampler starts the grammar at the first generated token, so that leading literal
// is taken off the root rule, and when the generation prompt also holds a whole thinking block (thinking
// disabled: "<think>\n\n</think>"), the optional thinking group that follows it in the grammar too.
std::string without_generation_prompt(std::string grammar, const common_chat_params& params) {
  const std::string& prompt = params.generation_prompt;
  const auto body = root_body(grammar);
  if (prompt.empty() || body == std::string::npos) return grammar;
  const std::string& think = params.thinking_start_tag;
  const auto think_at = think.empty() ? std::string::npos : prompt.find(think);
  for (const std::string& prefix : {prompt, prompt.substr(0, think_at)}) {
    const std::string literal = gbnf_format_literal(prefix) + " ";
    if (prefix.empty() || grammar.compare(body, literal.size(), literal) != 0) continue;
    grammar.erase(body, literal.size());
    const bool thought =
        think_at != std::string::npos && prefix.size() == think_at &&
        std::any_of(params.thinking_end_tags.begin(), params.thinking_end_tags.end(),
                    [&](const std::string& end) { return prompt.find(end, think_at) != prompt.npos; });
    if (!thought) break;
    const std::string opening = "(" + gbnf_format_literal(think);
    const auto open = grammar.find(opening, body);
    const auto line_end = grammar.find('\n', body);
    if (open == std::string::npos || open > line_end) break;
    const auto close = group_end(grammar, open);
    if (close == std::string::npos || close + 1 >= grammar.size() || grammar[close + 1] != '?') break;
    grammar.erase(open, close + 2 - open + (grammar[close + 2] == ' ' ? 1 : 0));
    break;
  }
  return grammar;
}

// tool_choice "required" (and a named function): common's grammar lets free text come before the calls
// (`until-N? tool-calls`), which a weak model may fill until max_tokens and never call. OpenAI's "required"
// means a call, so the text before it goes: only thinking (where the template has it) may precede the calls.
std::string calls_required(std::string grammar) {
  static const std::string root = "root ::= ";
  const auto start = grammar.compare(0, root.size(), root) == 0 ? 0 : grammar.find("\n" + root);
  if (start == std::string::npos) return grammar;
  auto end = grammar.find('\n', start + 1);
  if (end == std::string::npos) end = grammar.size();
  std::string line = grammar.substr(start, end - start);
  static const std::string tail = " tool-calls";
  if (line.size() < tail.size() || line.compare(line.size() - tail.size(), tail.size(), tail) != 0)
    return grammar;
  // the optional free text just before: " until-<digits>?"
  const auto before = line.rfind(" until-", line.size() - tail.size());
  if (before == std::string::npos || line[line.size() - tail.size() - 1] != '?') return grammar;
  const std::string dropped = line.substr(before, line.size() - tail.size() - before);
  if (dropped.find(' ', 1) != std::string::npos) return grammar;  // not a single "until-N?" element
  line.erase(before, dropped.size());
  grammar.replace(start, end - start, line);
  return grammar;
}

// parallel_tool_calls false: one call. common builds `tool-calls ::= (tool-call space)+` for templates whose
// calls are each wrapped in their own tags (Qwen3's <tool_call>) whatever the flag says.
std::string one_call(std::string grammar) {
  static const std::string head = "tool-calls ::= (";
  const auto start = grammar.compare(0, head.size(), head) == 0 ? 0 : grammar.find("\n" + head);
  if (start == std::string::npos) return grammar;
  const auto open = grammar.find('(', start);
  const auto close = group_end(grammar, open);
  if (close == std::string::npos || close + 1 >= grammar.size() || grammar[close + 1] != '+') return grammar;
  const auto after = close + 2;
  if (after < grammar.size() && grammar[after] != '\n') return grammar;
  grammar.erase(close, 2);  // ")+"
  grammar.erase(open, 1);   // "("
  return grammar;
}

}  // namespace

ReasoningFormat reasoning_format_from_name(std::string_view name) {
  if (name == "none") return ReasoningFormat::none;
  if (name == "deepseek") return ReasoningFormat::deepseek;
  if (name == "auto") return ReasoningFormat::automatic;
  throw EngineError("unknown reasoning format '" + std::string(name) +
                    "'; it is one of none, deepseek, auto");
}

const char* reasoning_format_name(ReasoningFormat format) {
  switch (format) {
    case ReasoningFormat::none:
      return "none";
    case ReasoningFormat::deepseek:
      return "deepseek";
    case ReasoningFormat::automatic:
      return "auto";
  }
  return "auto";
}

ChatTurn ChatParser::parse(const std::string& text, bool partial) const {
  if (!state_) {
    ChatTurn turn;
    turn.role = "assistant";
    turn.content = text;
    return turn;
  }
  try {
    return from_common(common_chat_parse(text, partial, state_->params));
  } catch (const std::exception& e) {
    throw EngineError(e.what());
  }
}

ChatFormatter::ChatFormatter(ChatFormatter&&) noexcept = default;
ChatFormatter& ChatFormatter::operator=(ChatFormatter&&) noexcept = default;
ChatFormatter::~ChatFormatter() = default;

ChatFormatter ChatFormatter::create(const Model& model, const std::string& name,
                                    const std::string& override_source, ReasoningFormat reasoning_format) {
  ChatFormatter formatter;
  formatter.tokenizer_.emplace(model);
  formatter.name_ = name;
  formatter.reasoning_format_ = reasoning_format;
  // A built-in name goes to libllama's own formatter (no tools); chatml has a Jinja form in common.
  formatter.jinja_ =
      override_source.empty() || override_source == "chatml" || !is_builtin_name(override_source);
  if (override_source.empty() && model.info().chat_template.empty()) {
    throw EngineError("model '" + model.info().name +
                      "' has no chat template; give one with --chat-template NAME|FILE (a Jinja file, or a "
                      "built-in name such as chatml, llama3, phi3)");
  }
  formatter.templates_ = std::make_unique<Templates>();
  formatter.shapes_ = std::make_unique<ShapeCache>();
  // common warns through its own log on every request the fast path renders ("Forcing pure content
  // template"); its errors still show. Set once, before any request (not thread-safe in common).
  static std::once_flag quiet;
  std::call_once(quiet, [] { common_log_set_verbosity_thold(LOG_LEVEL_ERROR); });
  try {
    formatter.templates_->templates = common_chat_templates_init(model.get(), override_source);
  } catch (const std::exception& e) {
    throw EngineError("chat template " + name + " is not Jinja that llama.cpp can run: " + e.what());
  }
  formatter.source_ = common_chat_templates_source(formatter.templates_->templates.get());
  if (formatter.jinja_) {
    const auto caps = common_chat_templates_get_caps(formatter.templates_->templates.get());
    const auto tools = caps.find("supports_tools");
    const auto calls = caps.find("supports_tool_calls");
    formatter.supports_tools_ =
        (tools != caps.end() && tools->second) || (calls != caps.end() && calls->second);
  }
  // A template that cannot format a plain conversation is refused now, not at the first request.
  ChatFormatRequest probe;
  probe.messages.push_back({"user", "hello", {}, {}, {}, {}});
  formatter.format(probe);
  return formatter;
}

namespace {

// The request as common's template inputs.
common_chat_templates_inputs template_inputs(const ChatFormatRequest& request, bool jinja,
                                             ReasoningFormat reasoning_format) {
  common_chat_templates_inputs inputs;
  inputs.use_jinja = jinja;
  for (const auto& m : request.messages) inputs.messages.push_back(to_common(m));
  for (const auto& t : request.tools) inputs.tools.push_back({t.name, t.description, t.parameters});
  inputs.tool_choice = request.tool_mode == ToolMode::required ? COMMON_CHAT_TOOL_CHOICE_REQUIRED
                       : request.tool_mode == ToolMode::none   ? COMMON_CHAT_TOOL_CHOICE_NONE
                                                               : COMMON_CHAT_TOOL_CHOICE_AUTO;
  inputs.parallel_tool_calls = request.parallel_tool_calls;
  inputs.json_schema = request.json_schema;
  inputs.add_generation_prompt = request.add_generation_prompt;
  if (!request.add_generation_prompt && !request.messages.empty() &&
      request.messages.back().role == "assistant")
    inputs.continue_final_message = COMMON_CHAT_CONTINUATION_AUTO;
  inputs.reasoning_format = to_common(reasoning_format);
  if (request.enable_thinking) {
    inputs.enable_thinking = *request.enable_thinking;
    inputs.chat_template_kwargs["enable_thinking"] = *request.enable_thinking ? "true" : "false";
  }
  return inputs;
}

// The key of a request's shape: everything but its messages.
std::string shape_key(const ChatFormatRequest& request) {
  std::string key;
  const auto add = [&key](std::string_view part) {
    key.append(std::to_string(part.size())).append(":").append(part);
  };
  for (const auto& tool : request.tools) {
    add(tool.name);
    add(tool.description);
    add(tool.parameters);
  }
  key.append("|").append(std::to_string(static_cast<int>(request.tool_mode)));
  key.append(request.parallel_tool_calls ? "p" : "s");
  key.append(request.enable_thinking ? (*request.enable_thinking ? "t" : "f") : "d");
  add(request.json_schema);
  return key;
}

}  // namespace

FormattedPrompt ChatFormatter::format(const ChatFormatRequest& request) const {
  if (!jinja_ || !request.add_generation_prompt) return format_fully(request, nullptr);
  // The prompt alone: common renders the template with the request's messages and tools, without analysing
  // it (force_pure_content); nullopt when that fails (the full path then says why).
  const auto render_only = [&]() -> std::optional<common_chat_params> {
    auto inputs = template_inputs(request, jinja_, reasoning_format_);
    inputs.force_pure_content = true;
    try {
      return common_chat_templates_apply(templates_->templates.get(), inputs);
    } catch (const std::exception&) {
      return std::nullopt;
    }
  };
  const std::string key = shape_key(request);
  std::optional<ShapeCache::Shape> known;
  {
    const std::lock_guard lock(shapes_->mutex);
    if (auto it = shapes_->shapes.find(key); it != shapes_->shapes.end()) known = it->second;
  }
  if (known) {
    // Used only when this conversation ends in the same generation prompt the parser was built for.
    if (auto rendered = render_only(); rendered && rendered->generation_prompt == known->generation_prompt) {
      FormattedPrompt out = std::move(known->formatted);
      out.prompt = std::move(rendered->prompt);
      return out;
    }
  }
  std::string generation_prompt;
  FormattedPrompt out = format_fully(request, &generation_prompt);
  // Kept only when rendering alone gives exactly the full path's prompt for this request (templates that
  // common formats by hand, or whose prompt depends on the analysis, always take the full path).
  if (auto rendered = render_only();
      rendered && rendered->prompt == out.prompt && rendered->generation_prompt == generation_prompt) {
    ShapeCache::Shape shape{std::move(generation_prompt), out};
    shape.formatted.prompt.clear();
    const std::lock_guard lock(shapes_->mutex);
    if (shapes_->shapes.size() >= ShapeCache::max_shapes) shapes_->shapes.clear();
    shapes_->shapes.insert_or_assign(key, std::move(shape));
  }
  return out;
}

FormattedPrompt ChatFormatter::format_fully(const ChatFormatRequest& request,
                                            std::string* generation_prompt) const {
  const bool has_tools = !request.tools.empty() && request.tool_mode != ToolMode::none;
  if (has_tools && !jinja_) {
    throw ChatFormatError("the built-in chat template '" + name_ +
                              "' cannot present tools to the model; serve it with a Jinja template "
                              "(--chat-template FILE, or the model's own)",
                          "tools");
  }
  common_chat_templates_inputs inputs = template_inputs(request, jinja_, reasoning_format_);
  common_chat_params params;
  try {
    params = common_chat_templates_apply(templates_->templates.get(), inputs);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    if (what.find("JSON schema conversion") != std::string::npos)
      throw ChatFormatError(what, "response_format");
    throw ChatFormatError("chat template " + name_ + " cannot format this conversation: " + what, "messages");
  }

  if (generation_prompt) *generation_prompt = params.generation_prompt;
  FormattedPrompt out;
  out.prompt = std::move(params.prompt);
  out.format = common_chat_format_name(params.format);
  out.grammar_lazy = params.grammar_lazy;
  if (!params.grammar.empty()) {
    out.grammar = params.grammar_lazy ? params.grammar : without_generation_prompt(params.grammar, params);
    if (has_tools && request.tool_mode == ToolMode::required)
      out.grammar = calls_required(std::move(out.grammar));
    if (has_tools && !request.parallel_tool_calls) out.grammar = one_call(std::move(out.grammar));
  }
  // Triggers as llama.cpp's sampler takes them: a word that is one preserved token triggers on that token,
  // any other word on its text, a pattern as given (PATTERN_FULL anchored at both ends).
  std::vector<Token> preserved;
  for (const auto& text : params.preserved_tokens) {
    const auto ids = tokenizer_->tokenize(text, false, true);
    if (ids.size() == 1) preserved.push_back(ids[0]);
  }
  for (const auto& trigger : params.grammar_triggers) {
    switch (trigger.type) {
      case COMMON_GRAMMAR_TRIGGER_TYPE_WORD: {
        const auto ids = tokenizer_->tokenize(trigger.value, false, true);
        if (ids.size() == 1 && std::find(preserved.begin(), preserved.end(), ids[0]) != preserved.end()) {
          out.grammar_trigger_tokens.push_back(ids[0]);
        } else {
          out.grammar_trigger_patterns.push_back(regex_escape(trigger.value));
        }
        break;
      }
      case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN:
        out.grammar_trigger_patterns.push_back(trigger.value);
        break;
      case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL: {
        const auto& p = trigger.value;
        out.grammar_trigger_patterns.push_back(
            p.empty() ? "^$" : (p.front() != '^' ? "^" : "") + p + (p.back() != '$' ? "$" : ""));
        break;
      }
      case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN:
        out.grammar_trigger_tokens.push_back(trigger.token);
        break;
    }
  }
  if (out.grammar_lazy && out.grammar_trigger_patterns.empty() && out.grammar_trigger_tokens.empty()) {
    out.grammar.clear();  // a lazy grammar nothing can trigger constrains nothing
    out.grammar_lazy = false;
  }
  out.additional_stops = std::move(params.additional_stops);
  out.preserved_tokens = preserved;

  auto state = std::make_shared<ChatParser::State>();
  state->params = common_chat_parser_params(params);
  state->params.reasoning_format = to_common(reasoning_format_);
  state->params.parse_tool_calls = has_tools;
  state->params.is_continuation = inputs.continue_final_message != COMMON_CHAT_CONTINUATION_NONE;
  if (!params.parser.empty()) state->params.parser.load(params.parser);
  out.parser = ChatParser(std::move(state));
  return out;
}

std::string json_schema_grammar(const std::string& schema, const std::string& field) {
  try {
    return json_schema_to_grammar(common_json::parse(schema));
  } catch (const std::exception& e) {
    throw ChatFormatError(e.what(), field);
  }
}

}  // namespace clawbot::engine
