// One internal chat request for every protocol: chat completions, Responses, Anthropic Messages and Ollama's
// /api/chat each translate their wire format into a ChatRequest, and run_chat's events back into their own
// wire format through a ChatSink. run_chat formats the prompt with the model's chat template (llama.cpp's
// `common` chat layer: Jinja, tools, reasoning), sets up the grammar that enforces tool calls and structured
// output, submits to the scheduler (the same prefix cache whichever protocol asked), and parses the model's
// output back into content, reasoning and tool calls. The scheduler never learns which protocol asked.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "common/error.h"
#include "common/http_server.h"
#include "engine/chat_format.h"
#include "server/generation.h"
#include "server/openai_routes.h"
#include "server/scheduler.h"

namespace clawbot::server::api {

struct ToolCall {
  std::string id;         // "call_..." (made here when the model gives none); Anthropic's tool_use id
  std::string name;       // the function's name
  std::string arguments;  // the arguments as JSON text (an object)
};

struct ChatMessage {
  std::string role;  // system, user, assistant, tool ("developer" arrives as system)
  std::string content;
  std::string reasoning_content;     // assistant: its thinking, for templates that show past thinking
  std::vector<ToolCall> tool_calls;  // assistant: the calls it made
  std::string tool_call_id;          // tool: the call this message answers
  std::string tool_name;             // tool: the function that answered (Anthropic and Ollama name it)
};

struct Tool {
  std::string name;
  std::string description;
  std::string parameters = "{}";  // JSON schema of the arguments, as JSON text
};

enum class ToolChoice { automatic, none, required, named };

// What the answer's content must be: free text, any JSON object, or JSON valid for a schema. Enforced by a
// grammar; a schema the converter cannot handle is a 400 naming the unsupported part, never a silent
// unconstrained answer.
struct OutputFormat {
  enum class Kind { text, json_object, json_schema };
  Kind kind = Kind::text;
  std::string schema;                     // json_schema: the schema as JSON text
  std::string param = "response_format";  // the request field it came from, named in errors (Ollama: format)
};

struct ChatRequest {
  std::vector<ChatMessage> messages;
  std::vector<Tool> tools;
  ToolChoice tool_choice = ToolChoice::automatic;
  std::string tool_choice_name;  // ToolChoice::named: the function that must be called
  bool parallel_tool_calls = true;
  OutputFormat format;
  std::optional<bool> enable_thinking;  // the template's enable_thinking; none: the template's default
  bool add_generation_prompt = true;    // false: continue the last (assistant) message
  CommonRequest common;                 // sampling, max_tokens, stop, stream, n, include_usage
};

// One piece of a tool call while it streams: `id` and `name` come in the call's first piece, `arguments` in
// pieces after (OpenAI's delta.tool_calls[i]).
struct ToolCallDelta {
  int index = 0;  // which call of this choice
  std::string id;
  std::string name;
  std::string arguments;
};

// What one choice gained since the last delta (stream only). Several fields may be set at once.
struct ChatDelta {
  int choice = 0;
  std::string content;
  std::string reasoning_content;
  std::vector<ToolCallDelta> tool_calls;
};

enum class ChatFinish { stop, length, tool_calls };
// OpenAI's words for it: "stop", "length", "tool_calls".
const char* openai_finish_reason(ChatFinish finish);

struct ChatChoice {
  int index = 0;
  ChatMessage message;  // role assistant: content, reasoning_content and tool_calls as parsed
  ChatFinish finish = ChatFinish::stop;
  std::string
      stop_sequence;  // the request's own stop string that ended it, if one did (Anthropic reports it)
};

// Token counts and timings of the whole request (all choices), as GenerationEvent has them.
struct ChatUsage {
  int prompt_tokens = 0;
  int cached_tokens = 0;
  int completion_tokens = 0;
  double prompt_ms = 0;
  double generation_ms = 0;
  double queue_ms = 0;
};

// A protocol's writer. run_chat calls begin once (after the request was formatted and admitted), then, when
// streaming, delta and keep_alive as the model goes, then finish once with the whole answer (streamed or
// not); or fail at any point. A false return means the client has gone: run_chat stops (the job is
// cancelled).
class ChatSink {
 public:
  virtual ~ChatSink() = default;
  // Stream: open the protocol's stream (SSE, NDJSON) and write its opening events. Whole answers: nothing.
  virtual boost::asio::awaitable<bool> begin(const ChatRequest& request, int prompt_tokens) = 0;
  virtual boost::asio::awaitable<bool> delta(const ChatDelta& delta) = 0;
  virtual boost::asio::awaitable<bool> keep_alive() = 0;
  // The end: the closing events of a stream, or the whole answer.
  virtual boost::asio::awaitable<void> finish(const std::vector<ChatChoice>& choices,
                                              const ChatUsage& usage) = 0;
  // An error in the protocol's own shape: a status and body before anything was written, an error event in a
  // stream that has begun.
  virtual boost::asio::awaitable<void> fail(const Error& error) = 0;
};

// The prompt a request becomes: what count_tokens and /apply-template answer, and what run_chat submits.
// Throws ClawbotError (invalid_request naming the field, context_exceeded) for what cannot be formatted.
struct FormattedChat {
  std::string prompt;
  std::vector<engine::Token> tokens;
  // How the answer is constrained (the grammar and its triggers: tool calls, response_format) and ended (the
  // template's own stop strings besides the request's), and how it is read back.
  engine::SamplingParams sampling;
  std::vector<std::string> stop;
  std::vector<engine::Token> preserved_tokens;  // shown in the answer's text, control tokens or not
  engine::ChatParser parser;
};
FormattedChat format_chat(const ServeContext& ctx, const ChatRequest& request);

// Formats, admits (queue full: sink.fail(queue_full_error()); a sink answers an `unavailable` error with
// Retry-After: 1), generates and reports through `sink`. Errors found
// before anything is written are thrown as ClawbotError, for the route to answer in its protocol's shape.
boost::asio::awaitable<void> run_chat(const ServeContext& ctx, http::Exchange& ex, const ChatRequest& request,
                                      ChatSink& sink);

}  // namespace clawbot::server::api
