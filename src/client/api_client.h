// The front-end's connection to a node or gateway: OpenAI-style chat completions streamed token by token,
// with the retry policy of clawbot.json applied before the first token and never after it.
//
// Calls are synchronous (the CLI has one thing to do at a time); each runs its own event loop until the
// answer is complete, fails, or is interrupted (SIGINT while an answer streams cancels just that answer).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/config.h"

namespace clawbot::client {

// Milliseconds since `since` on the steady clock (latencies the client reports).
inline double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

struct ChatMessage {
  std::string role;  // system | user | assistant
  std::string content;
};

struct ChatRequest {
  std::vector<ChatMessage> messages;
  std::optional<std::int64_t> max_tokens;           // default: the config's
  std::optional<double> temperature;                // default: the config's
  std::string model;                                // default: the config's, else the endpoint's first
  nlohmann::json extra = nlohmann::json::object();  // more request fields (stop, seed, ...)
};

enum class FailureKind {
  resolve,       // the endpoint's host name does not resolve
  connect,       // refused, unreachable, no answer to the connection
  timeout,       // network_timeout of silence
  dropped,       // the connection closed or reset during the exchange
  http_status,   // an error status (the server's message is in `message`)
  server_error,  // an error event in the middle of a stream
  protocol,      // not an OpenAI-style answer
  tls,           // handshake or certificate
  cancelled,     // the user interrupted
  config,        // nothing was sent: the configuration cannot work
};

struct Failure {
  FailureKind kind = FailureKind::protocol;
  int status = 0;       // HTTP status for http_status
  std::string code;     // the OpenAI error code when the server gave one (e.g. context_length_exceeded)
  std::string message;  // what happened, and what to check
  std::string summary;  // what happened, in one short line (for the notice before a retry)
};

struct ChatOutcome {
  std::string text;           // everything shown; complete or not
  std::string finish_reason;  // "stop", "length", ... (empty when cut off)
  std::optional<Failure> failure;
  bool started = false;  // text reached the caller; nothing was retried after that
  int attempts = 0;
  std::string model;
  double ttft_ms = 0;   // request sent to first text, over the attempt that answered
  double total_ms = 0;  // request sent to last byte, over that attempt
  std::int64_t prompt_tokens = -1;
  std::int64_t completion_tokens = -1;  // from the server's usage, else the count of text events
  std::int64_t cached_tokens = -1;

  std::int64_t max_tokens = 0;  // what the request asked for (the config's, capped by the context)
  std::int64_t context = 0;     // the per-request context it was capped by; 0 when unknown

  bool complete() const noexcept { return !failure && !finish_reason.empty(); }
  // Stopped by max_tokens or the end of the context rather than by the model.
  bool cut_at_length() const noexcept { return !failure && finish_reason == "length"; }
  double tokens_per_s() const noexcept;
};

struct JsonOutcome {
  int status = 0;
  nlohmann::json body;  // the parsed answer (also for error statuses, when it was JSON)
  std::optional<Failure> failure;
  int attempts = 0;
};

struct RetryNotice {
  int retry = 0;  // 1-based
  int max_retries = 0;
  std::chrono::milliseconds delay{0};
  bool from_retry_after = false;
  std::string reason;  // the failure's summary: the full message comes once, when the command gives up
};

struct EndpointModel {
  std::string id;
  std::int64_t context_length = 0;  // per request; 0 when the server does not say
  std::optional<bool> fim;          // fill-in-the-middle (clawbot serve says; others do not)
};

// The entry of a GET /v1/models answer that a request for `wanted` uses (the first when `wanted` is empty or
// not listed), with the context it offers: meta.n_ctx_per_request, meta.n_ctx or meta.n_ctx_train (ours and
// llama-server's), max_model_len (vLLM) or context_length. nullopt when the answer lists no model.
std::optional<EndpointModel> model_from_list(const nlohmann::json& models, std::string_view wanted);

// max_tokens for a request: the request's, else the config's, as a ceiling: never more than what the
// per-request context (`context_tokens`, 0: unknown) leaves after the estimated prompt, and at least 1. A
// server refuses a max_tokens beyond its context outright; one that fits is cut by the server at the end of
// the context at worst.
std::int64_t answer_tokens(const ClientConfig& config, const ChatRequest& request,
                           std::int64_t context_tokens);

// The body of the streamed chat completion that ask, chat and doctor send.
nlohmann::json chat_request_body(const ClientConfig& config, const ChatRequest& request,
                                 std::int64_t context_tokens);

class ApiClient {
 public:
  // Throws ConfigError when the configuration cannot work (endpoint "auto" and nothing answers mDNS, a
  // missing key variable). "auto" is resolved here (endpoint_auto.h). `config` must outlive the client.
  explicit ApiClient(const ClientConfig& config);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // Streams one chat completion; on_text gets each piece of text as it arrives.
  ChatOutcome chat(const ChatRequest& request, const std::function<void(std::string_view)>& on_text);
  // One JSON exchange under the same retry policy: GET when `body` is null, POST otherwise.
  JsonOutcome request_json(std::string_view target, const nlohmann::json& body = nullptr);
  // The model a request will use, and the context the server offers it (GET /v1/models, cached).
  std::optional<EndpointModel> endpoint_model(std::optional<Failure>* failure = nullptr);
  // The per-request context in effect: context_length of the config, else the server's (0: unknown).
  std::int64_t context_tokens();

  // Called before each retry's wait (default: a line on stderr).
  void on_retry(std::function<void(const RetryNotice&)> listener);
  // Makes SIGINT cancel the answer in progress (chat() returns with a `cancelled` failure) instead of
  // killing.
  void set_interruptible(bool interruptible) noexcept;

  const std::string& endpoint() const noexcept;  // base URL, without a trailing /v1

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A user-facing explanation of a failure kind's usual causes ("check ...").
std::string failure_kind_name(FailureKind kind);

}  // namespace clawbot::client
