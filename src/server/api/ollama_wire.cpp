// The translation between Ollama's wire format and ChatRequest, apart from the routes (ollama.cpp).
#include "server/api/ollama.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "common/json_check.h"
#include "common/json_read.h"
#include "server/api/fields.h"

namespace clawbot::server::api {

using json_check::bool_field;
using json_read::describe;
using nlohmann::json;

namespace ollama {

bool names_model(std::string_view requested, std::string_view model_id) {
  constexpr std::string_view latest = ":latest";
  if (requested == model_id) return true;
  if (requested.size() == model_id.size() + latest.size() && requested.starts_with(model_id) &&
      requested.ends_with(latest))
    return true;
  return model_id.ends_with(latest) && requested == model_id.substr(0, model_id.size() - latest.size());
}

namespace {

// A field error from a nested object ("options"), renamed to the path the client wrote: "'temperature'"
// becomes "'options.temperature'".
[[noreturn]] void rethrow_nested(const ClawbotError& e, const std::string& prefix) {
  Error error = e.error();
  if (!error.param.empty()) {
    const std::string quoted = "'" + error.param + "'";
    if (const auto at = error.message.find(quoted); at != std::string::npos)
      error.message.replace(at, quoted.size(), "'" + prefix + error.param + "'");
    error.param = prefix + error.param;
  }
  throw ClawbotError(std::move(error));
}

// Ollama's stop strings: a string or an array of them (Modelfiles often set several).
std::vector<std::string> ollama_stops(const json& value) {
  constexpr std::size_t max_stops = 16;
  std::vector<std::string> stops;
  if (value.is_string()) {
    stops.push_back(value.get<std::string>());
  } else if (value.is_array() && value.size() <= max_stops &&
             std::all_of(value.begin(), value.end(), [](const json& s) { return s.is_string(); })) {
    for (const auto& s : value) stops.push_back(s.get<std::string>());
  } else {
    throw_invalid("'options.stop' must be an array of at most 16 strings, got " + describe(value),
                  "options.stop");
  }
  std::erase_if(stops, [](const std::string& s) { return s.empty(); });
  return stops;
}

std::string where_in(const std::string& where, std::string_view key) {
  return where + "." + std::string(key);
}

std::vector<Tool> parse_tools(const json& body) {
  const auto it = body.find("tools");
  std::vector<Tool> tools;
  if (it == body.end() || it->is_null()) return tools;
  if (!it->is_array()) throw_invalid("'tools' must be an array of functions, got " + describe(*it), "tools");
  for (std::size_t i = 0; i < it->size(); ++i) {
    const json& t = (*it)[i];
    const std::string where = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) throw_invalid("'" + where + "' must be an object, got " + describe(t), where);
    if (const auto type = t.find("type");
        type != t.end() && !type->is_null() && !(type->is_string() && *type == "function"))
      throw_invalid("'" + where + ".type' must be \"function\", got " + describe(*type), where + ".type");
    const auto fn = t.find("function");
    if (fn == t.end() || !fn->is_object())
      throw_invalid("'" + where + ".function' must be an object with a name", where + ".function");
    Tool tool;
    tool.name = string_field(*fn, "name", false);
    if (tool.name.empty())
      throw_invalid("'" + where + ".function.name' is required", where + ".function.name");
    tool.description = string_field(*fn, "description", false);
    if (const auto params = fn->find("parameters"); params != fn->end() && !params->is_null()) {
      if (!params->is_object())
        throw_invalid(
            "'" + where + ".function.parameters' must be a JSON schema object, got " + describe(*params),
            where + ".function.parameters");
      tool.parameters = params->dump();  // (the body was read by json_read: bounded)
    }
    tools.push_back(std::move(tool));
  }
  return tools;
}

ToolCall parse_tool_call(const json& call, const std::string& where) {
  if (!call.is_object()) throw_invalid("'" + where + "' must be an object, got " + describe(call), where);
  const auto fn = call.find("function");
  if (fn == call.end() || !fn->is_object())
    throw_invalid("'" + where + ".function' must be {\"name\": string, \"arguments\": object}",
                  where + ".function");
  ToolCall out;
  out.id = string_field(call, "id", false);
  out.name = string_field(*fn, "name", false);
  if (out.name.empty()) throw_invalid("'" + where + ".function.name' is required", where + ".function.name");
  const auto args = fn->find("arguments");
  if (args == fn->end() || args->is_null()) {
    out.arguments = "{}";
  } else if (args->is_object()) {
    out.arguments = args->dump();
  } else if (args->is_string()) {  // OpenAI's shape, which some clients send here too
    out.arguments = args->get<std::string>();
  } else {
    throw_invalid("'" + where + ".function.arguments' must be an object, got " + describe(*args),
                  where + ".function.arguments");
  }
  return out;
}

std::vector<ChatMessage> parse_ollama_messages(const json& body) {
  const auto it = body.find("messages");
  std::vector<ChatMessage> messages;
  if (it == body.end() || it->is_null()) return messages;  // none: Ollama's "load the model" request
  if (!it->is_array())
    throw_invalid("'messages' must be an array of messages, got " + describe(*it), "messages");
  for (std::size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw_invalid("'" + where + "' must be an object, got " + describe(m), where);
    ChatMessage msg;
    const auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      throw_invalid("'" + where + ".role' must be one of system, user, assistant, tool", where + ".role");
    msg.role = role->get<std::string>();
    if (msg.role == "developer") msg.role = "system";
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool")
      throw_invalid(
          "'" + where + ".role' is " + describe(*role) + "; it must be one of system, user, assistant, tool",
          where + ".role");
    if (const auto content = m.find("content"); content != m.end() && !content->is_null())
      msg.content = message_text(*content, where_in(where, "content"));
    if (const auto images = m.find("images");
        images != m.end() && !images->is_null() && !(images->is_array() && images->empty()))
      throw_invalid("'" + where + ".images': this model reads text only", where_in(where, "images"));
    msg.reasoning_content = string_field(m, "thinking", false);
    msg.tool_name = string_field(m, "tool_name", false);
    msg.tool_call_id = string_field(m, "tool_call_id", false);
    if (const auto calls = m.find("tool_calls"); calls != m.end() && !calls->is_null()) {
      if (!calls->is_array())
        throw_invalid("'" + where + ".tool_calls' must be an array, got " + describe(*calls),
                      where_in(where, "tool_calls"));
      for (std::size_t c = 0; c < calls->size(); ++c)
        msg.tool_calls.push_back(
            parse_tool_call((*calls)[c], where + ".tool_calls[" + std::to_string(c) + "]"));
    }
    messages.push_back(std::move(msg));
  }
  return messages;
}

// "think": true or false, or a level ("high", "medium", "low") that models with levels read; ours only
// switch thinking on.
std::optional<bool> parse_think(const json& body) {
  const auto it = body.find("think");
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_string() && (*it == "high" || *it == "medium" || *it == "low")) return true;
  throw_invalid("'think' must be true, false, \"high\", \"medium\" or \"low\", got " + describe(*it),
                "think");
}

// The fields /api/chat and /api/generate share: options, stream (Ollama streams unless told not to),
// format, think; keep_alive is accepted (the model stays loaded whatever it says).
void common_fields(const json& body, std::uint32_t n_ctx, ChatRequest& request) {
  request.common = options(body, n_ctx);
  request.common.stream = bool_field(body, "stream", true);
  request.format = format(body);
  request.enable_thinking = parse_think(body);
  if (const auto keep = body.find("keep_alive");
      keep != body.end() && !keep->is_null() && !keep->is_string() && !keep->is_number())
    throw_invalid("'keep_alive' must be a duration (\"5m\") or a number of seconds, got " + describe(*keep),
                  "keep_alive");
}

std::int64_t nanoseconds(double ms) {
  return static_cast<std::int64_t>(std::llround(ms * 1e6));
}

}  // namespace

CommonRequest options(const json& body, std::uint32_t n_ctx) {
  const auto it = body.find("options");
  if (it == body.end() || it->is_null()) return {};
  if (!it->is_object()) throw_invalid("'options' must be an object, got " + describe(*it), "options");
  const json& opts = *it;
  // The options whose names and meanings are OpenAI's too go through the same checks as every route.
  json same = json::object();
  for (const char* key : {"temperature", "top_p", "top_k", "min_p", "seed", "repeat_penalty",
                          "presence_penalty", "frequency_penalty"})
    if (const auto v = opts.find(key); v != opts.end()) same[key] = *v;
  CommonRequest request;
  try {
    request = parse_common(same, n_ctx);
    // num_predict: -1 (Ollama's default) until the context is full, -2 the same here; more than the
    // context: as much as it holds.
    if (const auto v = json_check::integer_field(opts, "num_predict", INT64_MIN, INT64_MAX); v && *v > 0)
      request.max_tokens = static_cast<int>(std::min<long long>(*v, n_ctx));
    if (const auto v = json_check::integer_field(opts, "repeat_last_n", -1, 1 << 20))
      request.sampling.repeat_last_n = *v < 0 ? static_cast<int>(n_ctx) : static_cast<int>(*v);
    // num_ctx: checked, not applied: the server's context per request is fixed at start (--ctx).
    json_check::integer_field(opts, "num_ctx", 1, INT64_MAX);
  } catch (const ClawbotError& e) {
    rethrow_nested(e, "options.");
  }
  if (const auto stop = opts.find("stop"); stop != opts.end() && !stop->is_null())
    request.stop = ollama_stops(*stop);
  // Other options (num_keep, typical_p, mirostat, num_gpu, num_thread, ...) are ignored, as Ollama ignores
  // the ones its runner does not use.
  return request;
}

OutputFormat format(const json& body) {
  OutputFormat out;
  out.param = "format";
  const auto it = body.find("format");
  if (it == body.end() || it->is_null() || (it->is_string() && it->get_ref<const std::string&>().empty()))
    return out;
  if (it->is_string() && *it == "json") {
    out.kind = OutputFormat::Kind::json_object;
  } else if (it->is_object()) {
    out.kind = OutputFormat::Kind::json_schema;
    out.schema = it->dump();
  } else {
    throw_invalid("'format' must be \"json\" or a JSON schema object, got " + describe(*it), "format");
  }
  return out;
}

ChatRequest chat_request(const json& body, std::uint32_t n_ctx) {
  ChatRequest request;
  request.messages = parse_ollama_messages(body);
  request.tools = parse_tools(body);
  common_fields(body, n_ctx, request);
  return request;
}

ChatRequest generate_request(const json& body, std::uint32_t n_ctx) {
  ChatRequest request;
  if (std::string system = string_field(body, "system", false); !system.empty())
    request.messages.push_back({"system", std::move(system), {}, {}, {}, {}});
  request.messages.push_back({"user", string_field(body, "prompt", false), {}, {}, {}, {}});
  common_fields(body, n_ctx, request);
  return request;
}

json message_json(const ChatMessage& message) {
  json out = {{"role", message.role.empty() ? "assistant" : message.role}, {"content", message.content}};
  if (!message.reasoning_content.empty()) out["thinking"] = message.reasoning_content;
  if (!message.tool_calls.empty()) {
    json calls = json::array();
    for (std::size_t i = 0; i < message.tool_calls.size(); ++i) {
      const ToolCall& call = message.tool_calls[i];
      // Arguments an object, as Ollama's clients read them; the model's text as it is when it is not one.
      auto parsed = json_read::parse(call.arguments);
      json arguments = parsed && parsed.value->is_object() ? std::move(*parsed.value) : json(call.arguments);
      json fn = {{"index", i}, {"name", call.name}, {"arguments", std::move(arguments)}};
      json item = {{"function", std::move(fn)}};
      if (!call.id.empty()) item["id"] = call.id;
      calls.push_back(std::move(item));
    }
    out["tool_calls"] = std::move(calls);
  }
  return out;
}

json final_fields(ChatFinish finish, const ChatUsage& usage, std::int64_t total_ns) {
  return {{"done", true},
          {"done_reason", finish == ChatFinish::length ? "length" : "stop"},
          {"total_duration", total_ns},
          {"load_duration", 0},  // the model is loaded when the server starts
          {"prompt_eval_count", usage.prompt_tokens},
          {"prompt_eval_duration", nanoseconds(usage.prompt_ms)},
          {"eval_count", usage.completion_tokens},
          {"eval_duration", nanoseconds(usage.generation_ms)}};
}

std::string quantization_level(long long file_type) {
  // llama_ftype's values (llama.h), by the names Ollama shows.
  static constexpr std::array<std::pair<long long, std::string_view>, 33> names = {{
      {0, "F32"},     {1, "F16"},     {2, "Q4_0"},     {3, "Q4_1"},    {7, "Q8_0"},     {8, "Q5_0"},
      {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"},  {12, "Q3_K_M"}, {13, "Q3_K_L"},  {14, "Q4_K_S"},
      {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},  {18, "Q6_K"},   {19, "IQ2_XXS"}, {20, "IQ2_XS"},
      {21, "Q2_K_S"}, {22, "IQ3_XS"}, {23, "IQ3_XXS"}, {24, "IQ1_S"},  {25, "IQ4_NL"},  {26, "IQ3_S"},
      {27, "IQ3_M"},  {28, "IQ2_S"},  {29, "IQ2_M"},   {30, "IQ4_XS"}, {31, "IQ1_M"},   {32, "BF16"},
      {36, "TQ1_0"},  {37, "TQ2_0"},  {38, "MXFP4"},
  }};
  for (const auto& [value, name] : names)
    if (value == file_type) return std::string(name);
  return "unknown";
}

json error_json(const Error& error) {
  return to_ollama_json(error);
}

}  // namespace ollama

}  // namespace clawbot::server::api
