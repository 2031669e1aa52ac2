#include "server/api/wire.h"

#include <algorithm>
#include <random>

#include "common/json_read.h"
#include "common/text.h"

namespace clawbot::server::api {

using nlohmann::json;
namespace asio = boost::asio;

using json_read::describe;

const json* member(const json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

std::string text_member(const json& object, const char* key, const std::string& where, bool required) {
  const std::string name = where.empty() ? std::string(key) : where + "." + key;
  const json* value = member(object, key);
  if (!value) {
    if (required) throw_invalid("'" + name + "' is required", name);
    return {};
  }
  if (!value->is_string()) throw_invalid("'" + name + "' must be a string, got " + describe(*value), name);
  return value->get<std::string>();
}

const json& object_at(const json& value, const std::string& where) {
  if (!value.is_object()) throw_invalid("'" + where + "' must be an object, got " + describe(value), where);
  return value;
}

Tool function_tool(const json& object, const std::string& where, const char* schema_key) {
  Tool tool;
  tool.name = text_member(object, "name", where, true);
  if (tool.name.empty()) throw_invalid("'" + where + ".name' is empty", where + ".name");
  tool.description = text_member(object, "description", where, false);
  if (const json* schema = member(object, schema_key)) {
    tool.parameters = json_text(object_at(*schema, where + "." + schema_key));
  }
  return tool;
}

ChatMessage text_message(std::string role, std::string content) {
  ChatMessage m;
  m.role = std::move(role);
  m.content = std::move(content);
  return m;
}

std::vector<Tool> function_tools(
    const json& body, const std::function<std::optional<Tool>(const json&, const std::string&)>& read_one,
    std::vector<std::string>& skipped) {
  std::vector<Tool> tools;
  const json* array = member(body, "tools");
  if (!array) return tools;
  if (!array->is_array())
    throw_invalid("'tools' must be an array of tools, got " + describe(*array), "tools");
  for (std::size_t i = 0; i < array->size(); ++i) {
    const std::string where = "tools[" + std::to_string(i) + "]";
    const json& tool = object_at((*array)[i], where);
    if (auto read = read_one(tool, where)) {
      tools.push_back(std::move(*read));
    } else {
      skipped.push_back(text_member(tool, "type", where, false));
    }
  }
  return tools;
}

void check_tool_choice(const ChatRequest& chat, const std::string& required_words) {
  if (chat.tool_choice == ToolChoice::required && chat.tools.empty()) {
    throw_invalid("'tool_choice' is " + required_words + " but 'tools' is empty", "tool_choice");
  }
  if (chat.tool_choice == ToolChoice::named &&
      std::none_of(chat.tools.begin(), chat.tools.end(),
                   [&](const Tool& t) { return t.name == chat.tool_choice_name; })) {
    throw_invalid("'tool_choice.name' is \"" + chat.tool_choice_name + "\", which is not one of 'tools'",
                  "tool_choice.name");
  }
}

std::string tool_name_of(const std::vector<ChatMessage>& messages, const std::string& call_id) {
  for (auto m = messages.rbegin(); m != messages.rend(); ++m) {
    for (const auto& call : m->tool_calls) {
      if (call.id == call_id) return call.name;
    }
  }
  return {};
}

std::string random_id(std::string_view prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id(prefix);
  for (int i = 0; i < 24; ++i) id += text::hex_digits[rng() % 16];
  return id;
}

std::string json_text(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse_text(const std::vector<TypedEvent>& events) {
  std::string out;
  for (const auto& e : events)
    out.append("event: ").append(e.name).append("\ndata: ").append(json_text(e.data)).append("\n\n");
  return out;
}

const ChatChoice& PartEventWriter::first_choice(const std::vector<ChatChoice>& choices) {
  static const ChatChoice none;
  return choices.empty() ? none : choices.front();
}

void PartStream::piece(Kind kind, const ToolCallDelta* call, const std::string& text) {
  const bool same = open_ && kind_ == kind && (kind != Kind::tool_call || call_ == call->index);
  if (!same) {
    if (text.empty() && kind != Kind::tool_call) return;
    close_part();
    open_ = true;
    kind_ = kind;
    call_ = call ? call->index : -1;
    ++parts_;
    text_.clear();
    if (call) streamed_calls_ = std::max(streamed_calls_, call->index + 1);
    on_open(kind, call);
  }
  if (text.empty()) return;
  text_ += text;
  if (kind == Kind::text) streamed_text_ += text;
  if (kind == Kind::reasoning) streamed_reasoning_ += text;
  on_piece(kind, text);
}

void PartStream::stream_delta(const ChatDelta& delta) {
  if (delta.choice != 0) return;  // these protocols have one answer
  piece(Kind::reasoning, nullptr, delta.reasoning_content);
  piece(Kind::text, nullptr, delta.content);
  for (const auto& call : delta.tool_calls) piece(Kind::tool_call, &call, call.arguments);
}

void PartStream::stream_rest(const ChatMessage& answer) {
  const auto rest = [](const std::string& whole, const std::string& streamed) {
    return whole.size() > streamed.size() && whole.starts_with(streamed) ? whole.substr(streamed.size())
                                                                         : std::string();
  };
  piece(Kind::reasoning, nullptr, rest(answer.reasoning_content, streamed_reasoning_));
  piece(Kind::text, nullptr, rest(answer.content, streamed_text_));
  for (std::size_t i = static_cast<std::size_t>(streamed_calls_); i < answer.tool_calls.size(); ++i) {
    const auto& call = answer.tool_calls[i];
    const ToolCallDelta whole{static_cast<int>(i), call.id, call.name, call.arguments};
    piece(Kind::tool_call, &whole, call.arguments);
  }
  close_part();
}

void PartStream::empty_text_part() {
  close_part();
  open_ = true;
  kind_ = Kind::text;
  ++parts_;
  on_open(Kind::text, nullptr);
  close_part();
}

void PartStream::close_part() {
  if (!open_) return;
  on_close(kind_);
  open_ = false;
  text_.clear();
}

// (Named locals throughout, not temporaries inside co_await expressions: GCC 12 miscompiles those, as a
// double free at run time or an "array used as initializer" error.)
asio::awaitable<void> answer_error(http::Exchange& ex, const Error& error, const json& body,
                                   const TypedEvent& event) {
  if (ex.sse_started()) {
    std::vector<TypedEvent> events;
    events.push_back(event);
    std::string text = sse_text(events);
    const bool written = co_await ex.sse_raw(std::move(text));
    if (written) co_await ex.sse_end();
    co_return;
  }
  if (ex.responded()) co_return;
  std::vector<std::pair<std::string, std::string>> headers;
  if (error.kind == ErrorKind::unavailable) headers.emplace_back("Retry-After", "1");
  std::string text = json_text(body);
  co_await ex.respond_text(http_status(error.kind), std::move(text), "application/json", std::move(headers));
}

asio::awaitable<bool> EventStreamSink::write(const std::vector<TypedEvent>& events) {
  if (events.empty()) co_return true;
  std::string text = sse_text(events);
  co_return co_await ex_.sse_raw(std::move(text));
}

asio::awaitable<bool> EventStreamSink::begin(const ChatRequest&, int prompt_tokens) {
  auto events = writer_.opening(prompt_tokens);
  if (!stream_) co_return true;
  const bool started = co_await ex_.sse_start();
  if (!started) co_return false;
  co_return co_await write(events);
}

asio::awaitable<bool> EventStreamSink::delta(const ChatDelta& delta) {
  if (!stream_) co_return true;
  const std::vector<TypedEvent> events = writer_.pieces(delta);
  co_return co_await write(events);
}

asio::awaitable<bool> EventStreamSink::keep_alive() {
  if (!stream_ || !ex_.sse_started()) co_return true;
  if (auto event = writer_.keep_alive()) {
    std::vector<TypedEvent> events;
    events.push_back(std::move(*event));
    co_return co_await write(events);
  }
  co_return co_await ex_.sse_comment("keep-alive");
}

asio::awaitable<void> EventStreamSink::finish(const std::vector<ChatChoice>& choices,
                                              const ChatUsage& usage) {
  if (stream_) {
    const std::vector<TypedEvent> events = writer_.closing(choices, usage);
    const bool written = co_await write(events);
    if (written) co_await ex_.sse_end();
    co_return;
  }
  const json answer = writer_.whole(choices, usage);
  std::string text = json_text(answer);
  co_await ex_.respond_text(200, std::move(text), "application/json");
}

asio::awaitable<void> EventStreamSink::fail(const Error& error) {
  const json body = writer_.error_body(error);
  const TypedEvent event = writer_.error_event(error);
  co_await answer_error(ex_, error, body, event);
}

}  // namespace clawbot::server::api
