// One error type for the whole program, and the one mapping from it to HTTP.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

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
  const Error& error() const noexcept { return error_; }

 private:
  Error error_;
};

[[noreturn]] inline void throw_invalid(std::string message, std::string param = {}, std::string code = {}) {
  throw ClawbotError(
      Error{ErrorKind::invalid_request, std::move(message), std::move(param), std::move(code)});
}

int http_status(ErrorKind kind) noexcept;

// The OpenAI error body: {"error":{"message","type","param","code"}}.
nlohmann::json to_json(const Error& error);

}  // namespace clawbot
