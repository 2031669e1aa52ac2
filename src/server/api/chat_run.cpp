// run_chat: one chat request, whatever protocol asked, from its messages to the sink's events.
#include <algorithm>
#include <cctype>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "common/json_read.h"
#include "server/api/chat.h"
#include "server/api/fields.h"

namespace clawbot::server::api {
namespace {

namespace asio = boost::asio;

// What `text` adds to `before`; empty when it does not extend it (a parse that changed its mind about text it
// had already shown cannot take it back in a stream).
std::string added(const std::string& before, const std::string& now) {
  if (now.size() <= before.size() || now.compare(0, before.size(), before) != 0) return {};
  return now.substr(before.size());
}

// What a choice's message gained between two parses: content, reasoning, new tool calls (id and name first)
// and the arguments of calls already begun.
ChatDelta message_delta(int choice, const ChatMessage& before, const ChatMessage& now) {
  ChatDelta delta;
  delta.choice = choice;
  delta.content = added(before.content, now.content);
  delta.reasoning_content = added(before.reasoning_content, now.reasoning_content);
  for (std::size_t i = 0; i < now.tool_calls.size(); ++i) {
    const ToolCall& call = now.tool_calls[i];
    ToolCallDelta piece;
    piece.index = static_cast<int>(i);
    if (i < before.tool_calls.size()) {
      piece.arguments = added(before.tool_calls[i].arguments, call.arguments);
      if (piece.arguments.empty()) continue;
    } else {
      piece.id = call.id;
      piece.name = call.name;
      piece.arguments = call.arguments;
    }
    delta.tool_calls.push_back(std::move(piece));
  }
  return delta;
}

bool is_blank(const std::string& text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
}

bool empty(const ChatDelta& delta) {
  return delta.content.empty() && delta.reasoning_content.empty() && delta.tool_calls.empty();
}

// One choice's text as it grows, and the message it parses into so far.
struct ChoiceState {
  std::string raw;
  ChatMessage parsed;            // the last parse (partial while it streams), as far as it has been shown
  std::vector<std::string> ids;  // tool call ids, kept from the parse that first saw each call
  FinishReason finish = FinishReason::stop;
  std::string stop_string;  // the stop string that ended it, if one did
};

ChatMessage from_turn(engine::ChatTurn turn) {
  ChatMessage message;
  message.role = "assistant";
  message.content = std::move(turn.content);
  message.reasoning_content = std::move(turn.reasoning_content);
  for (auto& call : turn.tool_calls)
    message.tool_calls.push_back({std::move(call.id), std::move(call.name), std::move(call.arguments)});
  return message;
}

engine::ChatTurn to_turn(const ChatMessage& message) {
  engine::ChatTurn turn;
  turn.role = message.role;
  turn.content = message.content;
  turn.reasoning_content = message.reasoning_content;
  for (const auto& call : message.tool_calls) turn.tool_calls.push_back({call.id, call.name, call.arguments});
  turn.tool_call_id = message.tool_call_id;
  turn.tool_name = message.tool_name;
  return turn;
}

// The chat format's request: tool_choice "named" is "required" with only that tool; json_object is any
// object.
engine::ChatFormatRequest format_request(const ChatRequest& request) {
  engine::ChatFormatRequest out;
  out.messages.reserve(request.messages.size());
  for (const auto& m : request.messages) out.messages.push_back(to_turn(m));
  for (const auto& tool : request.tools) {
    if (request.tool_choice == ToolChoice::named && tool.name != request.tool_choice_name) continue;
    out.tools.push_back({tool.name, tool.description, tool.parameters});
  }
  switch (request.tool_choice) {
    case ToolChoice::automatic:
      out.tool_mode = engine::ToolMode::automatic;
      break;
    case ToolChoice::none:
      out.tool_mode = engine::ToolMode::none;
      break;
    case ToolChoice::required:
      out.tool_mode = engine::ToolMode::required;
      break;
    case ToolChoice::named:
      if (out.tools.empty()) {
        throw_invalid(
            "'tool_choice' names the function '" + request.tool_choice_name + "', which is not among 'tools'",
            "tool_choice");
      }
      out.tool_mode = engine::ToolMode::required;
      break;
  }
  if ((request.tool_choice == ToolChoice::required) && request.tools.empty())
    throw_invalid("'tool_choice' is \"required\" but no 'tools' are given", "tool_choice");
  out.parallel_tool_calls = request.parallel_tool_calls && request.tool_choice != ToolChoice::named;
  if (request.format.kind == OutputFormat::Kind::json_object) out.json_schema = R"({"type":"object"})";
  if (request.format.kind == OutputFormat::Kind::json_schema) out.json_schema = request.format.schema;
  out.add_generation_prompt = request.add_generation_prompt;
  out.enable_thinking = request.enable_thinking;
  return out;
}

// The answer's text as a message, by the chat format's parser. A stream's partial answer that does not
// parse yet gives nothing new; a whole answer that does not follow the format is all content.
std::optional<ChatMessage> parse_answer(const engine::ChatParser& parser, const std::string& raw,
                                        bool partial, bool final) {
  try {
    return from_turn(parser.parse(raw, partial));
  } catch (const engine::EngineError& e) {
    if (!final) return std::nullopt;
    spdlog::debug("chat answer kept as content: {}", e.what());
    ChatMessage message;
    message.role = "assistant";
    message.content = raw;
    return message;
  }
}

class ChatRun {
 public:
  ChatRun(const ServeContext& ctx, http::Exchange& ex, const ChatRequest& request, ChatSink& sink)
      : ctx_(ctx),
        ex_(ex),
        request_(request),
        sink_(sink),
        jobs_(ctx, ex, request.common),
        choices_(static_cast<std::size_t>(request.common.n)) {}

  asio::awaitable<void> run() {
    formatted_ = format_chat(ctx_, request_);  // throws: the route answers in its shape
    const int prompt_tokens = static_cast<int>(formatted_.tokens.size());
    if (!jobs_.submit(std::move(formatted_.tokens), formatted_.sampling, formatted_.stop,
                      formatted_.preserved_tokens)) {
      const Error full = queue_full_error();
      co_await sink_.fail(full);
      co_return;
    }
    if (!stream()) jobs_.watch_client();
    if (!co_await sink_.begin(request_, prompt_tokens)) co_return;
    while (!jobs_.all_done()) {
      const auto event = co_await jobs_.next();
      if (!event) {  // the client left (no answer: the access log says 499), or the scheduler dropped the job
        if (!jobs_.client_gone()) co_await fail(RequestJobs::shutting_down_error());
        co_return;
      }
      if (!co_await take(*event)) co_return;
    }
    std::vector<ChatChoice> answer;
    for (std::size_t i = 0; i < choices_.size(); ++i) {
      ChatChoice choice;
      choice.index = static_cast<int>(i);
      choice.message = std::move(choices_[i].parsed);
      choice.finish = choices_[i].finish == FinishReason::length ? ChatFinish::length
                      : choice.message.tool_calls.empty()        ? ChatFinish::stop
                                                                 : ChatFinish::tool_calls;
      // Only the client's own stop strings: the template's (its end-of-turn text) are not the client's.
      const auto& stops = request_.common.stop;
      if (std::find(stops.begin(), stops.end(), choices_[i].stop_string) != stops.end())
        choice.stop_sequence = choices_[i].stop_string;
      answer.push_back(std::move(choice));
    }
    jobs_.record_success(openai_finish_reason(answer.front().finish));
    if (!stream()) ex_.stop_watching();  // before a write: it cancels the socket's waits
    const GenerationEvent& totals = jobs_.totals();
    const ChatUsage usage{totals.prompt_tokens, totals.cached_tokens, totals.completion_tokens,
                          totals.prompt_ms,     totals.generation_ms, totals.queue_ms};
    co_await sink_.finish(answer, usage);
  }

 private:
  bool stream() const { return request_.common.stream; }

  asio::awaitable<void> fail(const Error& error) {
    if (!stream()) ex_.stop_watching();
    co_await sink_.fail(error);
  }

  // One event from the scheduler; false when the answer has ended (failed, or the client left).
  asio::awaitable<bool> take(const GenerationEvent& event) {
    if (event.error) {
      jobs_.note_error(*event.error);
      co_await fail(*event.error);
      co_return false;
    }
    if (RequestJobs::is_heartbeat(event)) {
      if (!stream()) co_return true;
      co_return co_await sink_.keep_alive();
    }
    jobs_.observe_timing(event);
    ChoiceState& choice = choices_[static_cast<std::size_t>(event.choice)];
    choice.raw += event.text;
    if (event.done) {
      choice.finish = event.finish_reason;
      choice.stop_string = event.stop_string;
      jobs_.count_finished(event);
    }
    // A whole answer is parsed once, at its end; a stream after every piece, to send what it added.
    if (!stream() && !event.done) co_return true;
    // An answer cut by max_tokens is read as far as it goes (a tool call with the arguments it has).
    auto parsed = parse_answer(formatted_.parser, choice.raw,
                               !event.done || event.finish_reason == FinishReason::length, event.done);
    if (!parsed) co_return true;
    if (!event.done) {  // a call is shown once its name is whole (its first piece carries the name)
      auto& calls = parsed->tool_calls;
      calls.erase(std::find_if(calls.begin(), calls.end(), [](const ToolCall& c) { return c.name.empty(); }),
                  calls.end());
    }
    for (std::size_t i = 0; i < parsed->tool_calls.size(); ++i) {
      ToolCall& call = parsed->tool_calls[i];
      if (i == choice.ids.size()) choice.ids.push_back(call.id.empty() ? new_id("call_") : call.id);
      call.id = choice.ids[i];
    }
    // Whitespace a grammar lets come before a tool call is no content: it is held back until text follows,
    // and dropped when the answer is calls.
    if (is_blank(parsed->content) && (!event.done || !parsed->tool_calls.empty())) parsed->content.clear();
    const ChatDelta delta = message_delta(event.choice, choice.parsed, *parsed);
    choice.parsed = std::move(*parsed);
    if (!stream() || empty(delta)) co_return true;
    co_return co_await sink_.delta(delta);
  }

  const ServeContext& ctx_;
  http::Exchange& ex_;
  const ChatRequest& request_;
  ChatSink& sink_;
  FormattedChat formatted_;
  RequestJobs jobs_;
  std::vector<ChoiceState> choices_;
};

// Patterns a grammar cannot enforce, refused rather than dropped: common's converter drops a pattern that is
// not anchored (^...$; JSON Schema's patterns match anywhere in the string) and reads group modifiers such as
// lookarounds ((?=, (?<=, (?!) as text, each time answering with a grammar weaker than the schema.
void check_schema_patterns(const std::string& schema_text, const std::string& field) {
  const auto schema = json_read::parse(schema_text);
  if (!schema.value) return;  // the converter names what is wrong with it
  const std::function<void(const nlohmann::json&)> walk = [&](const nlohmann::json& node) {
    if (node.is_array()) {
      for (const auto& item : node) walk(item);
      return;
    }
    if (!node.is_object()) return;
    for (const auto& [key, value] : node.items()) {
      if (key == "pattern" && value.is_string()) {
        const auto& pattern = value.get_ref<const std::string&>();
        if (pattern.size() < 2 || pattern.front() != '^' || pattern.back() != '$') {
          throw_invalid("'" + field + "' has a JSON schema that cannot be enforced: its pattern " +
                            json_read::describe(value, 80) +
                            " is not anchored (^...$); a pattern matching anywhere in the string cannot be "
                            "enforced by a grammar",
                        field);
        }
        if (pattern.find("(?") != std::string::npos) {
          throw_invalid("'" + field + "' has a JSON schema that cannot be enforced: its pattern " +
                            json_read::describe(value, 80) +
                            " uses a group modifier or lookaround ((?...)), which a grammar cannot enforce",
                        field);
        }
      } else if (key != "enum" && key != "const" && key != "default" && key != "examples") {
        walk(value);  // (values, not schemas: a "pattern" inside them is data)
      }
    }
  };
  walk(*schema.value);
}

// Texts (schemas, grammars) that passed a check, by their text: each checked once (converting a schema or
// parsing a grammar costs as much as the rest of a short request), then trusted. Bounded; forgotten all at
// once when full.
class CheckedTexts {
 public:
  bool contains(const std::string& text) {
    const std::lock_guard lock(mutex_);
    return texts_.contains(text);
  }
  void add(const std::string& text) {
    const std::lock_guard lock(mutex_);
    if (texts_.size() >= 256) texts_.clear();
    texts_.insert(text);
  }

 private:
  std::mutex mutex_;
  std::unordered_set<std::string> texts_;
};

CheckedTexts& accepted_schemas() {
  static CheckedTexts schemas;
  return schemas;
}

CheckedTexts& accepted_grammars() {
  static CheckedTexts grammars;
  return grammars;
}

}  // namespace

const char* openai_finish_reason(ChatFinish finish) {
  switch (finish) {
    case ChatFinish::stop:
      return "stop";
    case ChatFinish::length:
      return "length";
    case ChatFinish::tool_calls:
      return "tool_calls";
  }
  return "stop";
}

FormattedChat format_chat(const ServeContext& ctx, const ChatRequest& request) {
  if (!ctx.chat_template) {
    throw_invalid(ctx.chat_template_problem + "; /v1/completions works without one", "messages",
                  "no_chat_template");
  }
  const engine::ChatFormatRequest input = format_request(request);
  engine::FormattedPrompt prompt;
  try {
    // A schema the converter cannot enforce is refused before anything runs, in the converter's words.
    for (const auto& tool : input.tools) {
      if (accepted_schemas().contains(tool.parameters)) continue;
      check_schema_patterns(tool.parameters, "tools");
      accepted_schemas().add(tool.parameters);
    }
    if (!input.json_schema.empty() && !accepted_schemas().contains(input.json_schema)) {
      check_schema_patterns(input.json_schema, request.format.param);
      (void)engine::json_schema_grammar(input.json_schema, "response_format");
      accepted_schemas().add(input.json_schema);
    }
    prompt = ctx.chat_template->format(input);
  } catch (const engine::ChatFormatError& e) {
    const bool schema = e.field() == "response_format" || e.field() == request.format.param;
    const std::string param = schema ? request.format.param : e.field();
    throw_invalid(
        schema ? "'" + param + "' has a JSON schema that cannot be enforced: " + e.what() : e.what(), param);
  }
  FormattedChat formatted;
  formatted.tokens = tokenize_prompt(ctx, prompt.prompt, "messages");
  formatted.prompt = std::move(prompt.prompt);
  formatted.sampling = request.common.sampling;
  formatted.sampling.grammar = std::move(prompt.grammar);
  formatted.sampling.grammar_lazy = prompt.grammar_lazy;
  formatted.sampling.grammar_trigger_patterns = std::move(prompt.grammar_trigger_patterns);
  formatted.sampling.grammar_trigger_tokens = std::move(prompt.grammar_trigger_tokens);
  // A grammar the sampler refuses (a schema whose grammar is too large for it, say) is a 400 naming what it
  // came from, before any answer starts.
  if (!formatted.sampling.grammar.empty() && !accepted_grammars().contains(formatted.sampling.grammar)) {
    try {
      engine::check_grammar(ctx.model, formatted.sampling);
    } catch (const engine::GrammarError& e) {
      const std::string param =
          request.format.kind != OutputFormat::Kind::text ? request.format.param : "tools";
      throw_invalid("'" + param +
                        "' cannot be enforced: the grammar made from it is refused by the sampler (" +
                        e.error().message + ")",
                    param);
    }
    accepted_grammars().add(formatted.sampling.grammar);
  }
  formatted.stop = request.common.stop;
  for (auto& stop : prompt.additional_stops) {
    if (std::find(formatted.stop.begin(), formatted.stop.end(), stop) == formatted.stop.end())
      formatted.stop.push_back(std::move(stop));
  }
  formatted.preserved_tokens = std::move(prompt.preserved_tokens);
  formatted.parser = std::move(prompt.parser);
  return formatted;
}

asio::awaitable<void> run_chat(const ServeContext& ctx, http::Exchange& ex, const ChatRequest& request,
                               ChatSink& sink) {
  ChatRun run(ctx, ex, request, sink);
  co_await run.run();
}

}  // namespace clawbot::server::api
