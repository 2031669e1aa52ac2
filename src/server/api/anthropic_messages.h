// Anthropic's Messages API: POST /v1/messages (`system`, content blocks, `tools` / tool_use / tool_result,
// `tool_choice`, `thinking`, `stop_sequences`, `max_tokens` required; `stream` as Anthropic's events:
// message_start, content_block_start/delta/stop, message_delta, message_stop, ping) and
// POST /v1/messages/count_tokens. Errors in Anthropic's shape {"type":"error","error":{"type","message"}},
// the message naming the field. x-api-key and anthropic-version are accepted, never required (a gateway
// checks keys).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/api/chat.h"
#include "server/api/wire.h"

namespace clawbot::server::api {

// Throws ClawbotError invalid_request naming the field. `count_only`: count_tokens' body (no max_tokens).
// Anthropic's own tools (web search, bash, ...) are skipped: their types go to `skipped_tools`.
ChatRequest parse_anthropic_request(const nlohmann::json& body, std::uint32_t n_ctx, bool count_only = false,
                                    std::vector<std::string>* skipped_tools = nullptr);

// Anthropic's error body, and its error type for an error kind (invalid_request_error, not_found_error, ...).
nlohmann::json anthropic_error(const Error& error);

// The message object and its stream's events.
class AnthropicWriter final : public PartEventWriter {
 public:
  AnthropicWriter(std::string id, std::string model) : id_(std::move(id)), model_(std::move(model)) {}
  std::vector<TypedEvent> opening(int prompt_tokens) override;
  std::vector<TypedEvent> closing(const std::vector<ChatChoice>& choices, const ChatUsage& usage) override;
  std::optional<TypedEvent> keep_alive() override;
  nlohmann::json whole(const std::vector<ChatChoice>& choices, const ChatUsage& usage) override;
  nlohmann::json error_body(const Error& error) override { return anthropic_error(error); }
  TypedEvent error_event(const Error& error) override { return {"error", anthropic_error(error)}; }

 private:
  void on_open(Kind kind, const ToolCallDelta* call) override;
  void on_piece(Kind kind, const std::string& text) override;
  void on_close(Kind kind) override;
  void event(const char* type, nlohmann::json fields);

  std::string id_;
  std::string model_;
};

void add_anthropic_routes(const ServeContext& ctx, const AddRoute& add);

}  // namespace clawbot::server::api
