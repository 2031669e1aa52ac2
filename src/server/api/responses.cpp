#include "server/api/responses.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <utility>

#include "common/json_check.h"
#include "common/json_read.h"
#include "server/api/fields.h"

namespace clawbot::server::api {

using nlohmann::json;
namespace asio = boost::asio;
using json_read::describe;

// ---------------------------------------------------------------- the store

namespace {

std::size_t conversation_bytes(const std::vector<ChatMessage>& conversation) {
  std::size_t bytes = 0;
  for (const auto& m : conversation) {
    bytes += sizeof(ChatMessage) + m.content.size() + m.reasoning_content.size() + m.tool_call_id.size() +
             m.tool_name.size();
    for (const auto& call : m.tool_calls)
      bytes += sizeof(ToolCall) + call.name.size() + call.arguments.size();
  }
  return bytes;
}

}  // namespace

void ResponseStore::put(const std::string& id, std::vector<ChatMessage> conversation) {
  const std::size_t bytes = conversation_bytes(conversation);
  if (bytes > max_bytes_ || max_entries_ == 0) return;  // larger than the whole store: not kept
  std::lock_guard lock(mutex_);
  if (auto old = by_id_.find(id); old != by_id_.end()) {
    bytes_ -= old->second->bytes;
    entries_.erase(old->second);
    by_id_.erase(old);
  }
  entries_.push_front({id, std::move(conversation), bytes});
  by_id_[id] = entries_.begin();
  bytes_ += bytes;
  while (entries_.size() > max_entries_ || bytes_ > max_bytes_) {
    bytes_ -= entries_.back().bytes;
    by_id_.erase(entries_.back().id);
    entries_.pop_back();
  }
}

std::optional<std::vector<ChatMessage>> ResponseStore::get(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  entries_.splice(entries_.begin(), entries_, it->second);  // now the most recently used
  return it->second->conversation;
}

std::size_t ResponseStore::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

// ---------------------------------------------------------------- the request

namespace {

// The text of a message's content: a string, or parts of the given text types (input_text, output_text).
std::string content_text(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) {
    throw_invalid("'" + where + "' must be a string or an array of content parts, got " + describe(content),
                  where);
  }
  std::string text;
  for (std::size_t i = 0; i < content.size(); ++i) {
    const std::string part_where = where + "[" + std::to_string(i) + "]";
    const json& part = object_at(content[i], part_where);
    const std::string type = text_member(part, "type", part_where, true);
    if (type == "input_text" || type == "output_text" || type == "text" || type == "reasoning_text" ||
        type == "summary_text") {
      text += text_member(part, "text", part_where, true);
    } else if (type == "refusal") {
      text += text_member(part, "refusal", part_where, true);
    } else {
      throw_invalid("'" + part_where + ".type' is \"" + type +
                        "\"; this model reads text only (input_text, output_text)",
                    part_where + ".type");
    }
  }
  return text;
}

// The assistant message an output item (message, function call, reasoning) belongs to: items of one turn
// arrive one after the other and become one message.
ChatMessage& assistant_turn(std::vector<ChatMessage>& history) {
  if (history.empty() || history.back().role != "assistant") history.push_back(text_message("assistant"));
  return history.back();
}

void read_item(const json& value, const std::string& where, std::vector<ChatMessage>& history) {
  const json& item = object_at(value, where);
  std::string type = text_member(item, "type", where, false);
  if (type.empty() && member(item, "role")) type = "message";  // the short form {role, content}
  if (type == "message") {
    std::string role = text_member(item, "role", where, true);
    const json* content = member(item, "content");
    if (!content) throw_invalid("'" + where + ".content' is required", where + ".content");
    std::string text = content_text(*content, where + ".content");
    if (role == "assistant") {
      assistant_turn(history).content += text;
      return;
    }
    if (role == "developer") role = "system";
    if (role != "user" && role != "system") {
      throw_invalid(
          "'" + where + ".role' is \"" + role + "\"; it must be user, assistant, system or developer",
          where + ".role");
    }
    history.push_back(text_message(std::move(role), std::move(text)));
  } else if (type == "function_call") {
    ToolCall call{.id = text_member(item, "call_id", where, true),
                  .name = text_member(item, "name", where, true),
                  .arguments = text_member(item, "arguments", where, true)};
    assistant_turn(history).tool_calls.push_back(std::move(call));
  } else if (type == "function_call_output") {
    ChatMessage tool = text_message("tool");
    tool.tool_call_id = text_member(item, "call_id", where, true);
    const json* output = member(item, "output");
    if (!output) throw_invalid("'" + where + ".output' is required", where + ".output");
    tool.content = content_text(*output, where + ".output");
    tool.tool_name = tool_name_of(history, tool.tool_call_id);
    history.push_back(std::move(tool));
  } else if (type == "reasoning") {
    // Its text (`content`), else its summary; an encrypted one only (another provider's) adds nothing.
    const char* key = member(item, "content") ? "content" : "summary";
    const json* parts = member(item, key);
    const std::string text = parts ? content_text(*parts, where + "." + key) : std::string();
    if (!text.empty()) assistant_turn(history).reasoning_content += text;
  } else if (type.empty()) {
    throw_invalid("'" + where + ".type' is required (message, function_call, function_call_output)",
                  where + ".type");
  } else {
    throw_invalid("'" + where + ".type' is \"" + type +
                      "\"; this node reads message, function_call, function_call_output and reasoning items",
                  where + ".type");
  }
}

// Responses' flat {type, name, parameters}; Chat Completions' nested {type, function: {...}} too. Other
// types (web_search, file_search, computer_use, custom, ...): none.
std::optional<Tool> read_tool(const json& tool, const std::string& where) {
  if (text_member(tool, "type", where, true) != "function") return std::nullopt;
  if (const json* nested = member(tool, "function")) {
    return function_tool(object_at(*nested, where + ".function"), where + ".function", "parameters");
  }
  return function_tool(tool, where, "parameters");
}

void read_tool_choice(const json& body, ChatRequest& chat) {
  const json* choice = member(body, "tool_choice");
  if (!choice) return;
  if (choice->is_string()) {
    const auto& mode = choice->get_ref<const std::string&>();
    if (mode == "auto") {
      chat.tool_choice = ToolChoice::automatic;
    } else if (mode == "none") {
      chat.tool_choice = ToolChoice::none;
    } else if (mode == "required") {
      chat.tool_choice = ToolChoice::required;
    } else {
      throw_invalid(
          "'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\":\"function\",\"name\":...}, "
          "got " +
              describe(*choice),
          "tool_choice");
    }
  } else {
    const json& named = object_at(*choice, "tool_choice");
    const std::string type = text_member(named, "type", "tool_choice", true);
    if (type != "function") {
      throw_invalid("'tool_choice.type' is \"" + type + "\"; only \"function\" names a tool to call here",
                    "tool_choice.type");
    }
    chat.tool_choice = ToolChoice::named;
    chat.tool_choice_name = text_member(named, "name", "tool_choice", true);
  }
  check_tool_choice(chat, "\"required\"");
}

// text.format: {type: text} | {type: json_object} | {type: json_schema, name, schema, strict}.
void read_text_format(const json& body, ChatRequest& chat) {
  const json* text = member(body, "text");
  if (!text) return;
  const json* format = member(object_at(*text, "text"), "format");
  if (!format) return;
  const json& f = object_at(*format, "text.format");
  const std::string type = text_member(f, "type", "text.format", true);
  if (type == "text") {
    chat.format.kind = OutputFormat::Kind::text;
  } else if (type == "json_object") {
    chat.format.kind = OutputFormat::Kind::json_object;
  } else if (type == "json_schema") {
    chat.format.kind = OutputFormat::Kind::json_schema;
    const json* schema = member(f, "schema");
    if (!schema) throw_invalid("'text.format.schema' is required for json_schema", "text.format.schema");
    chat.format.schema = json_text(object_at(*schema, "text.format.schema"));
  } else {
    throw_invalid("'text.format.type' is \"" + type + "\"; it must be text, json_object or json_schema",
                  "text.format.type");
  }
}

// A float as the decimal it was written as (0.95, not 0.949999988079071).
double rounded(float value) {
  return std::round(static_cast<double>(value) * 1e6) / 1e6;
}

// The request fields the response object repeats, as OpenAI's does.
json echo_fields(const json& body, const ChatRequest& chat) {
  const auto field = [&](const char* key, json fallback) {
    const json* v = member(body, key);
    return v ? *v : fallback;
  };
  return {{"instructions", field("instructions", nullptr)},
          {"max_output_tokens", field("max_output_tokens", nullptr)},
          {"parallel_tool_calls", chat.parallel_tool_calls},
          {"previous_response_id", field("previous_response_id", nullptr)},
          {"temperature", rounded(chat.common.sampling.temperature)},
          {"top_p", rounded(chat.common.sampling.top_p)},
          {"tool_choice", field("tool_choice", "auto")},
          {"tools", field("tools", json::array())},
          {"text", field("text", {{"format", {{"type", "text"}}}})},
          {"reasoning", field("reasoning", {{"effort", nullptr}, {"summary", nullptr}})},
          {"store", field("store", true)},
          {"truncation", "disabled"},
          {"metadata", field("metadata", json::object())}};
}

}  // namespace

ResponsesRequest parse_responses_request(const json& body, std::uint32_t n_ctx, ResponseStore& store) {
  ResponsesRequest r;
  ChatRequest& chat = r.chat;
  chat.common = parse_common(body, n_ctx);
  chat.common.n = 1;
  chat.common.max_tokens = 0;
  // A bound, not a wish: one beyond the context is the context (clients send their model's largest).
  if (auto v = json_check::integer_field(body, "max_output_tokens", 1, INT_MAX)) {
    chat.common.max_tokens = static_cast<int>(std::min<long long>(*v, n_ctx));
  }
  r.store = json_check::bool_field(body, "store", true);
  chat.parallel_tool_calls = json_check::bool_field(body, "parallel_tool_calls", true);

  r.previous_response_id = text_member(body, "previous_response_id", "", false);
  if (!r.previous_response_id.empty()) {
    auto earlier = store.get(r.previous_response_id);
    if (!earlier) {
      throw ClawbotError({ErrorKind::not_found,
                          "'previous_response_id' names response '" + r.previous_response_id +
                              "', which this node does not keep (unknown, stored with store: false, or "
                              "dropped as the store's oldest); send the whole conversation in 'input'",
                          "previous_response_id", "previous_response_not_found"});
    }
    r.history = std::move(*earlier);
  }
  const json* input = member(body, "input");
  if (!input) throw_invalid("'input' is required", "input");
  if (input->is_string()) {
    r.history.push_back(text_message("user", input->get<std::string>()));
  } else if (input->is_array()) {
    for (std::size_t i = 0; i < input->size(); ++i) {
      read_item((*input)[i], "input[" + std::to_string(i) + "]", r.history);
    }
  } else {
    throw_invalid("'input' must be a string or an array of items, got " + describe(*input), "input");
  }
  if (r.history.empty()) throw_invalid("'input' holds no item", "input");

  const std::string instructions = text_member(body, "instructions", "", false);
  if (!instructions.empty()) chat.messages.push_back(text_message("system", instructions));
  chat.messages.insert(chat.messages.end(), r.history.begin(), r.history.end());

  chat.tools = function_tools(body, read_tool, r.skipped_tools);
  read_tool_choice(body, chat);
  read_text_format(body, chat);
  if (const json* reasoning = member(body, "reasoning")) {
    const std::string effort = text_member(object_at(*reasoning, "reasoning"), "effort", "reasoning", false);
    if (effort == "none")
      chat.enable_thinking = false;
    else if (!effort.empty())
      chat.enable_thinking = true;
  }
  r.echo = echo_fields(body, chat);
  return r;
}

// ---------------------------------------------------------------- the answer

namespace {

json usage_json(const ChatUsage& u) {
  return {{"input_tokens", u.prompt_tokens},
          {"input_tokens_details", {{"cached_tokens", u.cached_tokens}}},
          {"output_tokens", u.completion_tokens},
          {"output_tokens_details", {{"reasoning_tokens", 0}}},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json text_part(const char* type, const std::string& text) {
  json part = {{"type", type}, {"text", text}};
  if (std::string_view(type) == "output_text") {
    part["annotations"] = json::array();
    part["logprobs"] = json::array();
  }
  return part;
}

json message_item(const std::string& id, const char* status, json content) {
  return {{"id", id},
          {"type", "message"},
          {"status", status},
          {"role", "assistant"},
          {"content", std::move(content)}};
}

json reasoning_item(const std::string& id, json content) {
  return {{"id", id}, {"type", "reasoning"}, {"summary", json::array()}, {"content", std::move(content)}};
}

json call_item(const std::string& id, const char* status, const std::string& call_id, const std::string& name,
               const std::string& arguments) {
  return {{"id", id},     {"type", "function_call"}, {"status", status}, {"call_id", call_id},
          {"name", name}, {"arguments", arguments}};
}

std::string call_id_or_new(const std::string& id) {
  return id.empty() ? random_id("call_") : id;
}

}  // namespace

void ResponsesWriter::event(const char* type, json fields) {
  fields["type"] = type;
  fields["sequence_number"] = sequence_++;
  events_.push_back({type, std::move(fields)});
}

json ResponsesWriter::response(const char* status, json output, const ChatUsage* usage,
                               const ChatChoice* choice) const {
  json r = {{"id", id_},
            {"object", "response"},
            {"created_at", static_cast<long long>(created_at_)},
            {"status", status},
            {"error", nullptr},
            {"incomplete_details", nullptr},
            {"model", model_},
            {"output", std::move(output)},
            {"usage", usage ? usage_json(*usage) : json(nullptr)}};
  if (choice && choice->finish == ChatFinish::length) {
    r["incomplete_details"] = {{"reason", "max_output_tokens"}};
  }
  for (const auto& [key, value] : echo_.items()) r[key] = value;
  return r;
}

std::vector<TypedEvent> ResponsesWriter::opening(int) {
  event("response.created", {{"response", response("in_progress", json::array(), nullptr, nullptr)}});
  event("response.in_progress", {{"response", response("in_progress", json::array(), nullptr, nullptr)}});
  return take_events();
}

json ResponsesWriter::where() const {
  return {{"item_id", items_.back().id}, {"output_index", static_cast<int>(items_.size()) - 1}};
}

void ResponsesWriter::on_open(Kind kind, const ToolCallDelta* call) {
  Item item;
  json added;
  if (kind == Kind::tool_call) {
    item.id = random_id("fc_");
    item.json = call_item(item.id, "in_progress", call_id_or_new(call->id), call->name, "");
    added = item.json;
  } else if (kind == Kind::text) {
    item.id = random_id("msg_");
    added = message_item(item.id, "in_progress", json::array());
  } else {
    item.id = random_id("rs_");
    added = reasoning_item(item.id, json::array());
  }
  items_.push_back(std::move(item));
  event("response.output_item.added",
        {{"output_index", static_cast<int>(items_.size()) - 1}, {"item", added}});
  if (kind != Kind::tool_call) {
    json part = where();
    part["content_index"] = 0;
    part["part"] = text_part(kind == Kind::text ? "output_text" : "reasoning_text", "");
    event("response.content_part.added", std::move(part));
  }
}

void ResponsesWriter::on_piece(Kind kind, const std::string& text) {
  json piece = where();
  piece["delta"] = text;
  if (kind == Kind::tool_call) {
    event("response.function_call_arguments.delta", std::move(piece));
    return;
  }
  piece["content_index"] = 0;
  if (kind == Kind::text) piece["logprobs"] = json::array();
  event(kind == Kind::text ? "response.output_text.delta" : "response.reasoning_text.delta",
        std::move(piece));
}

void ResponsesWriter::on_close(Kind kind) {
  Item& item = items_.back();
  const std::string& text = part_text();
  if (kind == Kind::tool_call) {
    item.json["arguments"] = text;
    item.json["status"] = "completed";
    json done = where();
    done["arguments"] = text;
    done["name"] = item.json["name"];
    event("response.function_call_arguments.done", std::move(done));
  } else {
    const bool message = kind == Kind::text;
    const json part = text_part(message ? "output_text" : "reasoning_text", text);
    json done = where();
    done["content_index"] = 0;
    done["text"] = text;
    if (message) done["logprobs"] = json::array();
    event(message ? "response.output_text.done" : "response.reasoning_text.done", done);
    done.erase("text");
    done.erase("logprobs");
    done["part"] = part;
    event("response.content_part.done", std::move(done));
    item.json = message ? message_item(item.id, "completed", json::array({part}))
                        : reasoning_item(item.id, json::array({part}));
  }
  event("response.output_item.done",
        {{"output_index", static_cast<int>(items_.size()) - 1}, {"item", item.json}});
}

std::vector<TypedEvent> ResponsesWriter::closing(const std::vector<ChatChoice>& choices,
                                                 const ChatUsage& usage) {
  const ChatChoice& choice = first_choice(choices);
  stream_rest(choice.message);
  if (parts() == 0) empty_text_part();  // an empty answer is an empty message
  json output = json::array();
  for (const auto& item : items_) output.push_back(item.json);
  keep_answer(choice.message, output);
  const bool incomplete = choice.finish == ChatFinish::length;
  event(
      incomplete ? "response.incomplete" : "response.completed",
      {{"response", response(incomplete ? "incomplete" : "completed", std::move(output), &usage, &choice)}});
  return take_events();
}

json ResponsesWriter::output_of(const ChatChoice& choice) const {
  const ChatMessage& m = choice.message;
  json output = json::array();
  if (!m.reasoning_content.empty()) {
    output.push_back(
        reasoning_item(random_id("rs_"), json::array({text_part("reasoning_text", m.reasoning_content)})));
  }
  if (!m.content.empty() || (output.empty() && m.tool_calls.empty())) {  // an empty answer: an empty message
    output.push_back(
        message_item(random_id("msg_"), "completed", json::array({text_part("output_text", m.content)})));
  }
  for (const auto& call : m.tool_calls) {
    output.push_back(
        call_item(random_id("fc_"), "completed", call_id_or_new(call.id), call.name, call.arguments));
  }
  return output;
}

json ResponsesWriter::whole(const std::vector<ChatChoice>& choices, const ChatUsage& usage) {
  const ChatChoice& choice = first_choice(choices);
  json output = output_of(choice);
  keep_answer(choice.message, output);
  return response(choice.finish == ChatFinish::length ? "incomplete" : "completed", std::move(output), &usage,
                  &choice);
}

// The answer as the store keeps it, with the call ids the client saw (made here when the model gave none).
void ResponsesWriter::keep_answer(const ChatMessage& message, const json& output) {
  answer_ = message;
  answer_->role = "assistant";
  answer_->tool_calls.clear();
  for (const auto& item : output) {
    if (item["type"] == "function_call") {
      answer_->tool_calls.push_back({item["call_id"].get<std::string>(), item["name"].get<std::string>(),
                                     item["arguments"].get<std::string>()});
    }
  }
  if (keep_) keep_(*answer_);
}

json ResponsesWriter::error_body(const Error& error) {
  return to_json(error);
}

TypedEvent ResponsesWriter::error_event(const Error& error) {
  json body = to_json(error)["error"];
  body.erase("type");
  event("error", std::move(body));
  TypedEvent e = std::move(events_.back());
  events_.clear();
  return e;
}

// ---------------------------------------------------------------- the route

namespace {

asio::awaitable<void> create_response(const ServeContext& ctx, ResponseStore& store, http::Exchange& ex) {
  if (co_await refused_while_draining(ctx, ex)) co_return;
  const json body = parse_body(ex);
  check_model(ctx, body, ex);
  require_generation_model(ctx);
  ResponsesRequest request = parse_responses_request(body, ctx.n_ctx, store);
  if (!request.skipped_tools.empty()) ex.log_fields()["skipped_tools"] = request.skipped_tools;
  ResponsesWriter writer(random_id("resp_"), ctx.model_id, request.echo, std::time(nullptr));
  EventStreamSink sink(ex, writer, request.chat.common.stream);
  if (request.store) {
    writer.on_answer([&](const ChatMessage& answer) {
      request.history.push_back(answer);
      store.put(writer.id(), std::move(request.history));
    });
  }
  co_await run_chat(ctx, ex, request.chat, sink);
}

}  // namespace

void add_responses_routes(const ServeContext& ctx, const AddRoute& add) {
  auto store = std::make_shared<ResponseStore>();
  add(http::Verb::post, "/v1/responses",
      [c = &ctx, store](http::Exchange& ex) { return create_response(*c, *store, ex); });
}

}  // namespace clawbot::server::api
