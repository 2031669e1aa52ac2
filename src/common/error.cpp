#include "common/error.h"

namespace clawbot {
namespace {

struct KindInfo {
  int status;
  const char* type;
  const char* code;
};

KindInfo info(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::invalid_request:
      return {400, "invalid_request_error", "invalid_request"};
    case ErrorKind::context_exceeded:
      return {400, "invalid_request_error", "context_length_exceeded"};
    case ErrorKind::unauthorized:
      return {401, "authentication_error", "invalid_api_key"};
    case ErrorKind::forbidden:
      return {403, "permission_error", "forbidden"};
    case ErrorKind::not_found:
      return {404, "not_found_error", "not_found"};
    case ErrorKind::method_not_allowed:
      return {405, "invalid_request_error", "method_not_allowed"};
    case ErrorKind::payload_too_large:
      return {413, "invalid_request_error", "request_too_large"};
    case ErrorKind::rate_limited:
      return {429, "rate_limit_error", "rate_limit_exceeded"};
    case ErrorKind::unavailable:
      return {503, "server_error", "unavailable"};
    case ErrorKind::bad_gateway:
      return {502, "server_error", "upstream_error"};
    case ErrorKind::internal:
      break;
  }
  return {500, "server_error", "internal_error"};
}

}  // namespace

int http_status(ErrorKind kind) noexcept {
  return info(kind).status;
}

Error answer_for(const std::exception& e) {
  if (const auto* error = dynamic_cast<const ClawbotError*>(&e);
      error && error->error().kind != ErrorKind::internal)
    return error->error();
  return Error{ErrorKind::internal, std::string("internal error: ") + e.what(), {}, {}};
}

nlohmann::json to_json(const Error& error) {
  const KindInfo k = info(error.kind);
  nlohmann::json body = {
      {"message", error.message},
      {"type", k.type},
      {"param", error.param.empty() ? nlohmann::json(nullptr) : nlohmann::json(error.param)},
      {"code", error.code.empty() ? k.code : error.code},
  };
  return {{"error", std::move(body)}};
}

nlohmann::json to_anthropic_json(const Error& error) {
  const char* type = "api_error";
  switch (error.kind) {
    case ErrorKind::invalid_request:
    case ErrorKind::context_exceeded:
    case ErrorKind::method_not_allowed:
      type = "invalid_request_error";
      break;
    case ErrorKind::unauthorized:
      type = "authentication_error";
      break;
    case ErrorKind::forbidden:
      type = "permission_error";
      break;
    case ErrorKind::not_found:
      type = "not_found_error";
      break;
    case ErrorKind::payload_too_large:
      type = "request_too_large";
      break;
    case ErrorKind::rate_limited:
      type = "rate_limit_error";
      break;
    case ErrorKind::unavailable:
      type = "overloaded_error";
      break;
    case ErrorKind::bad_gateway:
    case ErrorKind::internal:
      break;
  }
  return {{"type", "error"}, {"error", {{"type", type}, {"message", error.message}}}};
}

nlohmann::json to_ollama_json(const Error& error) {
  return {{"error", error.message}};
}

nlohmann::json error_json_for_path(std::string_view path, const Error& error) {
  // clawbot's own monitoring routes under /api/ (the dashboard's) are not Ollama's.
  const bool ours =
      path.starts_with("/api/metrics/") || path == "/api/alerts" || path.starts_with("/api/alerts/");
  if (path.starts_with("/api/") && !ours) return to_ollama_json(error);
  if (path == "/v1/messages" || path.starts_with("/v1/messages/")) return to_anthropic_json(error);
  return to_json(error);
}

}  // namespace clawbot
