#include "server/api/chat_completions.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <optional>

#include "common/json_check.h"
#include "common/json_read.h"

#include "server/api/chat.h"
#include "server/api/fields.h"
#include "server/kb_routes.h"

namespace clawbot::server::api {
namespace {

using nlohmann::json;
namespace asio = boost::asio;
using json_check::bool_field;
using json_read::describe;

GenerationEvent as_totals(const ChatUsage& usage) {
  GenerationEvent totals;
  totals.prompt_tokens = usage.prompt_tokens;
  totals.cached_tokens = usage.cached_tokens;
  totals.completion_tokens = usage.completion_tokens;
  totals.prompt_ms = usage.prompt_ms;
  totals.generation_ms = usage.generation_ms;
  totals.queue_ms = usage.queue_ms;
  return totals;
}

json tool_calls_json(const std::vector<ToolCall>& calls) {
  json out = json::array();
  for (const auto& call : calls) {
    out.push_back({{"id", call.id},
                   {"type", "function"},
                   {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
  }
  return out;
}

// OpenAI's chat answer: one JSON object, or a stream of chat.completion.chunk events.
class OpenAiChatSink final : public ChatSink {
 public:
  OpenAiChatSink(const ServeContext& ctx, http::Exchange& ex, const CommonRequest& req)
      : ctx_(ctx),
        ex_(ex),
        req_(req),
        id_(new_id("chatcmpl-")),
        created_(static_cast<long long>(std::time(nullptr))) {}

  // Fields added to the answer (the whole object, or a stream's last chunk): a knowledge base's citations.
  void add_fields(const json& fields) {
    for (const auto& [key, value] : fields.items()) extra_[key] = value;
  }

  asio::awaitable<bool> begin(const ChatRequest& /*request*/, int /*prompt_tokens*/) override {
    if (!req_.stream) co_return true;
    bool open = co_await ex_.sse_start();
    for (int i = 0; open && i < req_.n; ++i) {
      const json opening = chunk(i, json{{"role", "assistant"}, {"content", ""}}, nullptr);
      open = co_await ex_.sse_data(opening.dump());
    }
    co_return open;
  }

  // Content and reasoning as they come; a tool call's id and name in its first chunk (arguments ""), then its
  // arguments in pieces, as OpenAI streams them.
  asio::awaitable<bool> delta(const ChatDelta& delta) override {
    json fields = json::object();
    if (!delta.reasoning_content.empty()) fields["reasoning_content"] = delta.reasoning_content;
    if (!delta.content.empty()) fields["content"] = delta.content;
    std::vector<std::string> events;
    if (!fields.empty()) events.push_back(chunk(delta.choice, std::move(fields), nullptr).dump());
    for (const auto& call : delta.tool_calls) {
      if (!call.name.empty()) {
        json opening = {{"index", call.index},
                        {"id", call.id},
                        {"type", "function"},
                        {"function", {{"name", call.name}, {"arguments", ""}}}};
        events.push_back(tool_call_chunk(delta.choice, std::move(opening)).dump());
      }
      if (call.arguments.empty()) continue;
      json piece = {{"index", call.index}, {"function", {{"arguments", call.arguments}}}};
      events.push_back(tool_call_chunk(delta.choice, std::move(piece)).dump());
    }
    for (const auto& event : events) {
      if (!co_await ex_.sse_data(event)) co_return false;
    }
    co_return true;
  }

  asio::awaitable<bool> keep_alive() override { co_return co_await ex_.sse_comment("keep-alive"); }

  // Usage once: in its own chunk when the client asked for it (as OpenAI: a client adding up chunks counts
  // it once), else in the last finish chunk (as llama-server); llama-server's timings beside it.
  asio::awaitable<void> finish(const std::vector<ChatChoice>& choices, const ChatUsage& usage) override {
    const GenerationEvent totals = as_totals(usage);
    if (!req_.stream) {
      json out = json::array();
      for (const auto& choice : choices) {
        json message = {{"role", "assistant"}};
        const bool calls = !choice.message.tool_calls.empty();
        message["content"] =
            calls && choice.message.content.empty() ? json(nullptr) : json(choice.message.content);
        if (!choice.message.reasoning_content.empty())
          message["reasoning_content"] = choice.message.reasoning_content;
        if (calls) message["tool_calls"] = tool_calls_json(choice.message.tool_calls);
        out.push_back({{"index", choice.index},
                       {"finish_reason", openai_finish_reason(choice.finish)},
                       {"logprobs", nullptr},
                       {"message", std::move(message)}});
      }
      json reply = envelope("chat.completion", std::move(out));
      reply["usage"] = usage_json(totals);
      reply["timings"] = timings_json(totals);
      for (const auto& [key, value] : extra_.items()) reply[key] = value;
      co_await ex_.respond_json(200, reply);
      co_return;
    }
    for (std::size_t i = 0; i < choices.size(); ++i) {
      json last = chunk(choices[i].index, json::object(), openai_finish_reason(choices[i].finish));
      if (i + 1 == choices.size() && !req_.include_usage) {
        last["usage"] = usage_json(totals);
        last["timings"] = timings_json(totals);
      }
      if (i + 1 == choices.size())
        for (const auto& [key, value] : extra_.items()) last[key] = value;
      if (!co_await ex_.sse_data(last.dump())) co_return;
    }
    if (req_.include_usage) {
      json tail = envelope("chat.completion.chunk", json::array());
      tail["usage"] = usage_json(totals);
      tail["timings"] = timings_json(totals);
      co_await ex_.sse_data(tail.dump());
    }
    // the session writes [DONE]
  }

  asio::awaitable<void> fail(const Error& error) override {
    if (ex_.sse_started()) {
      co_await ex_.sse_data(to_json(error).dump());
    } else if (error.kind == ErrorKind::unavailable) {
      co_await respond_busy(ex_, error);
    } else {
      co_await ex_.respond_error(error);
    }
  }

 private:
  json chunk(int choice, json delta, const json& finish) const {
    return envelope("chat.completion.chunk", json::array({{{"index", choice},
                                                           {"delta", std::move(delta)},
                                                           {"finish_reason", finish},
                                                           {"logprobs", nullptr}}}));
  }

  json tool_call_chunk(int choice, json call) const {
    json delta = json::object();
    delta["tool_calls"] = json::array({std::move(call)});
    return chunk(choice, std::move(delta), nullptr);
  }

  json envelope(const char* object, json choices) const {
    return openai_envelope(id_, object, created_, ctx_.model_id, std::move(choices));
  }

  const ServeContext& ctx_;
  http::Exchange& ex_;
  const CommonRequest& req_;
  std::string id_;
  long long created_;
  json extra_ = json::object();
};

// An answer the model is not asked for (a knowledge base that holds no answer): written as the model's would
// be.
asio::awaitable<void> answer_without_model(ChatSink& sink, const ChatRequest& request,
                                           const std::string& text) {
  if (!co_await sink.begin(request, 0)) co_return;
  if (request.common.stream) {
    ChatDelta delta;
    delta.content = text;
    if (!co_await sink.delta(delta)) co_return;
  }
  // Named, not braced temporaries in the co_await: GCC 12 miscompiles those ("array used as initializer").
  std::vector<ChatChoice> choices(1);
  choices[0].message.role = "assistant";
  choices[0].message.content = text;
  const ChatUsage usage;
  co_await sink.finish(choices, usage);
}

// OpenAI's `tools`: [{"type": "function", "function": {"name", "description"?, "parameters"?}}].
std::vector<Tool> tools_field(const json& body) {
  const auto it = body.find("tools");
  if (it == body.end() || it->is_null()) return {};
  if (!it->is_array()) {
    throw_invalid(
        "'tools' must be an array of {\"type\": \"function\", \"function\": {...}}, got " + describe(*it),
        "tools");
  }
  if (it->size() > 128) throw_invalid("'tools' may hold at most 128 functions", "tools");
  std::vector<Tool> tools;
  for (std::size_t i = 0; i < it->size(); ++i) {
    const json& entry = (*it)[i];
    const std::string where = "tools[" + std::to_string(i) + "]";
    if (!entry.is_object()) throw_invalid("'" + where + "' must be an object, got " + describe(entry), where);
    if (auto type = entry.find("type"); type == entry.end() || *type != "function")
      throw_invalid("'" + where + ".type' must be \"function\"", where + ".type");
    const auto function = entry.find("function");
    if (function == entry.end() || !function->is_object())
      throw_invalid("'" + where + ".function' must be an object with a 'name'", where + ".function");
    Tool tool;
    tool.name = string_field(*function, "name", false);
    const bool name_ok = !tool.name.empty() && tool.name.size() <= 64 &&
                         std::all_of(tool.name.begin(), tool.name.end(), [](char c) {
                           return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
                         });
    if (!name_ok) {
      throw_invalid("'" + where + ".function.name' must be 1 to 64 letters, digits, '_' or '-'",
                    where + ".function.name");
    }
    for (const auto& other : tools) {
      if (other.name == tool.name)
        throw_invalid("'" + where + ".function.name' repeats '" + tool.name + "'", where + ".function.name");
    }
    if (auto d = function->find("description"); d != function->end() && !d->is_null()) {
      if (!d->is_string())
        throw_invalid("'" + where + ".function.description' must be a string",
                      where + ".function.description");
      tool.description = d->get<std::string>();
    }
    if (auto p = function->find("parameters"); p != function->end() && !p->is_null()) {
      if (!p->is_object()) {
        throw_invalid("'" + where + ".function.parameters' must be a JSON schema object, got " + describe(*p),
                      where + ".function.parameters");
      }
      tool.parameters = p->dump();
    }
    tools.push_back(std::move(tool));
  }
  return tools;
}

// "auto", "none", "required", or {"type": "function", "function": {"name": ...}}.
void tool_choice_field(const json& body, ChatRequest& request) {
  const auto it = body.find("tool_choice");
  if (it == body.end() || it->is_null()) {
    request.tool_choice = ToolChoice::automatic;
    return;
  }
  if (it->is_string()) {
    const auto& word = it->get_ref<const std::string&>();
    if (word == "auto") {
      request.tool_choice = ToolChoice::automatic;
    } else if (word == "none") {
      request.tool_choice = ToolChoice::none;
    } else if (word == "required") {
      request.tool_choice = ToolChoice::required;
    } else {
      throw_invalid(
          "'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", "
          "\"function\": {\"name\": ...}}, got " +
              describe(*it),
          "tool_choice");
    }
    return;
  }
  const auto function = it->is_object() ? it->find("function") : json::const_iterator();
  if (!it->is_object() || it->value("type", json()) != "function" || function == it->end() ||
      !function->is_object() || !function->contains("name") || !(*function)["name"].is_string()) {
    throw_invalid(
        "'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": "
        "{\"name\": ...}}, got " +
            describe(*it),
        "tool_choice");
  }
  request.tool_choice = ToolChoice::named;
  request.tool_choice_name = (*function)["name"].get<std::string>();
  const bool known = std::any_of(request.tools.begin(), request.tools.end(),
                                 [&](const Tool& t) { return t.name == request.tool_choice_name; });
  if (!known) {
    throw_invalid(
        "'tool_choice' names the function " + describe((*function)["name"]) + ", which is not among 'tools'",
        "tool_choice");
  }
}

// {"type": "text"}, {"type": "json_object"}, {"type": "json_schema", "json_schema": {"name", "schema",
// "strict"}}.
OutputFormat response_format_field(const json& body) {
  OutputFormat format;
  const auto it = body.find("response_format");
  if (it == body.end() || it->is_null()) return format;
  if (!it->is_object())
    throw_invalid("'response_format' must be an object, got " + describe(*it), "response_format");
  const std::string type = string_field(*it, "type", false);
  if (type == "text" || type.empty()) return format;
  if (type == "json_object") {
    format.kind = OutputFormat::Kind::json_object;
    return format;
  }
  if (type != "json_schema") {
    throw_invalid("'response_format.type' must be \"text\", \"json_object\" or \"json_schema\", got " +
                      describe((*it)["type"]),
                  "response_format.type");
  }
  const auto wrapper = it->find("json_schema");
  if (wrapper == it->end() || !wrapper->is_object()) {
    throw_invalid("'response_format.json_schema' must be an object with 'name' and 'schema'",
                  "response_format.json_schema");
  }
  const auto schema = wrapper->find("schema");
  if (schema == wrapper->end() || schema->is_null()) {
    format.kind = OutputFormat::Kind::json_object;  // a name and no schema: any JSON object
    return format;
  }
  if (!schema->is_object()) {
    throw_invalid(
        "'response_format.json_schema.schema' must be a JSON schema object, got " + describe(*schema),
        "response_format.json_schema.schema");
  }
  format.kind = OutputFormat::Kind::json_schema;
  format.schema = schema->dump();
  format.param = "response_format.json_schema.schema";
  return format;
}

// chat_template_kwargs {"enable_thinking": bool}, as llama-server and vLLM take it.
std::optional<bool> enable_thinking_field(const json& body) {
  const auto it = body.find("chat_template_kwargs");
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_object())
    throw_invalid("'chat_template_kwargs' must be an object, got " + describe(*it), "chat_template_kwargs");
  const auto flag = it->find("enable_thinking");
  if (flag == it->end() || flag->is_null()) return std::nullopt;
  if (!flag->is_boolean()) {
    throw_invalid("'chat_template_kwargs.enable_thinking' must be true or false, got " + describe(*flag),
                  "chat_template_kwargs.enable_thinking");
  }
  return flag->get<bool>();
}

}  // namespace

asio::awaitable<void> chat_completions(const ServeContext& ctx, http::Exchange& ex) {
  if (co_await refused_while_draining(ctx, ex)) co_return;
  const json body = parse_body(ex);
  const auto kb_name = requested_kb(ctx, body);  // "kb": "NAME" or model "kb:NAME" (kb_routes.h)
  if (!kb_name) check_model(ctx, body, ex);
  require_generation_model(ctx);
  ChatRequest request;
  request.messages = parse_messages(body);
  request.common = parse_common(body, ctx.n_ctx);
  request.tools = tools_field(body);
  tool_choice_field(body, request);
  request.parallel_tool_calls = bool_field(body, "parallel_tool_calls", true);
  request.format = response_format_field(body);
  request.enable_thinking = enable_thinking_field(body);
  request.add_generation_prompt = bool_field(body, "add_generation_prompt", true);
  std::optional<KbGrounding> grounding;
  if (kb_name)
    grounding = co_await ground_chat(ctx, ex, *kb_name, request.messages, request.common.max_tokens);
  OpenAiChatSink sink(ctx, ex, request.common);
  if (grounding) {
    sink.add_fields(grounding_fields(*grounding));
    if (grounding->refused) {
      co_await answer_without_model(sink, request, kb::refusal_text(grounding->passages));
      co_return;
    }
  }
  co_await run_chat(ctx, ex, request, sink);
}

}  // namespace clawbot::server::api
