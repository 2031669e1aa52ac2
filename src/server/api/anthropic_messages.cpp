#include "server/api/anthropic_messages.h"

#include <algorithm>
#include <climits>
#include <optional>
#include <utility>

#include <spdlog/spdlog.h>

#include "common/json_check.h"
#include "common/json_read.h"
#include "server/api/fields.h"

namespace clawbot::server::api {

using nlohmann::json;
namespace asio = boost::asio;
using json_read::describe;

// ---------------------------------------------------------------- the request

namespace {

// One entry of `messages` as internal messages: an assistant turn is one message (its thinking, text and
// tool_use blocks); a user turn is its tool_result blocks as tool messages, in order, with its text between
// them as user messages.
void read_message(const json& value, const std::string& where, std::vector<ChatMessage>& out) {
  const json& m = object_at(value, where);
  const std::string role = text_member(m, "role", where, true);
  if (role != "user" && role != "assistant") {
    throw_invalid("'" + where + ".role' is \"" + role +
                      "\"; it must be user or assistant (the system prompt "
                      "goes in 'system')",
                  where + ".role");
  }
  const json* content = member(m, "content");
  if (!content) throw_invalid("'" + where + ".content' is required", where + ".content");
  if (content->is_string()) {
    out.push_back(text_message(role, content->get<std::string>()));
    return;
  }
  if (!content->is_array()) {
    throw_invalid(
        "'" + where + ".content' must be a string or an array of content blocks, got " + describe(*content),
        where + ".content");
  }
  ChatMessage turn = text_message(role);
  bool pending = false;  // `turn` holds text not yet written (user)
  for (std::size_t i = 0; i < content->size(); ++i) {
    const std::string block_where = where + ".content[" + std::to_string(i) + "]";
    const json& block = object_at((*content)[i], block_where);
    const std::string type = text_member(block, "type", block_where, true);
    if (type == "text") {
      turn.content += text_member(block, "text", block_where, true);
      pending = true;
    } else if (type == "tool_use" && role == "assistant") {
      const json* input = member(block, "input");
      turn.tool_calls.push_back({text_member(block, "id", block_where, true),
                                 text_member(block, "name", block_where, true),
                                 input ? json_text(object_at(*input, block_where + ".input")) : "{}"});
    } else if (type == "thinking" && role == "assistant") {
      turn.reasoning_content += text_member(block, "thinking", block_where, true);
    } else if (type == "redacted_thinking" && role == "assistant") {
      // Encrypted by Anthropic: nothing a local model can read.
    } else if (type == "tool_result" && role == "user") {
      if (pending) out.push_back(std::exchange(turn, text_message(role)));
      pending = false;
      ChatMessage tool = text_message("tool");
      tool.tool_call_id = text_member(block, "tool_use_id", block_where, true);
      if (const json* result = member(block, "content")) {
        tool.content = message_text(*result, block_where + ".content");
      }
      if (json_check::bool_field(block, "is_error", false)) tool.content = "Error: " + tool.content;
      tool.tool_name = tool_name_of(out, tool.tool_call_id);
      out.push_back(std::move(tool));
    } else if (type == "image" || type == "document" || type == "search_result") {
      throw_invalid("'" + block_where + ".type' is \"" + type + "\"; this model reads text only",
                    block_where + ".type");
    } else {
      throw_invalid("'" + block_where + ".type' is \"" + type + "\", which a " + role +
                        " message cannot hold here (text, " +
                        (role == "user" ? "tool_result" : "tool_use, thinking") + ")",
                    block_where + ".type");
    }
  }
  if (role == "assistant" || pending || out.empty() || out.back().role != "tool")
    out.push_back(std::move(turn));
}

// A client tool ({name, description, input_schema}, type absent or "custom"); Anthropic's own tools
// (web_search_..., bash_..., text_editor_..., code_execution_...): none.
std::optional<Tool> read_anthropic_tool(const json& tool, const std::string& where) {
  const std::string type = text_member(tool, "type", where, false);
  if (!type.empty() && type != "custom") return std::nullopt;
  return function_tool(tool, where, "input_schema");
}

// {type: auto | any | tool | none, name, disable_parallel_tool_use}
void read_anthropic_tool_choice(const json& body, ChatRequest& chat) {
  const json* choice = member(body, "tool_choice");
  if (!choice) return;
  const json& c = object_at(*choice, "tool_choice");
  const std::string type = text_member(c, "type", "tool_choice", true);
  if (type == "auto") {
    chat.tool_choice = ToolChoice::automatic;
  } else if (type == "any") {
    chat.tool_choice = ToolChoice::required;
  } else if (type == "none") {
    chat.tool_choice = ToolChoice::none;
  } else if (type == "tool") {
    chat.tool_choice = ToolChoice::named;
    chat.tool_choice_name = text_member(c, "name", "tool_choice", true);
  } else {
    throw_invalid("'tool_choice.type' is \"" + type + "\"; it must be auto, any, tool or none",
                  "tool_choice.type");
  }
  check_tool_choice(chat, "{\"type\":\"any\"}");
  chat.parallel_tool_calls = !json_check::bool_field(c, "disable_parallel_tool_use", false);
}

}  // namespace

ChatRequest parse_anthropic_request(const json& body, std::uint32_t n_ctx, bool count_only,
                                    std::vector<std::string>* skipped_tools) {
  ChatRequest chat;
  // The sampling fields parse_common reads (its ranges and errors), without max_tokens: Anthropic's is
  // required and a bound, not a wish, so one beyond the context is the context (clients send their model's
  // largest).
  json sampling = json::object();
  for (const char* key : {"temperature", "top_p", "top_k", "min_p", "seed", "stream"}) {
    if (const json* v = member(body, key)) sampling[key] = *v;
  }
  chat.common = parse_common(sampling, n_ctx);
  if (!count_only) {
    if (!member(body, "max_tokens")) throw_invalid("'max_tokens' is required", "max_tokens");
    const auto max_tokens = json_check::integer_field(body, "max_tokens", 1, INT_MAX);
    chat.common.max_tokens = static_cast<int>(std::min<long long>(*max_tokens, n_ctx));
  }
  if (const json* stops = member(body, "stop_sequences")) {
    if (!stops->is_array() || stops->size() > 64) {
      throw_invalid("'stop_sequences' must be an array of at most 64 strings, got " + describe(*stops),
                    "stop_sequences");
    }
    for (std::size_t i = 0; i < stops->size(); ++i) {
      const json& s = (*stops)[i];
      const std::string where = "stop_sequences[" + std::to_string(i) + "]";
      if (!s.is_string()) throw_invalid("'" + where + "' must be a string, got " + describe(s), where);
      if (!s.get_ref<const std::string&>().empty()) chat.common.stop.push_back(s.get<std::string>());
    }
  }
  if (const json* system = member(body, "system")) {
    chat.messages.push_back(text_message("system", message_text(*system, "system")));
  }
  const json* messages = member(body, "messages");
  if (!messages) throw_invalid("'messages' is required", "messages");
  if (!messages->is_array() || messages->empty()) {
    throw_invalid("'messages' must be a non-empty array of messages, got " + describe(*messages), "messages");
  }
  for (std::size_t i = 0; i < messages->size(); ++i) {
    read_message((*messages)[i], "messages[" + std::to_string(i) + "]", chat.messages);
  }
  // A last assistant message is a prefill: the answer continues it.
  if (chat.messages.back().role == "assistant") chat.add_generation_prompt = false;
  std::vector<std::string> skipped;
  chat.tools = function_tools(body, read_anthropic_tool, skipped);
  if (skipped_tools) *skipped_tools = std::move(skipped);
  read_anthropic_tool_choice(body, chat);
  if (const json* thinking = member(body, "thinking")) {
    const std::string type = text_member(object_at(*thinking, "thinking"), "type", "thinking", true);
    if (type == "enabled" || type == "adaptive") {
      chat.enable_thinking = true;
    } else if (type == "disabled") {
      chat.enable_thinking = false;
    } else {
      throw_invalid("'thinking.type' is \"" + type + "\"; it must be enabled or disabled", "thinking.type");
    }
  }
  return chat;
}

// ---------------------------------------------------------------- the answer

json anthropic_error(const Error& error) {
  return to_anthropic_json(error);
}

namespace {

// As chat completions' finish_reason: an answer cut by max_tokens says so, calls or not.
const char* stop_reason(const ChatChoice& choice) {
  if (choice.finish == ChatFinish::length) return "max_tokens";
  if (choice.finish == ChatFinish::tool_calls || !choice.message.tool_calls.empty()) return "tool_use";
  if (!choice.stop_sequence.empty()) return "stop_sequence";
  return "end_turn";
}

json stop_sequence(const ChatChoice& choice) {
  return choice.stop_sequence.empty() ? json(nullptr) : json(choice.stop_sequence);
}

// Anthropic counts input_tokens apart from the tokens read from the cache.
json anthropic_usage_json(const ChatUsage& u) {
  return {{"input_tokens", u.prompt_tokens - u.cached_tokens},
          {"cache_creation_input_tokens", 0},
          {"cache_read_input_tokens", u.cached_tokens},
          {"output_tokens", u.completion_tokens}};
}

std::string tool_use_id(const std::string& id) {
  return id.empty() ? random_id("toolu_") : id;
}

// A call's arguments as tool_use's `input` object ({} when the model's text is not one).
json tool_input(const std::string& arguments) {
  auto parsed = json_read::parse(arguments);
  if (parsed && parsed.value->is_object()) return std::move(*parsed.value);
  return json::object();
}

}  // namespace

void AnthropicWriter::event(const char* type, json fields) {
  fields["type"] = type;
  events_.push_back({type, std::move(fields)});
}

std::vector<TypedEvent> AnthropicWriter::opening(int prompt_tokens) {
  json message = {{"id", id_},
                  {"type", "message"},
                  {"role", "assistant"},
                  {"model", model_},
                  {"content", json::array()},
                  {"stop_reason", nullptr},
                  {"stop_sequence", nullptr},
                  {"usage", anthropic_usage_json(ChatUsage{prompt_tokens, 0, 0, 0, 0, 0})}};
  event("message_start", {{"message", std::move(message)}});
  event("ping", json::object());
  return take_events();
}

void AnthropicWriter::on_open(Kind kind, const ToolCallDelta* call) {
  json block;
  if (kind == Kind::tool_call) {
    block = {
        {"type", "tool_use"}, {"id", tool_use_id(call->id)}, {"name", call->name}, {"input", json::object()}};
  } else if (kind == Kind::text) {
    block = {{"type", "text"}, {"text", ""}};
  } else {
    block = {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}};
  }
  event("content_block_start", {{"index", parts() - 1}, {"content_block", std::move(block)}});
}

void AnthropicWriter::on_piece(Kind kind, const std::string& text) {
  json delta;
  if (kind == Kind::tool_call) {
    delta = {{"type", "input_json_delta"}, {"partial_json", text}};
  } else if (kind == Kind::text) {
    delta = {{"type", "text_delta"}, {"text", text}};
  } else {
    delta = {{"type", "thinking_delta"}, {"thinking", text}};
  }
  event("content_block_delta", {{"index", parts() - 1}, {"delta", std::move(delta)}});
}

void AnthropicWriter::on_close(Kind) {
  event("content_block_stop", {{"index", parts() - 1}});
}

std::vector<TypedEvent> AnthropicWriter::closing(const std::vector<ChatChoice>& choices,
                                                 const ChatUsage& usage) {
  const ChatChoice& choice = first_choice(choices);
  stream_rest(choice.message);
  event("message_delta",
        {{"delta", {{"stop_reason", stop_reason(choice)}, {"stop_sequence", stop_sequence(choice)}}},
         {"usage", anthropic_usage_json(usage)}});
  event("message_stop", json::object());
  return take_events();
}

std::optional<TypedEvent> AnthropicWriter::keep_alive() {
  return TypedEvent{"ping", {{"type", "ping"}}};
}

json AnthropicWriter::whole(const std::vector<ChatChoice>& choices, const ChatUsage& usage) {
  const ChatChoice& choice = first_choice(choices);
  const ChatMessage& m = choice.message;
  json content = json::array();
  if (!m.reasoning_content.empty()) {
    content.push_back({{"type", "thinking"}, {"thinking", m.reasoning_content}, {"signature", ""}});
  }
  // An empty answer is one empty text block.
  if (!m.content.empty() || (content.empty() && m.tool_calls.empty())) {
    content.push_back({{"type", "text"}, {"text", m.content}});
  }
  for (const auto& call : m.tool_calls) {
    content.push_back({{"type", "tool_use"},
                       {"id", tool_use_id(call.id)},
                       {"name", call.name},
                       {"input", tool_input(call.arguments)}});
  }
  return {{"id", id_},
          {"type", "message"},
          {"role", "assistant"},
          {"model", model_},
          {"content", std::move(content)},
          {"stop_reason", stop_reason(choice)},
          {"stop_sequence", stop_sequence(choice)},
          {"usage", anthropic_usage_json(usage)}};
}

// ---------------------------------------------------------------- the routes

namespace {

asio::awaitable<void> create_message(const ServeContext& ctx, http::Exchange& ex) {
  // Draining (SIGTERM): 503 with Retry-After, as every route answers it, in Anthropic's shape.
  if (ctx.draining && ctx.draining->load()) {
    throw ClawbotError({ErrorKind::unavailable,
                        "this node is shutting down: it takes no new requests; retry on another node",
                        {},
                        "draining"});
  }
  const json body = parse_body(ex);
  check_model(ctx, body, ex);
  require_generation_model(ctx);
  std::vector<std::string> skipped_tools;
  const ChatRequest request = parse_anthropic_request(body, ctx.n_ctx, false, &skipped_tools);
  if (!skipped_tools.empty()) ex.log_fields()["skipped_tools"] = skipped_tools;
  AnthropicWriter writer(random_id("msg_"), ctx.model_id);
  EventStreamSink sink(ex, writer, request.common.stream);
  co_await run_chat(ctx, ex, request, sink);
}

asio::awaitable<void> count_tokens(const ServeContext& ctx, http::Exchange& ex) {
  const json body = parse_body(ex);
  check_model(ctx, body, ex);
  const ChatRequest request = parse_anthropic_request(body, ctx.n_ctx, /*count_only=*/true);
  const json answer = {{"input_tokens", format_chat(ctx, request).tokens.size()}};
  co_await ex.respond_json(200, answer);
}

// Whatever a handler throws, answered in Anthropic's shape (the server's edge would answer OpenAI's).
template <typename Handler>
http::Handler in_anthropic_shape(Handler handler) {
  return [handler](http::Exchange& ex) -> asio::awaitable<void> {
    std::optional<Error> failure;
    try {
      co_await handler(ex);
    } catch (const std::exception& e) {
      failure = answer_for(e);
      if (failure->kind == ErrorKind::internal)
        spdlog::error("handler for {} failed: {}", ex.path(), e.what());
    }
    if (failure) {
      const json body = anthropic_error(*failure);
      const TypedEvent event{"error", body};
      co_await answer_error(ex, *failure, body, event);
    }
  };
}

}  // namespace

void add_anthropic_routes(const ServeContext& ctx, const AddRoute& add) {
  const ServeContext* c = &ctx;
  add(http::Verb::post, "/v1/messages",
      in_anthropic_shape([c](http::Exchange& ex) { return create_message(*c, ex); }));
  add(http::Verb::post, "/v1/messages/count_tokens",
      in_anthropic_shape([c](http::Exchange& ex) { return count_tokens(*c, ex); }));
}

}  // namespace clawbot::server::api
