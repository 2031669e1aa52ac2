#include "server/api/ollama.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <ctime>

#include <llama.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include "common/json_check.h"
#include "common/json_read.h"
#include "common/ollama_format.h"
#include "common/text.h"
#include "server/api/embeddings.h"
#include "server/api/fields.h"
#include "server/generation.h"
#include "server/infill.h"

namespace clawbot::server::api {

using nlohmann::json;
namespace asio = boost::asio;
using json_check::bool_field;
using json_read::describe;
using Clock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------- the model as Ollama lists it

// The name /api/tags lists: the id with Ollama's default tag when it has none.
std::string listed_name(const ServeContext& ctx) {
  return ollama_format::tagged_name(ctx.model_id);
}

// The model a request names ("model", or the older "name"): ours with or without ":latest"; another is
// answered by ours (noted in the access log), or 404 with --strict-model. Returns the name to echo.
std::string requested_model(const ServeContext& ctx, const json& body, http::Exchange& ex) {
  auto it = body.find("model");
  if (it == body.end() || it->is_null()) it = body.find("name");
  if (it == body.end() || it->is_null()) return listed_name(ctx);
  if (!it->is_string()) throw_invalid("'model' must be a string, got " + describe(*it), "model");
  const auto& name = it->get_ref<const std::string&>();
  if (name.empty()) return listed_name(ctx);
  if (ollama::names_model(name, ctx.model_id)) return name;
  if (ctx.strict_model)
    throw ClawbotError({ErrorKind::not_found,
                        "model " + describe(*it) + " not found; this server serves '" + listed_name(ctx) +
                            "' (GET /api/tags)",
                        "model", "model_not_found"});
  ex.log_fields()["requested_model"] = describe(*it, 80);
  return listed_name(ctx);
}

std::chrono::system_clock::time_point modified_at(const ServeContext& ctx) {
  struct stat st {};
  if (::stat(ctx.model.info().path.c_str(), &st) != 0)
    return std::chrono::system_clock::from_time_t(ctx.created);
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
}

// Ollama's digest names a model's manifest; ours names the file as loaded (path, size, modification time),
// so that a client caching by digest sees a changed file: hashing the weights (gigabytes) per request
// would not be affordable.
std::string digest(const ServeContext& ctx) {
  const auto& info = ctx.model.info();
  const std::string identity = info.path + "\n" + std::to_string(info.size_bytes) + "\n" +
                               std::to_string(modified_at(ctx).time_since_epoch().count());
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int size = 0;
  EVP_Digest(identity.data(), identity.size(), md.data(), &size, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) {
    hex += text::hex_digits[md[i] >> 4];
    hex += text::hex_digits[md[i] & 15];
  }
  return hex;
}

json details(const ServeContext& ctx) {
  const auto& info = ctx.model.info();
  long long file_type = -1;
  if (const auto ft = ctx.model.meta("general.file_type")) file_type = std::atoll(ft->c_str());
  return {{"parent_model", ""},
          {"format", "gguf"},
          {"family", info.architecture},
          {"families", json::array({info.architecture})},
          {"parameter_size", ollama_format::parameter_size(info.n_params)},
          {"quantization_level", ollama::quantization_level(file_type)}};
}

json tags_entry(const ServeContext& ctx) {
  return {{"name", listed_name(ctx)},
          {"model", listed_name(ctx)},
          {"modified_at", ollama_format::rfc3339(modified_at(ctx))},
          {"size", ctx.model.info().size_bytes},
          {"digest", digest(ctx)},
          {"details", details(ctx)}};
}

// A GGUF metadata value as JSON: numbers, booleans and arrays as themselves (llama.cpp gives them as text),
// anything else a string.
json meta_value(const std::string& text) {
  json_read::Limits limits;
  limits.max_depth = 4;
  limits.max_bytes = 1u << 20;
  if (!text.empty() &&
      (text[0] == '[' || text[0] == '-' || std::isdigit(static_cast<unsigned char>(text[0])) ||
       text == "true" || text == "false")) {
    if (auto parsed = json_read::parse(text, limits)) return std::move(*parsed.value);
  }
  return text;
}

// The GGUF's general.* and architecture keys (the tokenizer's vocabulary is left out, as Ollama leaves it
// out unless asked to be verbose).
json model_info(const ServeContext& ctx) {
  const llama_model* model = ctx.model.get();
  const std::string arch_prefix = ctx.model.info().architecture + ".";
  json out = json::object();
  std::string key(256, '\0');
  std::string value;
  for (std::int32_t i = 0; i < llama_model_meta_count(model); ++i) {
    const int key_size = llama_model_meta_key_by_index(model, i, key.data(), key.size());
    if (key_size <= 0 || static_cast<std::size_t>(key_size) >= key.size()) continue;
    const std::string name(key.data(), static_cast<std::size_t>(key_size));
    if (!name.starts_with("general.") && !name.starts_with(arch_prefix)) continue;
    const int value_size = llama_model_meta_val_str_by_index(model, i, nullptr, 0);
    if (value_size < 0) continue;
    value.assign(static_cast<std::size_t>(value_size) + 1, '\0');
    llama_model_meta_val_str_by_index(model, i, value.data(), value.size());
    value.resize(static_cast<std::size_t>(value_size));
    out[name] = meta_value(value);
  }
  if (!out.contains("general.parameter_count")) out["general.parameter_count"] = ctx.model.info().n_params;
  return out;
}

// What the model can be asked for. "tools" and "thinking" come from its chat template, as Ollama reads them
// from its own: one that renders tools (common's check) takes tools; one that switches thinking or writes
// <think> thinks.
json capabilities(const ServeContext& ctx) {
  if (ctx.model.info().is_embedding) return json::array({"embedding"});
  json out = json::array({"completion"});
  const std::string source = ctx.chat_template ? ctx.chat_template->source() : std::string();
  if (ctx.chat_template && ctx.chat_template->supports_tools()) out.push_back("tools");
  if (source.find("enable_thinking") != std::string::npos || source.find("<think>") != std::string::npos ||
      source.find("reasoning_content") != std::string::npos)
    out.push_back("thinking");
  if (ctx.tokenizer.fim()) out.push_back("insert");  // /api/generate with "suffix"
  return out;
}

// Ollama's "parameters": the defaults a request's options change, one "name value" a line.
std::string parameters_text(const ServeContext& ctx) {
  const engine::SamplingParams d;
  char text[256];
  std::snprintf(text, sizeof text,
                "temperature %g\ntop_k %d\ntop_p %g\nmin_p %g\nrepeat_penalty %g\nnum_ctx %u",
                static_cast<double>(d.temperature), d.top_k, static_cast<double>(d.top_p),
                static_cast<double>(d.min_p), static_cast<double>(d.repeat_penalty), ctx.n_ctx);
  return text;
}

// ---------------------------------------------------------------- answers

asio::awaitable<void> respond_error(http::Exchange& ex, const Error& error) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (error.kind == ErrorKind::unavailable) headers.emplace_back("Retry-After", "1");
  co_await ex.respond_json(http_status(error.kind), ollama::error_json(error), std::move(headers));
}

// An error after a stream began is its last line, as Ollama writes it.
asio::awaitable<void> answer_error(http::Exchange& ex, const Error& error) {
  if (ex.sse_started()) {
    co_await ex.ndjson_line(ollama::error_json(error).dump());
  } else if (!ex.responded()) {
    ex.stop_watching();  // (no write in progress: it cancels the watch on a whole answer's socket)
    co_await respond_error(ex, error);
  }
}

// Writes run_chat's events as Ollama's NDJSON: a line per piece while streaming, then a last line with
// done, done_reason and the statistics; or one object with all of it.
class NdjsonSink final : public ChatSink {
 public:
  enum class Shape { chat, generate };
  NdjsonSink(http::Exchange& ex, Shape shape, std::string model, bool stream)
      : ex_(ex), shape_(shape), model_(std::move(model)), stream_(stream) {}

  asio::awaitable<bool> begin(const ChatRequest&, int) override {
    if (!stream_) co_return true;
    co_return co_await ex_.ndjson_start();
  }

  asio::awaitable<bool> delta(const ChatDelta& delta) override {
    // Tool calls go out whole at the end (Ollama's clients read each call as one object).
    if (!stream_ || (delta.content.empty() && delta.reasoning_content.empty())) co_return true;
    ChatMessage piece;
    piece.role = "assistant";
    piece.content = delta.content;
    piece.reasoning_content = delta.reasoning_content;
    json line = head(piece);
    line["done"] = false;
    co_return co_await write(line);
  }

  // NDJSON has no comment line, and Ollama sends nothing while a prompt is read.
  asio::awaitable<bool> keep_alive() override { co_return true; }

  asio::awaitable<void> finish(const std::vector<ChatChoice>& choices, const ChatUsage& usage) override {
    const ChatChoice& choice = choices.front();  // Ollama asks for one answer
    const auto total_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started_).count();
    const ChatFinish finish = choice.finish;
    if (!stream_) {
      json whole = head(choice.message);
      whole.update(ollama::final_fields(finish, usage, static_cast<std::int64_t>(total_ns)));
      ex_.stop_watching();
      co_await ex_.respond_json(200, whole);
      co_return;
    }
    if (!choice.message.tool_calls.empty()) {
      ChatMessage calls;
      calls.role = "assistant";
      calls.tool_calls = choice.message.tool_calls;
      json line = head(calls);
      line["done"] = false;
      if (!co_await write(line)) co_return;
    }
    ChatMessage empty;
    empty.role = "assistant";
    json last = head(empty);
    last.update(ollama::final_fields(finish, usage, static_cast<std::int64_t>(total_ns)));
    co_await write(last);
  }

  asio::awaitable<void> fail(const Error& error) override { co_await answer_error(ex_, error); }

 private:
  // model, created_at, and the message (chat) or response (generate).
  json head(const ChatMessage& message) const {
    json out = {{"model", model_}, {"created_at", ollama_format::rfc3339(std::chrono::system_clock::now())}};
    if (shape_ == Shape::chat) {
      out["message"] = ollama::message_json(message);
    } else {
      out["response"] = message.content;
      if (!message.reasoning_content.empty()) out["thinking"] = message.reasoning_content;
    }
    return out;
  }

  asio::awaitable<bool> write(const json& line) {
    co_return co_await ex_.ndjson_line(line.dump(-1, ' ', false, json::error_handler_t::replace));
  }

  http::Exchange& ex_;
  Shape shape_;
  std::string model_;
  bool stream_;
  const Clock::time_point started_ = Clock::now();
};

// A prompt that is not a conversation (/api/generate with "raw", or with "suffix": fill in the middle), run
// as it is and written through the same sink as a chat.
asio::awaitable<void> run_raw(const ServeContext& ctx, http::Exchange& ex, std::vector<engine::Token> prompt,
                              const ChatRequest& request, ChatSink& sink) {
  RequestJobs jobs(ctx, ex, request.common);
  const int prompt_tokens = static_cast<int>(prompt.size());
  if (!jobs.submit(std::move(prompt), request.common.sampling, request.common.stop)) {
    co_await sink.fail(queue_full_error());
    co_return;
  }
  if (!co_await sink.begin(request, prompt_tokens)) co_return;
  if (!request.common.stream) jobs.watch_client();
  ChatChoice choice;
  choice.message.role = "assistant";
  while (!jobs.all_done()) {
    const auto event = co_await jobs.next();
    if (!event) {
      if (!jobs.client_gone()) co_await sink.fail(RequestJobs::shutting_down_error());
      co_return;
    }
    if (event->error) {
      co_await sink.fail(*event->error);
      co_return;
    }
    if (!event->done && event->text.empty()) {  // a heartbeat while the prompt is read
      if (request.common.stream && !co_await sink.keep_alive()) co_return;
      continue;
    }
    jobs.observe_timing(*event);
    choice.message.content += event->text;
    if (request.common.stream && !event->text.empty()) {
      ChatDelta delta;
      delta.content = event->text;
      if (!co_await sink.delta(delta)) co_return;
    }
    if (event->done) {
      jobs.count_finished(*event);
      choice.finish = event->finish_reason == FinishReason::length ? ChatFinish::length : ChatFinish::stop;
    }
  }
  jobs.record_success(choice.finish == ChatFinish::length ? "length" : "stop");
  const GenerationEvent& totals = jobs.totals();
  const ChatUsage usage{totals.prompt_tokens, totals.cached_tokens, totals.completion_tokens,
                        totals.prompt_ms,     totals.generation_ms, totals.queue_ms};
  const std::vector<ChatChoice> choices{std::move(choice)};
  co_await sink.finish(choices, usage);
}

// ---------------------------------------------------------------- routes

void refuse_while_draining(const ServeContext& ctx) {
  if (ctx.draining && ctx.draining->load())
    throw ClawbotError({ErrorKind::unavailable,
                        "this node is shutting down: it finishes the requests it has and takes no new ones; "
                        "retry on another node",
                        {},
                        "draining"});
}

// Ollama answers a request with nothing to say (no messages, no prompt) by loading the model: clients send
// one to warm a model up.
asio::awaitable<void> answer_loaded(http::Exchange& ex, const std::string& model, const char* field) {
  json out = {{"model", model}, {"created_at", ollama_format::rfc3339(std::chrono::system_clock::now())}};
  if (std::string_view(field) == "message")
    out["message"] = {{"role", "assistant"}, {"content", ""}};
  else
    out[field] = "";
  out["done_reason"] = "load";
  out["done"] = true;
  co_await ex.respond_json(200, out);
}

asio::awaitable<void> chat(const ServeContext& ctx, http::Exchange& ex) {
  refuse_while_draining(ctx);
  const json body = parse_body(ex);
  const std::string model = requested_model(ctx, body, ex);
  require_generation_model(ctx);
  const ChatRequest request = ollama::chat_request(body, ctx.n_ctx);
  if (request.messages.empty()) {
    co_await answer_loaded(ex, model, "message");
    co_return;
  }
  NdjsonSink sink(ex, NdjsonSink::Shape::chat, model, request.common.stream);
  co_await run_chat(ctx, ex, request, sink);
}

asio::awaitable<void> generate(const ServeContext& ctx, http::Exchange& ex) {
  refuse_while_draining(ctx);
  const json body = parse_body(ex);
  const std::string model = requested_model(ctx, body, ex);
  require_generation_model(ctx);
  if (const auto images = body.find("images");
      images != body.end() && !images->is_null() && !(images->is_array() && images->empty()))
    throw_invalid("'images': this model reads text only", "images");
  if (!string_field(body, "template", false).empty())
    throw_invalid("'template' is not supported: the model's own chat template is used (or --chat-template)",
                  "template");
  if (const auto context = body.find("context");
      context != body.end() && !context->is_null() && !(context->is_array() && context->empty()))
    throw_invalid(
        "'context' (the deprecated token context) is not supported; send the conversation to "
        "/api/chat",
        "context");
  const bool raw = bool_field(body, "raw", false);
  const std::string prompt = string_field(body, "prompt", false);
  const std::string suffix = string_field(body, "suffix", false);
  ChatRequest request = ollama::generate_request(body, ctx.n_ctx);
  if (prompt.empty() && suffix.empty()) {
    co_await answer_loaded(ex, model, "response");
    co_return;
  }
  NdjsonSink sink(ex, NdjsonSink::Shape::generate, model, request.common.stream);
  if (!suffix.empty()) {
    const auto fim = ctx.tokenizer.fim();
    if (!fim)
      throw_invalid("model '" + ctx.model_id +
                        "' does not support insert: its vocabulary has no fill-in-the-middle tokens; serve a "
                        "code model trained for FIM to use 'suffix'",
                    "suffix", "fim_not_supported");
    InfillInput input;
    input.prefix = prompt;
    input.suffix = suffix;
    const int answer_room =
        request.common.max_tokens > 0 ? request.common.max_tokens : static_cast<int>(ctx.n_ctx / 4);
    InfillPrompt infill =
        build_infill_prompt(ctx.tokenizer, *fim, input, static_cast<int>(ctx.n_ctx) - answer_room);
    if (!infill.fits)
      throw ClawbotError({ErrorKind::context_exceeded,
                          "the prompt and suffix do not fit in this server's context", "prompt",
                          "context_length_exceeded"});
    co_await run_raw(ctx, ex, std::move(infill.tokens), request, sink);
  } else if (raw) {
    co_await run_raw(ctx, ex, tokenize_prompt(ctx, prompt, "prompt"), request, sink);
  } else {
    co_await run_chat(ctx, ex, request, sink);
  }
}

// Inputs as tokens; with `truncate` (Ollama's default) one longer than the context is cut to fit, else a 400.
std::vector<std::vector<engine::Token>> embed_inputs(const ServeContext& ctx, const json& input,
                                                     bool truncate) {
  std::vector<std::vector<engine::Token>> inputs;
  const auto add = [&](const json& v, const std::string& where) {
    if (!v.is_string()) throw_invalid("'" + where + "' must be a string, got " + describe(v), where);
    auto tokens = embedding_tokens(ctx, v.get<std::string>(), where);
    if (truncate && tokens.size() > ctx.n_ctx) tokens.resize(ctx.n_ctx);
    inputs.push_back(std::move(tokens));
  };
  if (input.is_string()) {
    add(input, "input");
  } else if (input.is_array()) {
    if (input.size() > 2048) throw_invalid("'input' may hold at most 2048 strings", "input");
    for (std::size_t i = 0; i < input.size(); ++i) add(input[i], "input[" + std::to_string(i) + "]");
  } else {
    throw_invalid("'input' must be a string or an array of strings, got " + describe(input), "input");
  }
  if (!truncate) check_embedding_lengths(ctx, inputs);
  return inputs;
}

asio::awaitable<void> embed_route(const ServeContext& ctx, http::Exchange& ex) {
  refuse_while_draining(ctx);
  const auto started = Clock::now();
  const json body = parse_body(ex);
  const std::string model = requested_model(ctx, body, ex);
  require_embedding_model(ctx, "/api/embed");
  const auto input = body.find("input");
  if (input == body.end() || input->is_null()) throw_invalid("'input' is required", "input");
  if (auto d = json_check::integer_field(body, "dimensions", 1, 1 << 20); d && *d != ctx.model.info().n_embd)
    throw_invalid("this model's embeddings have " + std::to_string(ctx.model.info().n_embd) +
                      " dimensions; 'dimensions' cannot change that",
                  "dimensions");
  auto inputs = embed_inputs(ctx, *input, bool_field(body, "truncate", true));
  json out = {{"model", model}, {"embeddings", json::array()}};
  if (!inputs.empty()) {
    const auto result = co_await embed(ctx, ex, std::move(inputs));
    if (!result) throw ClawbotError(queue_full_error());
    for (const auto& v : result->vectors) out["embeddings"].push_back(v);
    out["prompt_eval_count"] = result->prompt_tokens;
  }
  out["total_duration"] =
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started).count();
  out["load_duration"] = 0;
  co_await ex.respond_json(200, out);
}

// The older /api/embeddings: one "prompt", one "embedding" (empty for an empty prompt, as Ollama answers).
asio::awaitable<void> embeddings_route(const ServeContext& ctx, http::Exchange& ex) {
  refuse_while_draining(ctx);
  const json body = parse_body(ex);
  requested_model(ctx, body, ex);
  require_embedding_model(ctx, "/api/embeddings");
  const std::string prompt = string_field(body, "prompt", false);
  json out = {{"embedding", json::array()}};
  if (!prompt.empty()) {
    auto inputs = embed_inputs(ctx, json(prompt), true);
    const auto result = co_await embed(ctx, ex, std::move(inputs));
    if (!result) throw ClawbotError(queue_full_error());
    out["embedding"] = result->vectors.front();
  }
  co_await ex.respond_json(200, out);
}

asio::awaitable<void> show(const ServeContext& ctx, http::Exchange& ex) {
  const json body = parse_body(ex);
  requested_model(ctx, body, ex);
  const json out = {
      {"license", ""},
      {"modelfile", "# Modelfile of the model clawbot serves\nFROM " + ctx.model.info().path + "\n"},
      {"parameters", parameters_text(ctx)},
      {"template", ctx.chat_template ? ctx.chat_template->source() : ""},
      {"details", details(ctx)},
      {"model_info", model_info(ctx)},
      {"capabilities", capabilities(ctx)},
      {"modified_at", ollama_format::rfc3339(modified_at(ctx))}};
  co_await ex.respond_json(200, out);
}

// The one model, loaded for as long as the server runs: it never expires, and its weights are in GPU
// memory when this build offloads to a GPU (--gpu-layers 0 aside).
asio::awaitable<void> ps(const ServeContext& ctx, http::Exchange& ex) {
  json entry = tags_entry(ctx);
  entry.erase("modified_at");
  entry["expires_at"] = "9999-12-31T23:59:59Z";
  entry["size_vram"] = llama_supports_gpu_offload() ? ctx.model.info().size_bytes : 0;
  entry["context_length"] = ctx.n_ctx;
  const json out = {{"models", json::array({std::move(entry)})}};
  co_await ex.respond_json(200, out);
}

using Route = asio::awaitable<void> (*)(const ServeContext&, http::Exchange&);

// Every error in Ollama's shape, {"error": "..."}, with the status its kind has.
http::Handler ollama_route(const ServeContext* ctx, Route route) {
  return [ctx, route](http::Exchange& ex) -> asio::awaitable<void> {
    std::optional<Error> failure;  // (co_await may not appear inside a catch handler)
    try {
      co_await route(*ctx, ex);
    } catch (const std::exception& e) {
      failure = answer_for(e);
      if (failure->kind == ErrorKind::internal)
        spdlog::error("handler for {} failed: {}", ex.path(), e.what());
    }
    if (failure) co_await answer_error(ex, *failure);
  };
}

}  // namespace

void add_ollama_routes(const ServeContext& ctx, const AddRoute& add) {
  const ServeContext* c = &ctx;
  add(http::Verb::get, "/api/version", [](http::Exchange& ex) -> asio::awaitable<void> {
    const json out = {{"version", ollama_format::api_version}};
    co_await ex.respond_json(200, out);
  });
  add(http::Verb::get, "/api/tags", [c](http::Exchange& ex) -> asio::awaitable<void> {
    const json out = {{"models", json::array({tags_entry(*c)})}};
    co_await ex.respond_json(200, out);
  });
  add(http::Verb::get, "/api/ps", ollama_route(c, ps));
  add(http::Verb::post, "/api/show", ollama_route(c, show));
  add(http::Verb::post, "/api/chat", ollama_route(c, chat));
  add(http::Verb::post, "/api/generate", ollama_route(c, generate));
  add(http::Verb::post, "/api/embed", ollama_route(c, embed_route));
  add(http::Verb::post, "/api/embeddings", ollama_route(c, embeddings_route));
}

}  // namespace clawbot::server::api
