#include "client/api_client.h"

#include <csignal>
#include <cstdio>
#include <random>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

#include "client/assistant.h"
#include "client/endpoint_auto.h"
#include "common/http_client.h"
#include "common/json_read.h"

namespace clawbot::client {

namespace asio = boost::asio;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

double ChatOutcome::tokens_per_s() const noexcept {
  const double decode_ms = total_ms - ttft_ms;
  if (completion_tokens <= 1 || decode_ms <= 0) return 0;
  return static_cast<double>(completion_tokens - 1) * 1000.0 / decode_ms;  // tokens after the first
}

std::string failure_kind_name(FailureKind kind) {
  switch (kind) {
    case FailureKind::resolve:
      return "resolve";
    case FailureKind::connect:
      return "connect";
    case FailureKind::timeout:
      return "timeout";
    case FailureKind::dropped:
      return "dropped";
    case FailureKind::http_status:
      return "http_status";
    case FailureKind::server_error:
      return "server_error";
    case FailureKind::protocol:
      return "protocol";
    case FailureKind::tls:
      return "tls";
    case FailureKind::cancelled:
      return "cancelled";
    case FailureKind::config:
      return "config";
  }
  return "unknown";
}

namespace {

// The endpoint as users write it, with or without the OpenAI-style /v1 suffix.
std::string base_endpoint(std::string endpoint) {
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  if (endpoint.ends_with("/v1")) endpoint.resize(endpoint.size() - 3);
  return endpoint;
}

bool retryable_status(int status) {
  return status == 429 || status == 502 || status == 503 || status == 504;
}

// Retry-After as delta-seconds (what our servers send); an HTTP date is read as "no advice".
std::optional<std::chrono::milliseconds> retry_after(const boost::beast::http::fields& headers) {
  const auto it = headers.find("Retry-After");
  if (it == headers.end()) return std::nullopt;
  const std::string value(it->value());
  char* end = nullptr;
  const double seconds = std::strtod(value.c_str(), &end);
  if (end == value.c_str() || seconds < 0 || seconds > 86'400) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

// An answer's JSON, read within json_read's limits; nullopt when it is not JSON.
std::optional<json> parse_answer(std::string_view body) {
  auto parsed = json_read::parse(body);
  if (!parsed) return std::nullopt;
  return std::move(*parsed.value);
}

// The first sentence of a failure's message: the part before the advice in parentheses or after ';'.
std::string summarize(std::string_view message) {
  const std::size_t end = std::min(message.find(" ("), message.find("; "));
  return std::string(message.substr(0, end));
}

// Prompt tokens as the client estimates them before sending: 4 bytes a token, the low side for English and
// code, so the answer's ceiling errs towards more room (the server cuts at the end of its context anyway).
constexpr double estimate_tokens_per_byte = 0.25;

}  // namespace

std::optional<EndpointModel> model_from_list(const json& models, std::string_view wanted) {
  if (!models.is_object()) return std::nullopt;
  const auto data = models.find("data");
  if (data == models.end() || !data->is_array() || data->empty()) return std::nullopt;
  const json* chosen = nullptr;
  for (const auto& m : *data) {
    if (!m.is_object()) continue;
    if (chosen == nullptr) chosen = &m;
    const auto id = m.find("id");
    if (!wanted.empty() && id != m.end() && id->is_string() && id->get_ref<const std::string&>() == wanted) {
      chosen = &m;
      break;
    }
  }
  if (chosen == nullptr) return std::nullopt;
  const auto integer = [](const json& object, const char* key) -> std::int64_t {
    const auto it = object.find(key);
    return it != object.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
  };
  EndpointModel model;
  if (const auto id = chosen->find("id"); id != chosen->end() && id->is_string())
    model.id = id->get<std::string>();
  if (const auto meta = chosen->find("meta"); meta != chosen->end() && meta->is_object()) {
    for (const char* key : {"n_ctx_per_request", "n_ctx", "n_ctx_train"})
      if (model.context_length <= 0) model.context_length = integer(*meta, key);
    if (const auto fim = meta->find("fim"); fim != meta->end() && fim->is_boolean())
      model.fim = fim->get<bool>();
  }
  for (const char* key : {"max_model_len", "context_length"})
    if (model.context_length <= 0) model.context_length = integer(*chosen, key);
  model.context_length = std::max<std::int64_t>(model.context_length, 0);
  return model;
}

std::int64_t answer_tokens(const ClientConfig& config, const ChatRequest& request,
                           std::int64_t context_tokens) {
  const std::int64_t wanted = request.max_tokens.value_or(config.max_tokens);
  if (context_tokens <= 0) return wanted;
  std::int64_t prompt = 0;
  for (const auto& m : request.messages) prompt += estimate_tokens(m, estimate_tokens_per_byte);
  return std::max<std::int64_t>(1, std::min(wanted, context_tokens - prompt));
}

json chat_request_body(const ClientConfig& config, const ChatRequest& request, std::int64_t context_tokens) {
  json messages = json::array();
  for (const auto& m : request.messages) messages.push_back({{"role", m.role}, {"content", m.content}});
  json body = {{"messages", std::move(messages)},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}},
               {"max_tokens", answer_tokens(config, request, context_tokens)},
               {"temperature", request.temperature.value_or(config.temperature)}};
  const std::string& model = request.model.empty() ? config.model : request.model;
  if (!model.empty()) body["model"] = model;
  for (const auto& [k, v] : request.extra.items()) body[k] = v;
  return body;
}

struct ApiClient::Impl {
  const ClientConfig& config;
  std::string endpoint;
  std::string config_origin;
  asio::io_context io{1};
  std::unique_ptr<http::Client> client;
  std::function<void(const RetryNotice&)> retry_listener;
  bool interruptible = false;
  bool interrupted = false;
  std::mt19937_64 rng{std::random_device{}()};
  std::optional<EndpointModel> cached_model;
  bool model_probed = false;  // GET /v1/models was answered (what it said, if anything, is in cached_model)
  asio::steady_timer* retry_timer = nullptr;  // the wait before a retry, while there is one

  explicit Impl(const ClientConfig& c) : config(c) {
    config_origin = c.file.empty() ? std::string("the built-in defaults (no clawbot.json)") : c.file.string();
    std::string configured = c.model_endpoint;
    if (configured == "auto") {
      const AutoEndpoint found = resolve_auto_endpoint();  // ConfigError when nothing answers
      if (found.source != "cache")
        std::fprintf(stderr, "clawbot: model_endpoint auto: %s\n", found.describe().c_str());
      configured = found.url;
    }
    endpoint = base_endpoint(configured);
    auto url = http::parse_url(endpoint);
    if (!url)
      throw ConfigError("model_endpoint \"" + c.model_endpoint + "\" in " + config_origin + ": " +
                        url.error().message);
    http::ClientOptions options;
    options.connect_timeout = c.network_timeout;
    options.read_timeout = c.network_timeout;
    options.tls_ca_file = c.tls_ca_file;
    const std::string key = c.resolved_api_key();
    if (!key.empty()) options.headers.emplace_back("Authorization", "Bearer " + key);
    options.headers.emplace_back("User-Agent", "clawbot-client");
    client = std::make_unique<http::Client>(io.get_executor(), *url, std::move(options));
  }

  // What to check, added to a failure's own message.
  std::string advice(FailureKind kind, int status = 0) const {
    switch (kind) {
      case FailureKind::resolve:
      case FailureKind::connect:
        return "model_endpoint is set in " + config_origin;
      case FailureKind::timeout:
        return "a timeout with no answer at all usually means a firewall dropping packets or a wrong "
               "address; "
               "a busy node may need a longer network_timeout (" +
               std::to_string(config.network_timeout.count()) + " ms) in " + config_origin;
      case FailureKind::dropped:
        return "the node or the network went away; check the node's log";
      case FailureKind::tls:
        return "check tls_ca_file in " + config_origin + " and the node's certificate";
      case FailureKind::http_status:
        if (status == 401)
          return "the endpoint wants an API key: set api_key_env (or api_key) in " + config_origin;
        if (status == 403) return "the key or this machine's address is not allowed by the gateway";
        if (status == 404) return "is model_endpoint (" + endpoint + ") the server's base URL?";
        return {};
      default:
        return {};
    }
  }

  Failure from_client_error(const http::ClientError& e) const {
    namespace be = boost::beast;
    const auto ec = e.code;
    Failure f;
    if (ec == asio::error::operation_aborted) {
      f.kind = FailureKind::cancelled;
    } else if (ec == be::error::timeout) {
      f.kind = FailureKind::timeout;
    } else if (ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again) {
      f.kind = FailureKind::resolve;  // a wrong name stays wrong: not retried
    } else if (ec == asio::error::connection_refused || ec == asio::error::host_unreachable ||
               ec == asio::error::network_unreachable) {
      f.kind = FailureKind::connect;
    } else if (ec.category() == asio::error::get_ssl_category() ||
               e.message.find("certificate") != std::string::npos ||
               e.message.find("TLS") != std::string::npos) {
      f.kind = FailureKind::tls;
    } else if (ec == asio::error::connection_reset || ec == asio::error::eof ||
               ec == asio::error::broken_pipe || ec == be::http::error::end_of_stream ||
               ec == be::http::error::partial_message || ec == asio::error::connection_aborted) {
      f.kind = FailureKind::dropped;
    } else {
      f.kind = FailureKind::protocol;
    }
    f.message = e.message;
    f.summary = summarize(e.message);
    if (interrupted) f.kind = FailureKind::cancelled, f.message = f.summary = "interrupted";
    if (const std::string a = advice(f.kind); !a.empty() && f.kind != FailureKind::cancelled)
      f.message += "; " + a;
    return f;
  }

  Failure from_status(int status, std::string_view body) const {
    Failure f{FailureKind::http_status, status, {}, {}, {}};
    std::string detail;
    if (const auto answer = parse_answer(body)) {
      if (const auto err = answer->find("error"); err != answer->end()) {
        if (err->is_object()) {
          if (const auto m = err->find("message"); m != err->end() && m->is_string())
            detail = m->get<std::string>();
          if (const auto c = err->find("code"); c != err->end() && c->is_string())
            f.code = c->get<std::string>();
        } else if (err->is_string()) {
          detail = err->get<std::string>();
        }
      }
    } else {
      detail = std::string(body.substr(0, 200));
    }
    f.message = endpoint + " answered " + std::to_string(status) + (detail.empty() ? "" : ": " + detail);
    f.summary = f.message;
    if (const std::string a = advice(FailureKind::http_status, status); !a.empty())
      f.message += " (" + a + ")";
    return f;
  }

  bool retryable(const Failure& f) const {
    switch (f.kind) {
      case FailureKind::connect:
      case FailureKind::timeout:
      case FailureKind::dropped:
        return true;
      case FailureKind::http_status:
        return retryable_status(f.status);
      default:
        return false;
    }
  }

  // Waits before retry `retry` (1-based); false when interrupted meanwhile.
  asio::awaitable<bool> wait_before_retry(int retry, const Failure& why,
                                          std::optional<std::chrono::milliseconds> server_advice) {
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    RetryNotice notice;
    notice.retry = retry;
    notice.max_retries = config.retry_policy.max_retries;
    notice.from_retry_after = server_advice.has_value();
    notice.delay = server_advice ? *server_advice : config.retry_policy.delay(retry, jitter(rng));
    notice.reason = why.summary.empty() ? why.message : why.summary;
    if (retry_listener) retry_listener(notice);
    asio::steady_timer timer(io);
    timer.expires_after(notice.delay);
    retry_timer = &timer;  // so that Ctrl-C ends the wait at once
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    retry_timer = nullptr;
    co_return !interrupted;
  }

  std::int64_t context_tokens() const {
    if (config.context_length > 0) return config.context_length;
    return cached_model ? cached_model->context_length : 0;
  }

  // GET /v1/models once, for the context a request's max_tokens must fit in; not retried on its own: a
  // connection that fails here is the attempt's failure (and is retried as such), an answer that is not a
  // model list leaves the context unknown.
  asio::awaitable<std::optional<Failure>> probe_model() {
    if (model_probed || config.context_length > 0) co_return std::nullopt;
    auto answer = co_await client->get("/v1/models");
    if (!answer) {
      Failure f = from_client_error(answer.error());
      if (f.kind != FailureKind::protocol) co_return f;
    } else if (answer->ok()) {
      if (const auto models = parse_answer(answer->body))
        cached_model = model_from_list(*models, config.model);
    }
    model_probed = true;
    co_return std::nullopt;
  }

  // Reads one streamed answer. Returns the failure of this attempt, if any.
  asio::awaitable<std::optional<Failure>> read_stream(http::SseStream& stream, ChatOutcome& out,
                                                      Clock::time_point sent,
                                                      const std::function<void(std::string_view)>& on_text) {
    std::int64_t text_events = 0;
    bool done = false;
    for (;;) {
      auto event = co_await stream.next();
      if (!event) co_return from_client_error(event.error());
      if (!*event) break;
      const std::string& data = (*event)->data;
      if (data == "[DONE]") {
        done = true;
        continue;
      }
      auto parsed = parse_answer(data);
      if (!parsed) {
        const std::string what = endpoint + " sent an event that is not JSON: " + data.substr(0, 120);
        co_return Failure{FailureKind::protocol, 0, {}, what, what};
      }
      const json& chunk = *parsed;
      if (chunk.contains("error")) {
        Failure f = from_status(500, data);
        f.kind = FailureKind::server_error;
        const json& err = chunk["error"];
        const auto m = err.is_object() ? err.find("message") : err.end();
        f.message = "the server reported an error mid-answer: " +
                    (err.is_object() && m != err.end() && m->is_string() ? m->get<std::string>() : data);
        f.summary = f.message;
        co_return f;
      }
      if (chunk.contains("model") && chunk["model"].is_string())
        out.model = chunk["model"].get<std::string>();
      if (const auto u = chunk.find("usage"); u != chunk.end() && u->is_object()) {
        out.prompt_tokens = u->value("prompt_tokens", out.prompt_tokens);
        out.completion_tokens = u->value("completion_tokens", out.completion_tokens);
        if (const auto d = u->find("prompt_tokens_details"); d != u->end() && d->is_object())
          out.cached_tokens = d->value("cached_tokens", out.cached_tokens);
      }
      const auto choices = chunk.find("choices");
      if (choices == chunk.end() || !choices->is_array() || choices->empty()) continue;
      const json& choice = (*choices)[0];
      if (const auto d = choice.find("delta"); d != choice.end() && d->is_object()) {
        if (const auto c = d->find("content");
            c != d->end() && c->is_string() && !c->get_ref<const std::string&>().empty()) {
          const auto& piece = c->get_ref<const std::string&>();
          if (!out.started) out.ttft_ms = elapsed_ms(sent);
          out.started = true;
          ++text_events;
          out.text += piece;
          on_text(piece);
        }
      }
      if (const auto r = choice.find("finish_reason"); r != choice.end() && r->is_string())
        out.finish_reason = r->get<std::string>();
    }
    out.total_ms = elapsed_ms(sent);
    if (out.completion_tokens < 0) out.completion_tokens = text_events;
    if (out.finish_reason.empty()) {
      const std::string what = endpoint + " ended the answer without finishing it" +
                               (done ? std::string() : std::string(" (no [DONE])"));
      co_return Failure{FailureKind::dropped, 0, {}, what + "; " + advice(FailureKind::dropped), what};
    }
    co_return std::nullopt;
  }

  // A non-streamed answer to a streamed request (some servers do that): take it whole.
  std::optional<Failure> take_whole(std::string_view body, ChatOutcome& out, Clock::time_point sent,
                                    const std::function<void(std::string_view)>& on_text) {
    const std::string not_completion =
        endpoint + " answered with something that is not an OpenAI chat completion";
    const auto parsed = parse_answer(body);
    if (!parsed) return Failure{FailureKind::protocol, 0, {}, not_completion, not_completion};
    try {
      const json& answer = *parsed;
      const json& choice = answer.at("choices").at(0);
      const std::string text = choice.at("message").value("content", std::string());
      out.ttft_ms = out.total_ms = elapsed_ms(sent);
      out.finish_reason = choice.value("finish_reason", std::string("stop"));
      if (answer.contains("usage")) out.completion_tokens = answer["usage"].value("completion_tokens", -1);
      out.text = text;
      out.started = !text.empty();
      if (!text.empty()) on_text(text);
      return std::nullopt;
    } catch (const json::exception&) {
      return Failure{FailureKind::protocol, 0, {}, not_completion, not_completion};
    }
  }

  asio::awaitable<void> chat_attempts(const ChatRequest& request, ChatOutcome& out,
                                      const std::function<void(std::string_view)>& on_text) {
    for (int attempt = 1;; ++attempt) {
      out.attempts = attempt;
      std::optional<std::chrono::milliseconds> server_advice;
      std::optional<Failure> failure = co_await probe_model();
      const json body = chat_request_body(config, request, context_tokens());
      out.max_tokens = body["max_tokens"].get<std::int64_t>();
      out.context = context_tokens();
      if (!failure) {
        const auto sent = Clock::now();
        auto stream = co_await client->post_sse("/v1/chat/completions", body);
        if (!stream) {
          failure = from_client_error(stream.error());
        } else if (!stream->is_event_stream()) {
          if (stream->status() >= 200 && stream->status() < 300) {
            failure = take_whole(stream->body(), out, sent, on_text);
          } else {
            failure = from_status(stream->status(), stream->body());
            server_advice = retry_after(stream->headers());
          }
        } else {
          failure = co_await read_stream(*stream, out, sent, on_text);
        }
      }
      if (interrupted) failure = Failure{FailureKind::cancelled, 0, {}, "interrupted", "interrupted"};
      if (!failure) co_return;
      // Once text has been shown nothing is retried: the partial answer stays, marked by the failure.
      if (out.started || !retryable(*failure) || attempt > config.retry_policy.max_retries) {
        if (!out.started && retryable(*failure) && config.retry_policy.max_retries > 0)
          failure->message += " (gave up after " + std::to_string(attempt) + " attempts)";
        out.failure = std::move(failure);
        co_return;
      }
      if (!co_await wait_before_retry(attempt, *failure, server_advice)) {
        out.failure = Failure{FailureKind::cancelled, 0, {}, "interrupted", "interrupted"};
        co_return;
      }
    }
  }

  asio::awaitable<void> json_attempts(std::string target, const json& body, JsonOutcome& out) {
    for (int attempt = 1;; ++attempt) {
      out.attempts = attempt;
      std::optional<Failure> failure;
      std::optional<std::chrono::milliseconds> server_advice;
      // Not a ?: of two co_awaits: GCC 12 destroys the result of such an expression twice.
      http::Result<http::Response> answer = http::ClientError{};
      if (body.is_null())
        answer = co_await client->get(target);
      else
        answer = co_await client->post_json(target, body);
      if (!answer) {
        failure = from_client_error(answer.error());
      } else {
        out.status = answer->status;
        auto parsed = parse_answer(answer->body);
        out.body = parsed ? std::move(*parsed) : json(nullptr);
        if (!answer->ok()) {
          failure = from_status(answer->status, answer->body);
          server_advice = retry_after(answer->headers);
        } else if (out.body.is_null()) {
          const std::string what = endpoint + target + " answered with something that is not JSON";
          failure = Failure{FailureKind::protocol, answer->status, {}, what, what};
        }
      }
      if (interrupted) failure = Failure{FailureKind::cancelled, 0, {}, "interrupted", "interrupted"};
      if (!failure) co_return;
      if (!retryable(*failure) || attempt > config.retry_policy.max_retries) {
        out.failure = std::move(failure);
        co_return;
      }
      if (!co_await wait_before_retry(attempt, *failure, server_advice)) {
        out.failure = Failure{FailureKind::cancelled, 0, {}, "interrupted", "interrupted"};
        co_return;
      }
    }
  }

  // Runs one coroutine to completion; SIGINT cancels it when interruptible.
  template <class Coroutine>
  void run(Coroutine&& coroutine) {
    interrupted = false;
    io.restart();
    // Asio leaves SIGINT at its default (death) when its signal_set goes; the caller's handler comes back.
    struct sigaction caller_sigint {};
    sigaction(SIGINT, nullptr, &caller_sigint);
    struct RestoreSigint {
      const struct sigaction& saved;
      ~RestoreSigint() { sigaction(SIGINT, &saved, nullptr); }
    } restore{caller_sigint};
    std::optional<asio::signal_set> signals;
    if (interruptible) {
      signals.emplace(io, SIGINT);
      signals->async_wait([this](boost::system::error_code ec, int) {
        if (ec) return;
        interrupted = true;
        client->cancel();
        if (retry_timer != nullptr) retry_timer->cancel();
      });
    }
    asio::co_spawn(io, std::forward<Coroutine>(coroutine), [&](std::exception_ptr e) {
      if (signals) signals->cancel();
      if (e) std::rethrow_exception(e);
    });
    io.run();
  }
};

ApiClient::ApiClient(const ClientConfig& config) : impl_(std::make_unique<Impl>(config)) {
  impl_->retry_listener = [](const RetryNotice& n) {
    std::fprintf(stderr, "clawbot: retry %d of %d in %.1f s%s: %s\n", n.retry, n.max_retries,
                 static_cast<double>(n.delay.count()) / 1000.0,
                 n.from_retry_after ? " (the server's Retry-After)" : "", n.reason.c_str());
  };
}

ApiClient::~ApiClient() = default;

void ApiClient::on_retry(std::function<void(const RetryNotice&)> listener) {
  impl_->retry_listener = std::move(listener);
}

void ApiClient::set_interruptible(bool interruptible) noexcept {
  impl_->interruptible = interruptible;
}

const std::string& ApiClient::endpoint() const noexcept {
  return impl_->endpoint;
}

ChatOutcome ApiClient::chat(const ChatRequest& request,
                            const std::function<void(std::string_view)>& on_text) {
  ChatOutcome out;
  impl_->run(impl_->chat_attempts(request, out, on_text));
  if (out.model.empty()) out.model = request.model.empty() ? impl_->config.model : request.model;
  return out;
}

JsonOutcome ApiClient::request_json(std::string_view target, const json& body) {
  JsonOutcome out;
  impl_->run(impl_->json_attempts(std::string(target), body, out));
  return out;
}

std::optional<EndpointModel> ApiClient::endpoint_model(std::optional<Failure>* failure) {
  if (impl_->model_probed) return impl_->cached_model;
  JsonOutcome answer = request_json("/v1/models");
  if (answer.failure) {
    if (failure) *failure = answer.failure;
    return std::nullopt;
  }
  impl_->model_probed = true;
  impl_->cached_model = model_from_list(answer.body, impl_->config.model);
  if (!impl_->cached_model && failure) {
    const std::string what = impl_->endpoint + "/v1/models lists no model";
    *failure = Failure{FailureKind::protocol, answer.status, {}, what, what};
  }
  return impl_->cached_model;
}

std::int64_t ApiClient::context_tokens() {
  if (impl_->config.context_length > 0) return impl_->config.context_length;
  const auto model = endpoint_model();
  return model ? model->context_length : 0;
}

}  // namespace clawbot::client
