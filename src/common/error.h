// One error type for the whole program, and the one mapping from it to HTTP.
//
// The rule for failing:
// - Library code (everything but the command-line entry points) throws ClawbotError, with the kind that says
//   what went wrong. A part whose callers must tell its failures apart (StoreError, ConfigError, CryptError,
//   GgufError, TlsError, HttpStatusError, engine::EngineError, CodeInputError) derives from ClawbotError and
//   keeps its own finer kind beside it. No bare std::runtime_error; std::invalid_argument only from parsers
//   of one value (a size, a CIDR, a DNS name) whose callers catch it to word the error; a command's exit-code
//   carrier stays inside its command.
// - Kind `internal` is a failure the API did not ask for: a bug, a failing disk, engine or library, and every
//   domain error unless its thrower says otherwise. The API edge logs it and answers 500 "internal error:
//   ..." (answer_for), as for any exception that is not a ClawbotError. Other kinds are answered as they are.
// - Failures that an I/O boundary expects as normal outcomes come back as values, not exceptions:
//   boost::system::result<T, ClientError> from the HTTP client, json_read::Result from the bounded reader,
//   std::optional from lookups.
// - Command-line entry points catch, print one line to stderr and return the exit code.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>

namespace clawbot {

enum class ErrorKind {
  invalid_request,     // 400: the client sent something we cannot use
  context_exceeded,    // 400: prompt longer than the context
  unauthorized,        // 401
  forbidden,           // 403
  not_found,           // 404
  method_not_allowed,  // 405
  payload_too_large,   // 413
  rate_limited,        // 429
  unavailable,         // 503
  bad_gateway,         // 502: an upstream failed (a gateway's answer)
  internal,            // 500: a bug or an engine failure
};

struct Error {
  ErrorKind kind = ErrorKind::internal;
  std::string message;
  std::string param;  // the request field at fault, empty when none
  std::string code;   // machine-readable code; empty picks the kind's default
};

// Thrown where unwinding is the clearest path back to the API edge.
class ClawbotError : public std::runtime_error {
 public:
  explicit ClawbotError(Error error) : std::runtime_error(error.message), error_(std::move(error)) {}
  ClawbotError(ErrorKind kind, const std::string& message) : ClawbotError(Error{kind, message, {}, {}}) {}
  const Error& error() const noexcept { return error_; }

 private:
  Error error_;
};

[[noreturn]] inline void throw_invalid(std::string message, std::string param = {}, std::string code = {}) {
  throw ClawbotError(
      Error{ErrorKind::invalid_request, std::move(message), std::move(param), std::move(code)});
}

int http_status(ErrorKind kind) noexcept;

// What the API edge answers for an exception caught there: a ClawbotError's own error, except that kind
// internal, like any other exception, becomes "internal error: <what>" (the edge logs those).
Error answer_for(const std::exception& e);

// The OpenAI error body: {"error":{"message","type","param","code"}}.
nlohmann::json to_json(const Error& error);
// Anthropic's error body: {"type":"error","error":{"type":"invalid_request_error"|...,"message"}}.
nlohmann::json to_anthropic_json(const Error& error);
// Ollama's error body: {"error": message}.
nlohmann::json to_ollama_json(const Error& error);
// The error body in the shape of the protocol a path belongs to: Ollama's under /api/ (but for clawbot's own
// /api/metrics/ and /api/alerts), Anthropic's under /v1/messages, OpenAI's elsewhere (what each protocol's
// clients read their message from).
nlohmann::json error_json_for_path(std::string_view path, const Error& error);

}  // namespace clawbot
