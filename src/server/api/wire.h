// What the protocols with typed server-sent events (Responses, Anthropic Messages) share: fields named by
// their path in errors ("input[2].call_id"), function tools, and the wire. Each writes its answer as an
// EventWriter (lists of named JSON events, or the whole answer as one object: testable without a connection),
// and one EventStreamSink puts a writer on the wire as `event: NAME` / `data: JSON` pairs, or as one JSON
// answer.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/http_server.h"
#include "server/api/chat.h"

namespace clawbot::server::api {

// How a protocol's file adds its routes to the node's router (make_openai_router's `add`).
using AddRoute = std::function<void(http::Verb, std::string, http::Handler)>;

// The member `key` of `object`; null when absent or null.
const nlohmann::json* member(const nlohmann::json& object, const char* key);
// `object[key]` as a string; absent or null: "" or, when `required`, a 400 naming `where.key`.
std::string text_member(const nlohmann::json& object, const char* key, const std::string& where,
                        bool required);
// `value` as an object (a 400 naming `where` otherwise).
const nlohmann::json& object_at(const nlohmann::json& value, const std::string& where);
// A function tool: `name` (required), `description`, and the arguments' JSON schema in `schema_key`
// (an object; absent: any object).
Tool function_tool(const nlohmann::json& object, const std::string& where, const char* schema_key);
// A message of `role` with text `content` and nothing else.
ChatMessage text_message(std::string role, std::string content = {});
// `tools`, an array (absent or null: none), each element an object read by `read_one(tool, "tools[i]")`: a
// function tool, or none for a kind this node does not run (a provider's built-in tools such as web search:
// skipped, as llama-server does, so that an agent offering them still works; their types go to `skipped`).
std::vector<Tool> function_tools(
    const nlohmann::json& body,
    const std::function<std::optional<Tool>(const nlohmann::json&, const std::string&)>& read_one,
    std::vector<std::string>& skipped);
// A tool choice the request's tools cannot meet: a 400 naming the field. `required_words`: how the protocol
// writes "required" ("\"required\"", "{\"type\":\"any\"}").
void check_tool_choice(const ChatRequest& chat, const std::string& required_words);
// The function a call id names, from the assistant messages so far ("" when none does).
std::string tool_name_of(const std::vector<ChatMessage>& messages, const std::string& call_id);

struct TypedEvent {
  std::string name;  // the SSE `event:` field (and the data's "type")
  nlohmann::json data;
};

// A random id: `prefix` then 24 hex digits ("resp_", "msg_", "toolu_").
std::string random_id(std::string_view prefix);
// JSON text of a value from the model or the client: invalid UTF-8 replaced, never thrown.
std::string json_text(const nlohmann::json& value);
// The events as an event stream: "event: NAME\ndata: JSON\n\n" each.
std::string sse_text(const std::vector<TypedEvent>& events);

class EventWriter {
 public:
  virtual ~EventWriter() = default;
  virtual std::vector<TypedEvent> opening(int prompt_tokens) = 0;
  virtual std::vector<TypedEvent> pieces(const ChatDelta& delta) = 0;
  virtual std::vector<TypedEvent> closing(const std::vector<ChatChoice>& choices, const ChatUsage& usage) = 0;
  // A stream's keep-alive: the protocol's own event, or none (an SSE comment instead).
  virtual std::optional<TypedEvent> keep_alive() { return std::nullopt; }
  // The whole answer (no stream).
  virtual nlohmann::json whole(const std::vector<ChatChoice>& choices, const ChatUsage& usage) = 0;
  // An error before anything was written (the body of an answer with the error's HTTP status), and in a
  // stream that has begun.
  virtual nlohmann::json error_body(const Error& error) = 0;
  virtual TypedEvent error_event(const Error& error) = 0;
};

// A streamed answer as the protocols that stream each part on its own see it (Responses' output items,
// Anthropic's content blocks): a part opens when the kind of piece changes (thinking, text, another tool
// call) and closes before the next opens; what the final parse holds beyond the pieces streamed (a tool call
// recognised only at the end) is streamed at the end, so that the events add up to the answer.
class PartStream {
 public:
  enum class Kind { reasoning, text, tool_call };
  virtual ~PartStream() = default;

 protected:
  void stream_delta(const ChatDelta& delta);    // choice 0's pieces
  void stream_rest(const ChatMessage& answer);  // what the answer has beyond them; closes the last
  void close_part();
  void empty_text_part();  // an answer without parts: one empty text part, opened and closed
  bool part_open() const noexcept { return open_; }
  const std::string& part_text() const noexcept { return text_; }  // the open part's text or arguments
  int parts() const noexcept { return parts_; }                    // opened so far
  // The protocol's events: a part opens (`call` for a tool call), grows by `text`, closes.
  virtual void on_open(Kind kind, const ToolCallDelta* call) = 0;
  virtual void on_piece(Kind kind, const std::string& text) = 0;
  virtual void on_close(Kind kind) = 0;

 private:
  void piece(Kind kind, const ToolCallDelta* call, const std::string& text);
  bool open_ = false;
  Kind kind_ = Kind::text;
  int call_ = -1;  // the open tool call's index
  int parts_ = 0;
  std::string text_;
  std::string streamed_text_, streamed_reasoning_;
  int streamed_calls_ = 0;
};

// A writer whose stream is parts (PartStream): the events its part callbacks write, handed out by each call.
class PartEventWriter : public EventWriter, protected PartStream {
 public:
  std::vector<TypedEvent> pieces(const ChatDelta& delta) final {
    stream_delta(delta);
    return take_events();
  }

 protected:
  std::vector<TypedEvent> take_events() { return std::exchange(events_, {}); }
  // The one answer these protocols have (an empty one when run_chat gave none).
  static const ChatChoice& first_choice(const std::vector<ChatChoice>& choices);
  std::vector<TypedEvent> events_;
};

// An error in a protocol's shape: before anything was written, `body` with the error's HTTP status (and
// Retry-After: 1 for `unavailable`); in a stream that has begun, `event`, and the stream's end.
boost::asio::awaitable<void> answer_error(http::Exchange& ex, const Error& error, const nlohmann::json& body,
                                          const TypedEvent& event);

// A ChatSink for a protocol whose stream is typed events: its writer's events on the wire.
class EventStreamSink final : public ChatSink {
 public:
  EventStreamSink(http::Exchange& ex, EventWriter& writer, bool stream)
      : ex_(ex), writer_(writer), stream_(stream) {}
  boost::asio::awaitable<bool> begin(const ChatRequest& request, int prompt_tokens) override;
  boost::asio::awaitable<bool> delta(const ChatDelta& delta) override;
  boost::asio::awaitable<bool> keep_alive() override;
  boost::asio::awaitable<void> finish(const std::vector<ChatChoice>& choices,
                                      const ChatUsage& usage) override;
  boost::asio::awaitable<void> fail(const Error& error) override;

 private:
  boost::asio::awaitable<bool> write(const std::vector<TypedEvent>& events);
  http::Exchange& ex_;
  EventWriter& writer_;
  bool stream_;
};

}  // namespace clawbot::server::api
