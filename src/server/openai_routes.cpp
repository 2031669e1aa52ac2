#include "server/openai_routes.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <optional>
#include <random>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/json_read.h"
#include "server/infill.h"

namespace clawbot::server {
namespace {

using nlohmann::json;
namespace asio = boost::asio;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// ---------------------------------------------------------------- request validation

std::string describe(const json& v) { return json_read::describe(v); }

json parse_body(const http::Exchange& ex) {
  json parsed = json_read::parse_or_throw(ex.request().body(), "request body");
  if (!parsed.is_object()) throw_invalid("request body must be a JSON object, got " + describe(parsed));
  return parsed;
}

std::optional<double> number_field(const json& body, const char* key, double min, double max) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) {
    throw_invalid(std::string("'") + key + "' must be a number, got " + describe(*it), key);
  }
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < min || v > max) {
    throw_invalid(std::string("'") + key + "' must be between " + describe(json(min)) + " and " +
                      describe(json(max)) + ", got " + describe(*it),
                  key);
  }
  return v;
}

std::optional<long long> integer_field(const json& body, const char* key, long long min, long long max) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  const bool integral = it->is_number_integer() ||
                        (it->is_number_float() && std::floor(it->get<double>()) == it->get<double>());
  if (!integral) throw_invalid(std::string("'") + key + "' must be an integer, got " + describe(*it), key);
  // Compared as what they are: a double cast to long long out of its range is undefined, and 2^63 as a
  // double equals INT64_MAX as a double.
  bool in_range = false;
  long long value = 0;
  if (it->is_number_unsigned()) {
    const auto u = it->get<unsigned long long>();
    in_range = max >= 0 && u <= static_cast<unsigned long long>(max);
    value = in_range ? static_cast<long long>(u) : 0;
    in_range = in_range && value >= min;
  } else if (it->is_number_integer()) {
    value = it->get<long long>();
    in_range = value >= min && value <= max;
  } else {
    const double v = it->get<double>();
    in_range = v >= static_cast<double>(min) && v < 9.2233720368547758e18 && v <= static_cast<double>(max);
    value = in_range ? static_cast<long long>(v) : 0;
    in_range = in_range && value >= min && value <= max;
  }
  if (!in_range) {
    throw_invalid(std::string("'") + key + "' must be between " + std::to_string(min) + " and " +
                      std::to_string(max) + ", got " + describe(*it),
                  key);
  }
  return value;
}

bool bool_field(const json& body, const char* key, bool fallback) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    throw_invalid(std::string("'") + key + "' must be true or false, got " + describe(*it), key);
  return it->get<bool>();
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

struct CommonRequest {
  engine::SamplingParams sampling;
  int max_tokens = 0;
  int min_tokens = 0;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  int n = 1;
};

// `n_predict`: also llama-server's name for max_tokens (/infill), where -1 means "until the context is full";
// max_tokens wins when both are given.
CommonRequest parse_common(const json& body, std::uint32_t n_ctx, bool n_predict = false) {
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

std::vector<engine::ChatMessage> parse_messages(const json& body) {
  auto it = body.find("messages");
  if (it == body.end()) throw_invalid("'messages' is required", "messages");
  if (!it->is_array())
    throw_invalid("'messages' must be an array of messages, got " + describe(*it), "messages");
  if (it->empty()) throw_invalid("'messages' must hold at least one message", "messages");
  static const std::vector<std::string> roles{"system", "developer", "user", "assistant", "tool"};
  std::vector<engine::ChatMessage> messages;
  for (size_t i = 0; i < it->size(); ++i) {
    const auto& m = (*it)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw_invalid("'" + where + "' must be an object, got " + describe(m), where);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      throw_invalid("'" + where + ".role' must be one of system, developer, user, assistant, tool",
                    where + ".role");
    }
    std::string role_name = role->get<std::string>();
    if (std::find(roles.begin(), roles.end(), role_name) == roles.end()) {
      throw_invalid("'" + where + ".role' is '" + role_name +
                        "'; it must be one of system, developer, user, assistant, tool",
                    where + ".role");
    }
    auto content = m.find("content");
    std::string text;
    if (content == m.end() || content->is_null()) {
      if (role_name != "assistant") throw_invalid("'" + where + ".content' is required", where + ".content");
    } else {
      text = message_text(*content, where + ".content");
    }
    if (role_name == "developer") role_name = "system";  // the newer name for the same role
    messages.push_back({std::move(role_name), std::move(text)});
  }
  return messages;
}

// Token ids from a JSON array: each an integer in the vocabulary; with `within_context`, fewer than a
// request's context holds.
std::vector<engine::Token> token_ids_field(const ServeContext& ctx, const json& array, const char* param,
                                           bool within_context = true) {
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

std::string new_id(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char hex[] = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += hex[rng() % 16];
  return id;
}

json usage_json(const GenerationEvent& e) {
  return {{"prompt_tokens", e.prompt_tokens},
          {"completion_tokens", e.completion_tokens},
          {"total_tokens", e.prompt_tokens + e.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", e.cached_tokens}}}};
}

// llama-server's timings: prompt_n counts the prompt tokens processed (not those taken from the cache), and
// prompt_ms runs from the slot taking the request to its first token; queue_ms (ours) is the wait before.
json timings_json(const GenerationEvent& e) {
  const int processed = e.prompt_tokens - e.cached_tokens;
  const int steps = e.completion_tokens - 1;  // the first token comes with the prompt's last step
  return {{"cache_n", e.cached_tokens},
          {"prompt_n", processed},
          {"prompt_ms", e.prompt_ms},
          {"prompt_per_token_ms", processed > 0 ? e.prompt_ms / processed : 0.0},
          {"prompt_per_second", e.prompt_ms > 0 ? 1000.0 * processed / e.prompt_ms : 0.0},
          {"predicted_n", e.completion_tokens},
          {"predicted_ms", e.generation_ms},
          {"predicted_per_token_ms", steps > 0 ? e.generation_ms / steps : 0.0},
          {"predicted_per_second", steps > 0 && e.generation_ms > 0 ? 1000.0 * steps / e.generation_ms : 0.0},
          {"queue_ms", e.queue_ms}};
}

// ---------------------------------------------------------------- generation plumbing

// infill: llama-server's /infill answer ({"content", "stop", ...}), not an OpenAI one.
enum class Api { chat, completions, infill };

// The jobs of one request (n choices); whatever way the handler leaves, the scheduler learns that nobody
// listens any more.
struct Generation {
  std::shared_ptr<EventChannel> events;
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
  ~Generation() {
    if (events) {
      cancelled->store(true);
      events->close();
    }
  }
};

// OpenAI's words for why a choice ended ("error" is never written: an error event answers instead).
const char* openai_finish_reason(FinishReason reason) {
  switch (reason) {
    case FinishReason::stop:
      return "stop";
    case FinishReason::length:
      return "length";
    case FinishReason::error:
      return "error";
  }
  return "stop";
}

Error queue_full_error() {
  return Error{ErrorKind::unavailable,
               "the server is busy: its request queue is full; retry shortly",
               {},
               "queue_full"};
}

asio::awaitable<void> respond_busy(http::Exchange& ex, const Error& error) {
  std::vector<std::pair<std::string, std::string>> headers;
  headers.emplace_back("Retry-After", "1");
  co_await ex.respond_error(error, std::move(headers));
}

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

// What the access log says of a request's tokens and first token (never its text).
void note_usage(http::Exchange& ex, const GenerationEvent& totals, std::optional<double> ttft_ms) {
  auto& fields = ex.log_fields();
  fields["prompt_tokens"] = totals.prompt_tokens;
  fields["cached_tokens"] = totals.cached_tokens;
  fields["completion_tokens"] = totals.completion_tokens;
  if (ttft_ms) fields["ttft_ms"] = std::round(*ttft_ms * 10) / 10;
}

// `final_fields` are added to the last answer (infill: what was cut to fit).
asio::awaitable<void> run_generation(const ServeContext& ctx, http::Exchange& ex, Api api,
                                     std::vector<engine::Token> prompt, const CommonRequest& req,
                                     const json& final_fields = json::object()) {
  const auto started = std::chrono::steady_clock::now();
  Generation gen;
  gen.events = std::make_shared<EventChannel>(ex.executor(), 64);
  std::vector<GenerationJob> jobs;
  for (int i = 0; i < req.n; ++i) {
    GenerationJob job;
    job.prompt = prompt;
    job.sampling = req.sampling;
    if (job.sampling.seed != engine::random_seed) job.sampling.seed += static_cast<std::uint32_t>(i);
    job.max_tokens = req.max_tokens;
    job.min_tokens = req.min_tokens;
    job.stop = req.stop;
    job.choice = i;
    job.events = gen.events;
    job.cancelled = gen.cancelled;
    jobs.push_back(std::move(job));
  }
  if (!ctx.scheduler.submit(std::move(jobs))) {
    const Error full = queue_full_error();
    co_await respond_busy(ex, full);
    co_return;
  }

  const std::string id = new_id(api == Api::chat ? "chatcmpl-" : "cmpl-");
  const auto created = static_cast<long long>(std::time(nullptr));
  const char* object = api == Api::chat ? "chat.completion" : "text_completion";
  const char* chunk_object = api == Api::chat ? "chat.completion.chunk" : "text_completion";

  auto chunk = [&](int choice_index, const std::string& text, const json& finish_reason, bool first) {
    if (api == Api::infill) return json{{"index", choice_index}, {"content", text}, {"stop", false}};
    json choice = {{"index", choice_index}, {"finish_reason", finish_reason}};
    if (api == Api::chat) {
      json delta = json::object();
      if (first) delta["role"] = "assistant";
      if (!text.empty() || first) delta["content"] = text;
      choice["delta"] = std::move(delta);
    } else {
      choice["text"] = text;
    }
    choice["logprobs"] = nullptr;
    return json{{"id", id},
                {"object", chunk_object},
                {"created", created},
                {"model", ctx.model_id},
                {"system_fingerprint", "clawbot"},
                {"choices", json::array({choice})}};
  };

  // llama-server's fields, and usage as OpenAI counts it.
  auto infill_final = [&](int choice_index, const std::string& text, const GenerationEvent& e) {
    return json{{"index", choice_index},
                {"content", text},
                {"stop", true},
                {"model", ctx.model_id},
                {"stop_type", e.finish_reason == FinishReason::length ? "limit" : "eos"},
                {"tokens_predicted", e.completion_tokens},
                {"tokens_evaluated", e.prompt_tokens},
                {"tokens_cached", e.cached_tokens},
                {"usage", usage_json(e)},
                {"timings", timings_json(e)}};
  };

  // A streamed answer notices a client that left when a write fails; a whole answer is written only at the
  // end, so the socket is watched meanwhile, and a close cancels the job (its slot is free at the next step).
  auto client_gone = std::make_shared<std::atomic<bool>>(false);
  if (!req.stream) {
    ex.watch_for_close([cancelled = gen.cancelled, events = gen.events, client_gone] {
      client_gone->store(true);
      cancelled->store(true);
      events->close();  // ends the wait below
    });
  }

  if (req.stream) {
    if (!co_await ex.sse_start()) co_return;
    if (api == Api::chat) {
      for (int i = 0; i < req.n; ++i) {
        if (!co_await ex.sse_data(chunk(i, "", nullptr, true).dump())) co_return;
      }
    }
  }

  std::vector<std::string> contents(static_cast<std::size_t>(req.n));
  std::vector<FinishReason> finish_reasons(static_cast<std::size_t>(req.n));
  GenerationEvent totals;
  int done = 0;
  bool first_token_seen = false;
  std::optional<double> ttft_ms;
  auto last_token_at = started;
  while (done < req.n) {
    auto [ec, event] = co_await gen.events->async_receive(use_tuple);
    if (ec && client_gone->load()) co_return;  // no answer: the access log says 499
    if (ec) {                                  // the scheduler dropped the job (shutdown)
      const Error gone{ErrorKind::unavailable, "the server is shutting down; retry on another node", {}, {}};
      if (req.stream) {
        co_await ex.sse_data(to_json(gone).dump());
      } else {
        ex.stop_watching();  // before a write: it cancels the socket's waits
        co_await ex.respond_error(gone);
      }
      co_return;
    }
    if (event.error) {
      ex.log_fields()["error"] = to_json(*event.error)["error"]["code"];
      if (req.stream) {
        co_await ex.sse_data(to_json(*event.error).dump());
      } else {
        ex.stop_watching();
        co_await ex.respond_error(*event.error);
      }
      co_return;
    }
    if (!event.done && event.text.empty()) {  // a heartbeat while the prompt waits or is prefilled
      if (req.stream && !co_await ex.sse_comment("keep-alive")) co_return;
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (!event.text.empty() && ctx.metrics) {
      if (!first_token_seen) {
        ttft_ms = std::chrono::duration<double, std::milli>(now - started).count();
        ctx.metrics->histogram_observe("clawbot_time_to_first_token_seconds", "Time to first token",
                                       monitor::ttft_buckets(),
                                       std::chrono::duration<double>(now - started).count());
      } else {
        ctx.metrics->histogram_observe("clawbot_inter_token_latency_seconds", "Time between streamed pieces",
                                       monitor::itl_buckets(),
                                       std::chrono::duration<double>(now - last_token_at).count());
      }
      first_token_seen = true;
      last_token_at = now;
    }
    const auto choice = static_cast<std::size_t>(event.choice);
    if (req.stream) {
      if (!event.text.empty() && !event.done) {
        if (!co_await ex.sse_data(chunk(event.choice, event.text, nullptr, false).dump()))
          co_return;  // client gone
      }
    } else {
      contents[choice] += event.text;
    }
    if (!event.done) continue;
    ++done;
    finish_reasons[choice] = event.finish_reason;
    totals.prompt_tokens = event.prompt_tokens;
    totals.cached_tokens = std::max(totals.cached_tokens, event.cached_tokens);
    totals.completion_tokens += event.completion_tokens;
    totals.prompt_ms = std::max(totals.prompt_ms, event.prompt_ms);
    totals.generation_ms = std::max(totals.generation_ms, event.generation_ms);
    totals.queue_ms = std::max(totals.queue_ms, event.queue_ms);
    if (done == req.n) note_usage(ex, totals, ttft_ms);
    if (req.stream && api == Api::infill) {
      json last = infill_final(event.choice, event.text, event);
      if (done == req.n) last.update(final_fields);
      if (!co_await ex.sse_data(last.dump())) co_return;
    } else if (req.stream) {
      json last = chunk(event.choice, event.text, openai_finish_reason(event.finish_reason), false);
      // Usage once: in its own chunk when the client asked for it (as OpenAI: a client adding up chunks
      // counts it once), else in the finish chunk (as llama-server); llama-server's timings beside it.
      if (done == req.n && !req.include_usage) {
        last["usage"] = usage_json(totals);
        last["timings"] = timings_json(totals);
      }
      if (!co_await ex.sse_data(last.dump())) co_return;
    }
  }
  if (ctx.metrics) {
    ctx.metrics->histogram_observe(
        "clawbot_e2e_request_latency_seconds", "Request latency, end to end", monitor::e2e_buckets(),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    ctx.metrics->counter_add("clawbot_request_success_total", "Finished requests by finish reason",
                             {{"finished_reason", openai_finish_reason(finish_reasons[0])}});
  }
  if (req.stream) {
    if (req.include_usage && api != Api::infill) {
      json usage_chunk = chunk(0, "", nullptr, false);
      usage_chunk["choices"] = json::array();
      usage_chunk["usage"] = usage_json(totals);
      usage_chunk["timings"] = timings_json(totals);
      co_await ex.sse_data(usage_chunk.dump());
    }
    co_return;  // the session writes [DONE]
  }
  ex.stop_watching();
  if (api == Api::infill) {
    // One object for one answer, as llama-server; an array for n > 1.
    json answers = json::array();
    for (int i = 0; i < req.n; ++i) {
      GenerationEvent e = totals;
      e.finish_reason = finish_reasons[static_cast<std::size_t>(i)];
      answers.push_back(infill_final(i, contents[static_cast<std::size_t>(i)], e));
      answers.back().update(final_fields);
    }
    co_await ex.respond_json(200, req.n == 1 ? answers[0] : answers);
    co_return;
  }
  json choices = json::array();
  for (int i = 0; i < req.n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    json choice = {
        {"index", i}, {"finish_reason", openai_finish_reason(finish_reasons[k])}, {"logprobs", nullptr}};
    if (api == Api::chat) {
      choice["message"] = {{"role", "assistant"}, {"content", contents[k]}};
    } else {
      choice["text"] = contents[k];
    }
    choices.push_back(std::move(choice));
  }
  const json reply = {{"id", id},
                      {"object", object},
                      {"created", created},
                      {"model", ctx.model_id},
                      {"system_fingerprint", "clawbot"},
                      {"choices", std::move(choices)},
                      {"usage", usage_json(totals)},
                      {"timings", timings_json(totals)}};
  co_await ex.respond_json(200, reply);
}

// ---------------------------------------------------------------- routes

void require_generation_model(const ServeContext& ctx) {
  if (ctx.model.info().is_embedding) {
    throw_invalid(
        "model '" + ctx.model_id + "' is an embedding model: it cannot generate text; use /v1/embeddings",
        "model", "model_not_generative");
  }
}

asio::awaitable<void> chat_completions(const ServeContext& ctx, http::Exchange& ex) {
  if (co_await refused_while_draining(ctx, ex)) co_return;
  const json body = parse_body(ex);
  check_model(ctx, body, ex);
  require_generation_model(ctx);
  const auto messages = parse_messages(body);
  const CommonRequest req = parse_common(body, ctx.n_ctx);
  if (!ctx.chat_template) {
    throw_invalid(ctx.chat_template_problem + "; /v1/completions works without one", "messages",
                  "no_chat_template");
  }
  auto prompt = tokenize_prompt(ctx, ctx.chat_template->apply(messages, true), "messages");
  co_await run_generation(ctx, ex, Api::chat, std::move(prompt), req);
}

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
  const CommonRequest req = parse_common(body, ctx.n_ctx);
  auto prompt = token_ids ? std::move(*token_ids) : tokenize_prompt(ctx, text, "prompt");
  co_await run_generation(ctx, ex, Api::completions, std::move(prompt), req);
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
  if (!ctx.model.info().is_embedding) {
    throw_invalid("model '" + ctx.model_id +
                      "' cannot compute embeddings: it is a text-generation model; serve an embedding model "
                      "(such as bge-small-en-v1.5) for /v1/embeddings",
                  "model", "model_not_embedding");
  }
  auto it = body.find("input");
  if (it == body.end() || it->is_null()) throw_invalid("'input' is required", "input");
  std::vector<std::vector<engine::Token>> inputs;
  auto add_text = [&](const json& v, const std::string& where) {
    if (!v.is_string()) throw_invalid("'" + where + "' must be a string, got " + describe(v), where);
    auto tokens = ctx.tokenizer.tokenize(v.get<std::string>(), true, false);
    if (tokens.empty()) throw_invalid("'" + where + "' is empty", where);
    inputs.push_back(std::move(tokens));
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
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].size() > ctx.n_ctx) {
      throw ClawbotError({ErrorKind::context_exceeded,
                          "input " + std::to_string(i) + " is " + std::to_string(inputs[i].size()) +
                              " tokens, but this model embeds at most " + std::to_string(ctx.n_ctx),
                          inputs.size() == 1 ? "input" : "input[" + std::to_string(i) + "]",
                          "context_length_exceeded"});
    }
  }

  Generation gen;
  gen.events = std::make_shared<EventChannel>(ex.executor(), inputs.size() + 1);
  std::vector<GenerationJob> jobs;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    GenerationJob job;
    job.prompt = std::move(inputs[i]);
    job.embedding = true;
    job.choice = static_cast<int>(i);
    job.events = gen.events;
    job.cancelled = gen.cancelled;
    jobs.push_back(std::move(job));
  }
  const std::size_t count = jobs.size();
  if (!ctx.scheduler.submit(std::move(jobs))) {
    const Error full = queue_full_error();
    co_await respond_busy(ex, full);
    co_return;
  }
  json data = json::array();
  for (std::size_t i = 0; i < count; ++i) data.push_back(nullptr);
  long long prompt_tokens = 0;
  for (std::size_t received = 0; received < count;) {
    auto [ec, event] = co_await gen.events->async_receive(use_tuple);
    if (ec) throw ClawbotError({ErrorKind::unavailable, "the server is shutting down", {}, {}});
    if (event.error) throw ClawbotError(*event.error);
    if (!event.done) continue;
    ++received;
    prompt_tokens += event.prompt_tokens;
    json item = {{"object", "embedding"}, {"index", event.choice}};
    if (format == "base64") {
      item["embedding"] = base64_floats(event.embedding);
    } else {
      item["embedding"] = event.embedding;
    }
    data[static_cast<std::size_t>(event.choice)] = std::move(item);
  }
  const json reply = {{"object", "list"},
                      {"data", std::move(data)},
                      {"model", ctx.model_id},
                      {"usage", {{"prompt_tokens", prompt_tokens}, {"total_tokens", prompt_tokens}}}};
  ex.log_fields()["prompt_tokens"] = prompt_tokens;
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
  return {{"default_generation_settings",
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
    const json models = {{"object", "list"}, {"data", json::array({model_entry(*ctx)})}};
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
    const std::string text = ctx->metrics ? ctx->metrics->render() : std::string();
    co_await ex.respond_text(200, text, "text/plain; version=0.0.4; charset=utf-8");
  });
  add(http::Verb::post, "/v1/chat/completions",
      [ctx](http::Exchange& ex) { return chat_completions(*ctx, ex); });
  add(http::Verb::post, "/v1/completions", [ctx](http::Exchange& ex) { return completions(*ctx, ex); });
  add(http::Verb::post, "/infill", [ctx](http::Exchange& ex) { return infill(*ctx, ex); });
  add(http::Verb::post, "/v1/embeddings", [ctx](http::Exchange& ex) { return embeddings(*ctx, ex); });
  add(http::Verb::post, "/tokenize", [ctx](http::Exchange& ex) { return tokenize(*ctx, ex); });
  add(http::Verb::post, "/detokenize", [ctx](http::Exchange& ex) { return detokenize(*ctx, ex); });
  return router;
}

}  // namespace clawbot::server
