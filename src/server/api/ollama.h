// Ollama's API (/api/*) on the same port as the OpenAI routes, for the editors and UIs that speak it
// (Continue, Zed, Open WebUI, VS Code's Ollama provider, the `ollama` npm client). /api/chat and
// /api/generate become one ChatRequest and run through run_chat like every protocol; their answers are
// Ollama's newline-delimited JSON (streamed unless "stream": false) and its errors {"error": "..."}.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/http_server.h"
#include "server/api/chat.h"

namespace clawbot::server::api {

using AddRoute = std::function<void(http::Verb, std::string, http::Handler)>;
// Adds GET /api/version, /api/tags, /api/ps and POST /api/show, /api/chat, /api/generate, /api/embed,
// /api/embeddings.
void add_ollama_routes(const ServeContext& ctx, const AddRoute& add);

// The translation between Ollama's wire format and ours, apart from the routes (unit-tested on its own).
namespace ollama {

// Whether `requested` (a request's "model") names the model served as `model_id`: the id itself, or the id
// with Ollama's default tag ("stories260K:latest").
bool names_model(std::string_view requested, std::string_view model_id);

// "options" mapped to our sampling and length fields; a wrong one is a 400 naming "options.<key>".
CommonRequest options(const nlohmann::json& body, std::uint32_t n_ctx);
// "format": absent, "" or null: text; "json": any JSON object; an object: a JSON schema.
OutputFormat format(const nlohmann::json& body);
// /api/chat's body (model, messages, tools, format, options, stream (default true), think, keep_alive).
ChatRequest chat_request(const nlohmann::json& body, std::uint32_t n_ctx);
// /api/generate's body without "raw": "system" and "prompt" as a conversation of one turn.
ChatRequest generate_request(const nlohmann::json& body, std::uint32_t n_ctx);

// An assistant message as Ollama writes it: tool calls' arguments an object, not a string.
nlohmann::json message_json(const ChatMessage& message);
// The statistics of a final line: done, done_reason, the durations in nanoseconds and the token counts.
nlohmann::json final_fields(ChatFinish finish, const ChatUsage& usage, std::int64_t total_ns);

// A GGUF general.file_type as Ollama names it (Q4_K_M, F16, ...); "unknown" for another.
std::string quantization_level(long long file_type);

// {"error": "..."}.
nlohmann::json error_json(const Error& error);

}  // namespace ollama
}  // namespace clawbot::server::api
