#include "server/openai_routes.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <optional>
#include <random>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "client/prompts.h"
#include "common/backup_metrics.h"
#include "common/json_check.h"
#include "common/json_read.h"
#include "common/text.h"
#include "common/use_tuple.h"
#include "monitor/alerts.h"
#include "server/api/anthropic_messages.h"
#include "server/api/audio.h"
#include "server/api/chat_completions.h"
#include "server/api/embeddings.h"
#include "server/api/fields.h"
#include "server/api/ollama.h"
#include "server/api/rerank.h"
#include "server/api/responses.h"
#include "server/generation.h"
#include "server/infill.h"
#include "server/kb_routes.h"
#include "web/respond.h"

namespace clawbot::server {
namespace {

using nlohmann::json;
namespace asio = boost::asio;
using json_check::bool_field;
using json_check::integer_field;
using json_check::number_field;
using json_read::describe;
using namespace api;

// ---------------------------------------------------------------- routes

asio::awaitable<void> completions(const ServeContext& ctx, http::Exchange& ex) {
  if (co_await refused_while_draining(ctx, ex)) co_return;
  const json body = parse_body(ex);
  check_model(ctx, body, ex);
  require_generation_model(ctx);
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) throw_invalid("'prompt' is required", "prompt");
  std::string text;
  std::optional<std::vector<engine::Token>> token_ids;  // a prompt given as token ids, as OpenAI allows
  if (it->is_string()) {
    text = it->get<std::string>();
  } else if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
    text = (*it)[0].get<std::string>();
  } else if (it->is_array() && !it->empty() && (*it)[0].is_number()) {
    token_ids = token_ids_field(ctx, *it, "prompt");
  } else {
    throw_invalid(
        "'prompt' must be a string, an array of one string or an array of token ids, got " + describe(*it),
        "prompt");
  }
  if (bool_field(body, "echo", false)) throw_invalid("'echo' is not supported", "echo");
  CommonRequest req = parse_common(body, ctx.n_ctx);
  // llama-server's extension: a GBNF grammar the answer follows; refused here, before the answer starts.
  req.sampling.grammar = string_field(body, "grammar", false);
  engine::check_grammar(ctx.model, req.sampling);
  auto prompt = token_ids ? std::move(*token_ids) : tokenize_prompt(ctx, text, "prompt");
  co_await run_generation(ctx, ex, Api::completions, std::move(prompt), req);
}

// POST /infill, as llama-server: {input_prefix, input_suffix, input_extra?, prompt?, n_predict|max_tokens,
// ...}.
asio::awaitable<void> infill(const ServeContext& ctx, http::Exchange& ex) {
  if (co_await refused_while_draining(ctx, ex)) co_return;
  const json body = parse_body(ex);
  check_model(ctx, body, ex);
  require_generation_model(ctx);
  const auto fim = ctx.tokenizer.fim();
  if (!fim) {
    throw_invalid(
        "model '" + ctx.model_id +
            "' has no fill-in-the-middle tokens (such as <fim_prefix>, <fim_suffix>, <fim_middle>), so "
            "it cannot infill; serve a code model trained for FIM, or ask /v1/chat/completions with an "
            "instruction",
        "", "fim_not_supported");
  }
  InfillInput input;
  input.prefix = string_field(body, "input_prefix", true);
  input.suffix = string_field(body, "input_suffix", true);
  input.prompt = string_field(body, "prompt", false);
  if (auto it = body.find("input_extra"); it != body.end() && !it->is_null()) {
    if (!it->is_array())
      throw_invalid("'input_extra' must be an array of {\"filename\": string, \"text\": string}",
                    "input_extra");
    for (std::size_t i = 0; i < it->size(); ++i) {
      const json& chunk = (*it)[i];
      const std::string where = "input_extra[" + std::to_string(i) + "]";
      if (!chunk.is_object())
        throw_invalid("'" + where + "' must be an object, got " + describe(chunk), where);
      const auto text = chunk.find("text");
      if (text == chunk.end() || !text->is_string())
        throw_invalid("'" + where + ".text' must be a string (the file's content)", where + ".text");
      const auto name = chunk.find("filename");
      if (name != chunk.end() && !name->is_null() && !name->is_string())
        throw_invalid("'" + where + ".filename' must be a string", where + ".filename");
      input.extra.push_back(
          {name != chunk.end() && name->is_string() ? name->get<std::string>() : std::string(),
           text->get<std::string>()});
    }
  }
  const CommonRequest req = parse_common(body, ctx.n_ctx, /*n_predict=*/true);
  // Room for the answer: max_tokens when given, else a quarter of the context.
  const int answer_room = req.max_tokens > 0 ? req.max_tokens : static_cast<int>(ctx.n_ctx / 4);
  const int budget = static_cast<int>(ctx.n_ctx) - answer_room;
  InfillPrompt prompt = build_infill_prompt(ctx.tokenizer, *fim, input, budget);
  if (!prompt.fits) {
    throw ClawbotError({ErrorKind::context_exceeded,
                        "the fill-in-the-middle frame and 'prompt' do not fit in " + std::to_string(budget) +
                            " tokens (this server's context of " + std::to_string(ctx.n_ctx) +
                            " tokens less " + std::to_string(answer_room) +
                            " for the answer); shorten 'prompt' or lower max_tokens",
                        "prompt", "context_length_exceeded"});
  }
  const json cut = {{"truncated", prompt.truncated()},
                    {"truncation",
                     {{"prefix_tokens_dropped", prompt.prefix_dropped},
                      {"suffix_tokens_dropped", prompt.suffix_dropped},
                      {"extra_tokens_dropped", prompt.extra_dropped}}}};
  co_await run_generation(ctx, ex, Api::infill, std::move(prompt.tokens), req, cut);
}

std::string base64_floats(const std::vector<float>& v) {
  static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* bytes = reinterpret_cast<const unsigned char*>(v.data());
  const std::size_t n = v.size() * sizeof(float);
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (std::size_t i = 0; i < n; i += 3) {
    const std::uint32_t b0 = bytes[i], b1 = i + 1 < n ? bytes[i + 1] : 0, b2 = i + 2 < n ? bytes[i + 2] : 0;
    const std::uint32_t triple = (b0 << 16) | (b1 << 8) | b2;
    out += table[(triple >> 18) & 63];
    out += table[(triple >> 12) & 63];
    out += i + 1 < n ? table[(triple >> 6) & 63] : '=';
    out += i + 2 < n ? table[triple & 63] : '=';
  }
  return out;
}

asio::awaitable<void> embeddings(const ServeContext& ctx, http::Exchange& ex) {
  if (co_await refused_while_draining(ctx, ex)) co_return;
  const json body = parse_body(ex);
  check_model(ctx, body, ex);
  require_embedding_model(ctx, "/v1/embeddings");
  auto it = body.find("input");
  if (it == body.end() || it->is_null()) throw_invalid("'input' is required", "input");
  std::vector<std::vector<engine::Token>> inputs;
  auto add_text = [&](const json& v, const std::string& where) {
    if (!v.is_string()) throw_invalid("'" + where + "' must be a string, got " + describe(v), where);
    inputs.push_back(embedding_tokens(ctx, v.get<std::string>(), where));
  };
  auto token_list = [&](const json& v, const std::string& where) {
    inputs.push_back(token_ids_field(ctx, v, where.c_str()));
  };
  if (it->is_string()) {
    add_text(*it, "input");
  } else if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) {
    token_list(*it, "input");
  } else if (it->is_array() && !it->empty()) {
    if (it->size() > 2048) throw_invalid("'input' may hold at most 2048 items", "input");
    for (std::size_t i = 0; i < it->size(); ++i) {
      const std::string where = "input[" + std::to_string(i) + "]";
      if ((*it)[i].is_array()) {
        token_list((*it)[i], where);
      } else {
        add_text((*it)[i], where);
      }
    }
  } else {
    throw_invalid("'input' must be a string, an array of strings, or token arrays, got " + describe(*it),
                  "input");
  }
  std::string format = "float";
  if (auto f = body.find("encoding_format"); f != body.end() && !f->is_null()) {
    if (!f->is_string() || (f->get<std::string>() != "float" && f->get<std::string>() != "base64")) {
      throw_invalid("'encoding_format' must be \"float\" or \"base64\", got " + describe(*f),
                    "encoding_format");
    }
    format = f->get<std::string>();
  }
  if (auto d = integer_field(body, "dimensions", 1, 1 << 20); d && *d != ctx.model.info().n_embd) {
    throw_invalid("this model's embeddings have " + std::to_string(ctx.model.info().n_embd) +
                      " dimensions; 'dimensions' cannot change that",
                  "dimensions");
  }
  check_embedding_lengths(ctx, inputs);
  const auto result = co_await embed(ctx, ex, std::move(inputs));
  if (!result) {
    const Error full = queue_full_error();
    co_await respond_busy(ex, full);
    co_return;
  }
  json data = json::array();
  for (std::size_t i = 0; i < result->vectors.size(); ++i) {
    json item = {{"object", "embedding"}, {"index", i}};
    if (format == "base64") {
      item["embedding"] = base64_floats(result->vectors[i]);
    } else {
      item["embedding"] = result->vectors[i];
    }
    data.push_back(std::move(item));
  }
  const json reply = {
      {"object", "list"},
      {"data", std::move(data)},
      {"model", ctx.model_id},
      {"usage", {{"prompt_tokens", result->prompt_tokens}, {"total_tokens", result->prompt_tokens}}}};
  co_await ex.respond_json(200, reply);
}

json model_entry(const ServeContext& ctx) {
  const auto& info = ctx.model.info();
  const auto& opts = ctx.scheduler.options();
  return {{"id", ctx.model_id},
          {"object", "model"},
          {"created", static_cast<long long>(ctx.created)},
          {"owned_by", "clawbot"},
          {"meta",
           {{"architecture", info.architecture},
            {"description", info.description},
            {"n_ctx", ctx.n_ctx},
            {"n_ctx_per_request", ctx.n_ctx},
            {"n_ctx_train", info.n_ctx_train},
            {"n_params", info.n_params},
            {"size", info.size_bytes},
            {"n_vocab", info.n_vocab},
            {"n_embd", info.n_embd},
            {"parallel", opts.parallel},
            {"embedding", info.is_embedding},
            {"fim", ctx.tokenizer.fim().has_value()},  // POST /infill works (fill-in-the-middle tokens)
            {"chat_template", ctx.chat_template ? ctx.chat_template->name() : ""}}}};
}

// llama-server's GET /props: what a client (its web UI, llama-swap, ...) reads once to set itself up.
json props(const ServeContext& ctx) {
  const auto& info = ctx.model.info();
  const engine::SamplingParams defaults;
  const auto piece = [&](engine::Token t) { return t < 0 ? std::string() : ctx.tokenizer.piece(t, true); };
  return {
      {"default_generation_settings",
       {{"n_ctx", ctx.n_ctx},
        {"params",
         {{"temperature", defaults.temperature},
          {"top_k", defaults.top_k},
          {"top_p", defaults.top_p},
          {"min_p", defaults.min_p},
          {"repeat_penalty", defaults.repeat_penalty},
          {"repeat_last_n", defaults.repeat_last_n},
          {"frequency_penalty", defaults.frequency_penalty},
          {"presence_penalty", defaults.presence_penalty},
          {"max_tokens", ctx.n_ctx}}}}},
      {"total_slots", ctx.scheduler.options().parallel},
      {"model_alias", ctx.model_id},
      {"model_path", info.path},
      {"modalities", {{"vision", false}, {"audio", false}}},
      {"chat_template", ctx.chat_template ? ctx.chat_template->source() : ""},
      {"chat_template_name", ctx.chat_template ? ctx.chat_template->name() : ""},
      // Jinja (run by llama.cpp's common chat layer) or a built-in libllama format; whether it shows tools.
      {"chat_template_caps",
       {{"jinja", ctx.chat_template && ctx.chat_template->jinja()},
        {"supports_tools", ctx.chat_template && ctx.chat_template->supports_tools()}}},
      {"reasoning_format",
       ctx.chat_template ? engine::reasoning_format_name(ctx.chat_template->reasoning_format()) : "none"},
      {"bos_token", piece(ctx.tokenizer.bos())},
      {"eos_token", piece(ctx.tokenizer.eos())},
      {"build_info", "clawbot, llama.cpp " + engine::llama_release()},
      {"endpoint_slots", true},
      {"endpoint_metrics", true}};
}

// llama-server's GET /slots: each slot's state and what its KV cache holds, as of the last engine step.
json slots(const ServeContext& ctx) {
  json out = json::array();
  for (const auto& s : ctx.scheduler.slot_states()) {
    out.push_back({{"id", s.id},
                   {"n_ctx", ctx.n_ctx},
                   {"is_processing", s.state != "idle"},
                   {"state", s.state},
                   {"cached_tokens", s.cached},
                   {"prompt_tokens", s.prompt},
                   {"prompt_tokens_processed", s.prefilled},
                   {"prompt_tokens_reused", s.reused},
                   {"generated_tokens", s.generated},
                   {"max_tokens", s.max_tokens},
                   {"running_ms", s.running_ms}});
  }
  return out;
}

// llama-server's /tokenize and /detokenize, for clients that count or inspect tokens.
asio::awaitable<void> tokenize(const ServeContext& ctx, http::Exchange& ex) {
  const json body = parse_body(ex);
  auto it = body.find("content");
  if (it == body.end() || !it->is_string()) {
    throw_invalid(
        "'content' must be a string, got " + (it == body.end() ? std::string("nothing") : describe(*it)),
        "content");
  }
  const auto tokens = ctx.tokenizer.tokenize(it->get<std::string>(), bool_field(body, "add_special", false),
                                             bool_field(body, "parse_special", true));
  const json out = {{"tokens", tokens}};
  co_await ex.respond_json(200, out);
}

asio::awaitable<void> detokenize(const ServeContext& ctx, http::Exchange& ex) {
  const json body = parse_body(ex);
  auto it = body.find("tokens");
  if (it == body.end() || !it->is_array()) {
    throw_invalid("'tokens' must be an array of token ids, got " +
                      (it == body.end() ? std::string("nothing") : describe(*it)),
                  "tokens");
  }
  std::vector<engine::Token> tokens;
  if (!it->empty()) tokens = token_ids_field(ctx, *it, "tokens", /*within_context=*/false);
  // A byte of a character split across tokens is not UTF-8 on its own: replaced, not refused.
  const json out = {{"content", ctx.tokenizer.detokenize(tokens, /*render_special=*/true)}};
  const std::string text = out.dump(-1, ' ', false, json::error_handler_t::replace);
  co_await ex.respond_text(200, text, "application/json");
}

}  // namespace

std::shared_ptr<const http::Router> make_openai_router(const ServeContext& context,
                                                       std::vector<std::string>* paths) {
  auto router = std::make_shared<http::Router>();
  const ServeContext* ctx = &context;
  const auto add = [&](http::Verb verb, std::string path, http::Handler handler) {
    if (paths) paths->push_back(path);
    router->add(verb, std::move(path), std::move(handler));
  };
  add(http::Verb::get, "/health", [ctx](http::Exchange& ex) -> asio::awaitable<void> {
    const auto stats = ctx->scheduler.stats();
    // Draining (SIGTERM): 503, so that a health check takes the node out of rotation at once.
    const bool draining = ctx->draining && ctx->draining->load();
    const json health = {{"status", draining ? "draining" : "ok"},
                         {"model", ctx->model_id},
                         {"queued", stats.queued},
                         {"slots_busy", stats.slots_busy},
                         {"slots_total", stats.slots_total}};
    co_await ex.respond_json(draining ? 503 : 200, health);
  });
  add(http::Verb::get, "/v1/models", [ctx](http::Exchange& ex) -> asio::awaitable<void> {
    json models = {{"object", "list"}, {"data", json::array({model_entry(*ctx)})}};
    // --kb: each knowledge base as a model id "kb:NAME" (retrieval-augmented chat with this node's model)
    if (ctx->kb)
      for (const auto& name : ctx->kb->names())
        models["data"].push_back({{"id", "kb:" + name},
                                  {"object", "model"},
                                  {"created", static_cast<long long>(ctx->created)},
                                  {"owned_by", "clawbot"},
                                  {"meta", {{"knowledge_base", name}, {"model", ctx->model_id}}}});
    if (ctx->transcription) models["data"].push_back(audio_model_entry(*ctx));
    co_await ex.respond_json(200, models);
  });
  add(http::Verb::get, "/props", [ctx](http::Exchange& ex) -> asio::awaitable<void> {
    const json body = props(*ctx);
    co_await ex.respond_json(200, body);
  });
  add(http::Verb::get, "/slots", [ctx](http::Exchange& ex) -> asio::awaitable<void> {
    const json body = slots(*ctx);
    co_await ex.respond_json(200, body);
  });
  add(http::Verb::get, "/metrics", [ctx](http::Exchange& ex) -> asio::awaitable<void> {
    // and the last backup's figures (common/backup_metrics.h)
    const std::string text = (ctx->metrics ? ctx->metrics->render() : std::string()) + backup_metrics_text();
    co_await ex.respond_text(200, text, "text/plain; version=0.0.4; charset=utf-8");
  });
  add(http::Verb::get, "/api/alerts", [ctx](http::Exchange& ex) -> asio::awaitable<void> {
    const json body =
        ctx->alerts ? ctx->alerts->to_json() : json{{"alerts", json::array()}, {"rules", json::array()}};
    co_await ex.respond_json(200, body);
  });
  add(http::Verb::get, "/api/metrics/history", [ctx](http::Exchange& ex) -> asio::awaitable<void> {
    if (!ctx->history) throw ClawbotError(ErrorKind::not_found, "this node keeps no metrics history");
    const auto target = ex.request().target();
    const auto since = monitor::history_since(std::string_view(target.data(), target.size()));
    co_await ex.respond_text(200, ctx->history->json(since), "application/json");
  });
  add(http::Verb::post, "/v1/chat/completions",
      [ctx](http::Exchange& ex) { return api::chat_completions(*ctx, ex); });
  add(http::Verb::post, "/v1/completions", [ctx](http::Exchange& ex) { return completions(*ctx, ex); });
  add(http::Verb::post, "/infill", [ctx](http::Exchange& ex) { return infill(*ctx, ex); });
  add(http::Verb::post, "/v1/embeddings", [ctx](http::Exchange& ex) { return embeddings(*ctx, ex); });
  // llama-server's four names for one route (Jina's and Cohere's shape)
  for (const char* path : {"/v1/rerank", "/rerank", "/v1/reranking", "/reranking"}) {
    add(http::Verb::post, path, [ctx](http::Exchange& ex) { return rerank(*ctx, ex); });
  }
  add(http::Verb::post, "/tokenize", [ctx](http::Exchange& ex) { return tokenize(*ctx, ex); });
  add(http::Verb::post, "/detokenize", [ctx](http::Exchange& ex) { return detokenize(*ctx, ex); });
  // Paths under /v1/kb/ are dynamic (a knowledge base may be created while the node runs): the fallback
  if (auto kb_paths = add_kb_routes(context, add)) router->set_fallback(std::move(kb_paths));
  add_responses_routes(context, add);
  add_anthropic_routes(context, add);
  add_ollama_routes(*ctx, add);
  add_audio_routes(context, add);
  if (!ctx->web) return router;  // --no-web
  // The browser pages (web/): the chat (/) and the dashboard, their files, compiled in
  for (const web::Asset& asset : web::assets())
    add(http::Verb::get, std::string(asset.path),
        [&asset](http::Exchange& ex) { return web::respond_asset(ex, asset); });
  // The chat's writing and code tasks, built by the CLI's own functions (client/prompts.h)
  add(http::Verb::get, std::string(client::prompts_route), [](http::Exchange& ex) -> asio::awaitable<void> {
    co_await ex.respond_json(200, client::prompt_tasks());
  });
  add(http::Verb::post, std::string(client::prompts_route), [](http::Exchange& ex) -> asio::awaitable<void> {
    const json messages = client::prompt_messages(parse_body(ex));
    co_await ex.respond_json(200, messages);
  });
  return router;
}

}  // namespace clawbot::server
