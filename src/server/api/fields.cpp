#include "server/api/fields.h"

#include <algorithm>

#include "common/json_check.h"
#include "common/json_read.h"
#include "server/generation.h"

namespace clawbot::server::api {

using nlohmann::json;
namespace asio = boost::asio;
using json_check::bool_field;
using json_check::integer_field;
using json_check::number_field;
using json_read::describe;

// ---------------------------------------------------------------- request validation

json parse_body(const http::Exchange& ex) {
  json parsed = json_read::parse_or_throw(ex.request().body(), "request body");
  if (!parsed.is_object()) throw_invalid("request body must be a JSON object, got " + describe(parsed));
  return parsed;
}

std::vector<std::string> stop_field(const json& body) {
  auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return {};
  std::vector<std::string> stops;
  if (it->is_string()) {
    stops.push_back(it->get<std::string>());
  } else if (it->is_array()) {
    if (it->size() > 4)
      throw_invalid("'stop' may hold at most 4 strings, got " + std::to_string(it->size()), "stop");
    for (const auto& s : *it) {
      if (!s.is_string())
        throw_invalid("'stop' must be a string or an array of strings, got " + describe(*it), "stop");
      stops.push_back(s.get<std::string>());
    }
  } else {
    throw_invalid("'stop' must be a string or an array of strings, got " + describe(*it), "stop");
  }
  std::erase_if(stops, [](const std::string& s) { return s.empty(); });
  return stops;
}

// `n_predict`: also llama-server's name for max_tokens (/infill), where -1 means "until the context is full";
// max_tokens wins when both are given.
CommonRequest parse_common(const json& body, std::uint32_t n_ctx, bool n_predict) {
  CommonRequest r;
  if (auto v = number_field(body, "temperature", 0.0, 2.0)) r.sampling.temperature = static_cast<float>(*v);
  if (auto v = number_field(body, "top_p", 0.0, 1.0)) r.sampling.top_p = static_cast<float>(*v);
  if (auto v = number_field(body, "min_p", 0.0, 1.0)) r.sampling.min_p = static_cast<float>(*v);
  if (auto v = integer_field(body, "top_k", 0, 1'000'000)) r.sampling.top_k = static_cast<int>(*v);
  if (auto v = number_field(body, "repeat_penalty", 0.0, 10.0))
    r.sampling.repeat_penalty = static_cast<float>(*v);
  if (auto v = number_field(body, "frequency_penalty", -2.0, 2.0)) {
    r.sampling.frequency_penalty = static_cast<float>(*v);
  }
  if (auto v = number_field(body, "presence_penalty", -2.0, 2.0))
    r.sampling.presence_penalty = static_cast<float>(*v);
  if (auto v = integer_field(body, "seed", INT64_MIN, INT64_MAX)) {
    r.sampling.seed = static_cast<std::uint32_t>(static_cast<unsigned long long>(*v) & 0xFFFFFFFFull);
    if (r.sampling.seed == engine::random_seed) r.sampling.seed = 0xFFFFFFFE;
  }
  if (auto it = body.find("n_predict");
      n_predict && it != body.end() &&
      !(it->is_number_integer() && !it->is_number_unsigned() && it->get<long long>() < 0)) {
    if (auto v = integer_field(body, "n_predict", 1, n_ctx)) r.max_tokens = static_cast<int>(*v);
  }
  // max_completion_tokens is the newer name; both are accepted.
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (auto v = integer_field(body, key, 1, n_ctx)) r.max_tokens = static_cast<int>(*v);
  }
  // vLLM's: no end-of-generation token before this many (stop strings still apply).
  if (auto v = integer_field(body, "min_tokens", 0, n_ctx)) r.min_tokens = static_cast<int>(*v);
  if (r.max_tokens > 0 && r.min_tokens > r.max_tokens) {
    throw_invalid("'min_tokens' (" + std::to_string(r.min_tokens) + ") must not exceed 'max_tokens' (" +
                      std::to_string(r.max_tokens) + ")",
                  "min_tokens");
  }
  if (auto v = integer_field(body, "n", 1, 16)) r.n = static_cast<int>(*v);
  r.sampling.ignore_eos = bool_field(body, "ignore_eos", false);  // llama-server's extension, for benchmarks
  r.stop = stop_field(body);
  r.stream = bool_field(body, "stream", false);
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object())
      throw_invalid("'stream_options' must be an object, got " + describe(*it), "stream_options");
    r.include_usage = bool_field(*it, "include_usage", false);
  }
  return r;
}

std::string message_text(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {  // [{"type":"text","text":"..."}]
    std::string text;
    for (size_t i = 0; i < content.size(); ++i) {
      const auto& part = content[i];
      const std::string part_where = where + "[" + std::to_string(i) + "]";
      if (!part.is_object()) {
        throw_invalid(
            "'" + part_where + "' must be {\"type\":\"text\",\"text\":string}, got " + describe(part),
            part_where);
      }
      // (Looked at, not read with value(): a type that is not a string would throw a type_error, a 500.)
      const auto type = part.find("type");
      if (type == part.end() || !type->is_string()) {
        throw_invalid("'" + part_where + ".type' must be \"text\", got " +
                          (type == part.end() ? std::string("nothing") : describe(*type)),
                      part_where + ".type");
      }
      if (*type != "text") {
        throw_invalid("'" + part_where + ".type' is " + describe(*type) + "; this model reads text only",
                      part_where + ".type");
      }
      const auto part_text = part.find("text");
      if (part_text == part.end() || !part_text->is_string()) {
        throw_invalid("'" + part_where + ".text' must be a string, got " +
                          (part_text == part.end() ? std::string("nothing") : describe(*part_text)),
                      part_where + ".text");
      }
      text += part_text->get_ref<const std::string&>();
    }
    return text;
  }
  throw_invalid("'" + where + "' must be a string or an array of text parts, got " + describe(content),
                where);
}

namespace {

// An assistant message's `tool_calls`: [{"id", "type": "function", "function": {"name", "arguments"}}], the
// arguments as JSON text (an object given as an object is taken too).
std::vector<ToolCall> message_tool_calls(const json& calls, const std::string& where) {
  if (!calls.is_array())
    throw_invalid("'" + where + "' must be an array of tool calls, got " + describe(calls), where);
  std::vector<ToolCall> out;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    const json& call = calls[i];
    const std::string at = where + "[" + std::to_string(i) + "]";
    if (!call.is_object()) throw_invalid("'" + at + "' must be an object, got " + describe(call), at);
    if (auto type = call.find("type"); type != call.end() && !type->is_null() && *type != "function")
      throw_invalid("'" + at + ".type' must be \"function\", got " + describe(*type), at + ".type");
    const auto function = call.find("function");
    if (function == call.end() || !function->is_object())
      throw_invalid("'" + at + ".function' must be an object with 'name' and 'arguments'", at + ".function");
    ToolCall tool_call;
    tool_call.id = string_field(call, "id", false);
    const auto name = function->find("name");
    if (name == function->end() || !name->is_string() || name->get_ref<const std::string&>().empty())
      throw_invalid("'" + at + ".function.name' must be a non-empty string", at + ".function.name");
    tool_call.name = name->get<std::string>();
    const auto arguments = function->find("arguments");
    if (arguments == function->end() || arguments->is_null()) {
      tool_call.arguments = "{}";
    } else if (arguments->is_string()) {
      tool_call.arguments = arguments->get<std::string>();
    } else if (arguments->is_object()) {
      tool_call.arguments = arguments->dump();
    } else {
      throw_invalid("'" + at + ".function.arguments' must be a string of JSON, got " + describe(*arguments),
                    at + ".function.arguments");
    }
    out.push_back(std::move(tool_call));
  }
  return out;
}

}  // namespace

std::vector<ChatMessage> parse_messages(const json& body) {
  auto it = body.find("messages");
  if (it == body.end()) throw_invalid("'messages' is required", "messages");
  if (!it->is_array())
    throw_invalid("'messages' must be an array of messages, got " + describe(*it), "messages");
  if (it->empty()) throw_invalid("'messages' must hold at least one message", "messages");
  static const std::vector<std::string> roles{"system", "developer", "user", "assistant", "tool"};
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < it->size(); ++i) {
    const auto& m = (*it)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw_invalid("'" + where + "' must be an object, got " + describe(m), where);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      throw_invalid("'" + where + ".role' must be one of system, developer, user, assistant, tool",
                    where + ".role");
    }
    ChatMessage message;
    message.role = role->get<std::string>();
    if (std::find(roles.begin(), roles.end(), message.role) == roles.end()) {
      throw_invalid("'" + where + ".role' is '" + message.role +
                        "'; it must be one of system, developer, user, assistant, tool",
                    where + ".role");
    }
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      if (message.role != "assistant")
        throw_invalid("'" + where + ".content' is required", where + ".content");
    } else {
      message.content = message_text(*content, where + ".content");
    }
    if (message.role == "assistant") {
      if (auto calls = m.find("tool_calls"); calls != m.end() && !calls->is_null())
        message.tool_calls = message_tool_calls(*calls, where + ".tool_calls");
      if (auto thinking = m.find("reasoning_content"); thinking != m.end() && !thinking->is_null()) {
        if (!thinking->is_string())
          throw_invalid("'" + where + ".reasoning_content' must be a string, got " + describe(*thinking),
                        where + ".reasoning_content");
        message.reasoning_content = thinking->get<std::string>();
      }
    } else if (message.role == "tool") {
      message.tool_call_id = string_field(m, "tool_call_id", false);
      message.tool_name = string_field(m, "name", false);
    }
    if (message.role == "developer") message.role = "system";  // the newer name for the same role
    messages.push_back(std::move(message));
  }
  return messages;
}

// Token ids from a JSON array: each an integer in the vocabulary; with `within_context`, fewer than a
// request's context holds.
std::vector<engine::Token> token_ids_field(const ServeContext& ctx, const json& array, const char* param,
                                           bool within_context) {
  std::vector<engine::Token> tokens;
  tokens.reserve(array.size());
  const auto n_vocab = ctx.model.info().n_vocab;
  for (const auto& t : array) {
    if (!t.is_number_integer() || t.get<long long>() < 0 || t.get<long long>() >= n_vocab) {
      throw_invalid(std::string("'") + param + "' must hold token ids between 0 and " +
                        std::to_string(n_vocab - 1) + ", got " + describe(t),
                    param);
    }
    tokens.push_back(t.get<engine::Token>());
  }
  if (tokens.empty()) throw_invalid(std::string("'") + param + "' is empty", param);
  if (within_context && tokens.size() >= ctx.n_ctx) {
    throw ClawbotError({ErrorKind::context_exceeded,
                        std::string("'") + param + "' is " + std::to_string(tokens.size()) +
                            " tokens, but this server's context holds " + std::to_string(ctx.n_ctx) +
                            " tokens per request; send fewer or restart the server with a larger --ctx",
                        param, "context_length_exceeded"});
  }
  return tokens;
}

std::vector<engine::Token> tokenize_prompt(const ServeContext& ctx, const std::string& text,
                                           const char* param) {
  auto tokens = ctx.tokenizer.tokenize(text, /*add_special=*/true, /*parse_special=*/true);
  if (tokens.empty()) throw_invalid(std::string("'") + param + "' is empty", param);
  if (tokens.size() >= ctx.n_ctx) {
    throw ClawbotError({ErrorKind::context_exceeded,
                        "the prompt is " + std::to_string(tokens.size()) +
                            " tokens, but this server's context holds " + std::to_string(ctx.n_ctx) +
                            " tokens (prompt and answer together); shorten the " +
                            (std::string(param) == "messages" ? "conversation" : "prompt") +
                            " or restart the server with a larger --ctx",
                        param, "context_length_exceeded"});
  }
  return tokens;
}

std::string string_field(const json& body, const char* key, bool required) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) {
    if (required) throw_invalid(std::string("'") + key + "' is required", key);
    return {};
  }
  if (!it->is_string())
    throw_invalid(std::string("'") + key + "' must be a string, got " + describe(*it), key);
  return it->get<std::string>();
}

// ---------------------------------------------------------------- admission

// A draining node (SIGTERM) takes no new work: a 503 with Retry-After before anything is accepted, so that a
// client or a gateway sends it elsewhere, rather than a stream that starts and is then cut.
asio::awaitable<bool> refused_while_draining(const ServeContext& ctx, http::Exchange& ex) {
  if (!ctx.draining || !ctx.draining->load()) co_return false;
  const Error error{
      ErrorKind::unavailable,
      "this node is shutting down: it finishes the requests it has and takes no new ones; retry "
      "on another node",
      {},
      "draining"};
  co_await respond_busy(ex, error);
  co_return true;
}

// The model a request names. A one-model node answers whatever name it is given (as llama-server: apps often
// hard-code one), names the model that really answered, and notes the mismatch in the access log;
// --strict-model refuses other names, as OpenAI and vLLM do.
void check_model(const ServeContext& ctx, const json& body, http::Exchange& ex) {
  const auto it = body.find("model");
  if (it == body.end() || it->is_null()) return;
  if (!it->is_string()) throw_invalid("'model' must be a string, got " + describe(*it), "model");
  const auto& name = it->get_ref<const std::string&>();
  if (name.empty() || name == ctx.model_id) return;
  if (ctx.strict_model) {
    throw ClawbotError({ErrorKind::not_found,
                        "model " + describe(*it) + " is not served here; this node serves '" + ctx.model_id +
                            "' (GET /v1/models)",
                        "model", "model_not_found"});
  }
  ex.log_fields()["requested_model"] = json_read::describe(*it, 80);
}

void require_generation_model(const ServeContext& ctx) {
  if (ctx.model.info().is_embedding) {
    throw_invalid(
        "model '" + ctx.model_id + "' is an embedding model: it cannot generate text; use /v1/embeddings",
        "model", "model_not_generative");
  }
}

}  // namespace clawbot::server::api
