#include "gateway/forward.h"

#include <charconv>

#include <boost/beast/core/string.hpp>

#include "common/json_read.h"
#include "common/text.h"

namespace clawbot::gateway {

namespace beast = boost::beast;
namespace bhttp = beast::http;

namespace {

// Headers that describe one hop, the client's credentials for the gateway, or what the gateway says itself
// about the client: never passed upstream as the client sent them.
bool never_forwarded(bhttp::field field, std::string_view name) {
  switch (field) {
    case bhttp::field::connection:
    case bhttp::field::keep_alive:
    case bhttp::field::proxy_authenticate:
    case bhttp::field::proxy_authorization:
    case bhttp::field::proxy_connection:
    case bhttp::field::te:
    case bhttp::field::trailer:
    case bhttp::field::transfer_encoding:
    case bhttp::field::upgrade:
    case bhttp::field::expect:
    case bhttp::field::host:
    case bhttp::field::content_length:
    case bhttp::field::authorization:
    case bhttp::field::forwarded:
      return true;
    default:
      return beast::iequals(name, "x-api-key") || beast::iequals(name, "x-forwarded-for") ||
             beast::iequals(name, "x-forwarded-proto") || beast::iequals(name, "x-forwarded-host") ||
             beast::iequals(name, "x-real-ip");
  }
}

// Whether a Connection header of the request names `name` (its options are hop-by-hop too).
bool named_by_connection(const bhttp::fields& request, std::string_view name) {
  for (auto it = request.find(bhttp::field::connection);
       it != request.end() && it->name() == bhttp::field::connection; ++it) {
    std::string_view tokens(it->value().data(), it->value().size());
    while (!tokens.empty()) {
      const std::size_t comma = tokens.find(',');
      if (beast::iequals(text::trim(tokens.substr(0, comma), text::blanks), name)) return true;
      if (comma == std::string_view::npos) break;
      tokens.remove_prefix(comma + 1);
    }
  }
  return false;
}

bool is_empty_value(const nlohmann::json& value) {
  return value.is_null() || (value.is_string() && value.get_ref<const std::string&>().empty()) ||
         (value.is_array() && value.empty());
}

// A choice of a chunk that gives the client nothing: no finish, and a delta (chat) or text (completions)
// with at most a role.
bool empty_choice(const nlohmann::json& choice) {
  if (!choice.is_object()) return false;
  if (auto finish = choice.find("finish_reason"); finish != choice.end() && !finish->is_null()) return false;
  if (auto text = choice.find("text"); text != choice.end() && !is_empty_value(*text)) return false;
  if (auto delta = choice.find("delta"); delta != choice.end()) {
    if (!delta->is_object()) return false;
    for (auto member = delta->begin(); member != delta->end(); ++member)
      if (member.key() != "role" && !is_empty_value(member.value())) return false;
  }
  return true;
}

}  // namespace

std::string_view append_upstream_headers(std::string& out, const bhttp::fields& request,
                                         std::string_view client, bool tls) {
  std::string_view request_id;
  const bool has_connection_options = request.find(bhttp::field::connection) != request.end();
  for (const auto& field : request) {
    const std::string_view name(field.name_string().data(), field.name_string().size());
    const std::string_view value(field.value().data(), field.value().size());
    if (never_forwarded(field.name(), name)) continue;
    if (has_connection_options && named_by_connection(request, name)) continue;
    if (beast::iequals(name, "x-request-id")) request_id = value;
    out.append(name).append(": ").append(value).append("\r\n");
  }
  out.append("X-Forwarded-For: ").append(client).append("\r\n");
  out.append(tls ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
  return request_id;
}

bool forwardable_target(std::string_view target) noexcept {
  return !target.empty() && target.front() == '/' && !target.starts_with("//");
}

std::optional<Clock::duration> retry_after(std::string_view value, Clock::duration cap) {
  value = text::trim(value, text::blanks);
  long long seconds = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec == std::errc::result_out_of_range && end == value.data() + value.size()) return cap;
  if (ec != std::errc() || end != value.data() + value.size() || seconds < 0) return std::nullopt;
  const auto delay = std::chrono::seconds(seconds);
  return delay > cap ? cap : Clock::duration(delay);
}

StreamEvent classify_stream_event(std::string_view data) {
  if (data == "[DONE]") return StreamEvent::other;
  json_read::Limits limits;
  limits.max_depth = 16;  // a chunk is a few levels deep; anything deeper is "other", passed on as is
  const auto parsed = json_read::parse(data, limits);
  if (!parsed || !parsed.value->is_object()) return StreamEvent::other;
  const nlohmann::json& chunk = *parsed.value;
  if (auto error = chunk.find("error"); error != chunk.end()) {
    if (!error->is_object()) return StreamEvent::other;
    const auto code = error->find("code");
    const auto type = error->find("type");
    const bool unavailable =
        (code != error->end() && ((code->is_string() && (*code == "unavailable" || *code == "queue_full")) ||
                                  (code->is_number_integer() && *code == 503))) ||
        (type != error->end() && type->is_string() && *type == "unavailable_error");
    return unavailable ? StreamEvent::unavailable : StreamEvent::other;
  }
  if (chunk.contains("usage") && !chunk["usage"].is_null()) return StreamEvent::other;
  const auto choices = chunk.find("choices");
  if (choices == chunk.end() || !choices->is_array() || choices->empty()) return StreamEvent::other;
  for (const auto& choice : *choices)
    if (!empty_choice(choice)) return StreamEvent::other;
  return StreamEvent::preamble;
}

}  // namespace clawbot::gateway
