// What every protocol's routes share to read a request: the body as bounded JSON, typed fields whose errors
// name the field (ClawbotError invalid_request: each protocol words it in its own error shape), the sampling
// fields, messages, token ids, the model a request names, and admission (a draining node refuses new work).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/http_server.h"
#include "engine/engine.h"
#include "server/api/chat.h"
#include "server/generation.h"
#include "server/openai_routes.h"

namespace clawbot::server::api {

// The body as a JSON object, read with json_read (bounded depth and size): a 400 naming what is wrong.
nlohmann::json parse_body(const http::Exchange& ex);

// `key` as a string; absent or null: "" (or a 400 when `required`).
std::string string_field(const nlohmann::json& body, const char* key, bool required);
// OpenAI's `stop`: a string or up to 4 strings; empty strings dropped.
std::vector<std::string> stop_field(const nlohmann::json& body);
// The sampling and length fields every generation route reads (temperature, top_p, ..., max_tokens, n,
// stream, stream_options). `n_predict`: also llama-server's name for max_tokens (-1: until the context is
// full).
CommonRequest parse_common(const nlohmann::json& body, std::uint32_t n_ctx, bool n_predict = false);

// A message's content: a string, or an array of {"type":"text","text":...} parts joined. `where` names the
// field in errors ("messages[2].content").
std::string message_text(const nlohmann::json& content, const std::string& where);
// OpenAI's `messages` (roles system, developer, user, assistant, tool; text content; an assistant's
// tool_calls and reasoning_content, a tool message's tool_call_id and name).
std::vector<ChatMessage> parse_messages(const nlohmann::json& body);

// Token ids from a JSON array: each in the vocabulary; with `within_context`, fewer than a request's context.
std::vector<engine::Token> token_ids_field(const ServeContext& ctx, const nlohmann::json& array,
                                           const char* param, bool within_context = true);
// The text tokenized (special tokens parsed); a 400 context_length_exceeded when it cannot fit.
std::vector<engine::Token> tokenize_prompt(const ServeContext& ctx, const std::string& text,
                                           const char* param);

// A draining node (SIGTERM) answers 503 with Retry-After: true when it has answered.
boost::asio::awaitable<bool> refused_while_draining(const ServeContext& ctx, http::Exchange& ex);
// The `model` a request names: any name on a one-model node (noted in the access log), or 404
// model_not_found with --strict-model.
void check_model(const ServeContext& ctx, const nlohmann::json& body, http::Exchange& ex);
// An embedding model asked to generate: a 400 model_not_generative.
void require_generation_model(const ServeContext& ctx);

}  // namespace clawbot::server::api
