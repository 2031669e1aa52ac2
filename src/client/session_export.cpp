// Exports of one session: Markdown for people, JSON for programs.
#include <cmath>
#include <cstdio>
#include <ctime>
#include <type_traits>

#include "client/session_store.h"
#include "common/error.h"
#include "common/json_read.h"

namespace clawbot::client {

namespace {

std::tm broken_down(std::int64_t epoch_ms, bool local) {
  // Floor division, so a time before 1970 still rounds down to its second.
  const std::time_t seconds = static_cast<std::time_t>(epoch_ms / 1000 - (epoch_ms % 1000 < 0 ? 1 : 0));
  std::tm out{};
  if (local) {
    localtime_r(&seconds, &out);
  } else {
    gmtime_r(&seconds, &out);
  }
  return out;
}

std::string heading_for(std::string_view role) {
  if (role == role_system) return "System";
  if (role == role_user) return "User";
  if (role == role_assistant) return "Assistant";
  return std::string(role);
}

std::string format_number(double value, const char* format) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

// "12 tokens · 34.5 tokens/s · first token after 120 ms", or empty when nothing was measured.
std::string stats_line(const MessageStats& stats) {
  std::string line;
  const auto add = [&line](const std::string& part) { line += (line.empty() ? "" : " · ") + part; };
  if (stats.tokens) add(std::to_string(*stats.tokens) + " tokens");
  if (stats.tokens_per_s) add(format_number(*stats.tokens_per_s, "%.1f") + " tokens/s");
  if (stats.ttft_ms) add("first token after " + format_number(*stats.ttft_ms, "%.0f") + " ms");
  return line;
}

// A string member; absent (or null) is `fallback`, when there is one.
std::string import_string(const nlohmann::json& object, const char* name, const std::string& where,
                          const char* fallback) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) {
    if (fallback) return fallback;
    throw_invalid(where + "." + name + " is missing: it must be a string", where + "." + name);
  }
  if (!it->is_string())
    throw_invalid(where + "." + name + " must be a string, got " + json_read::describe(*it),
                  where + "." + name);
  return it->get<std::string>();
}

template <typename Number>
std::optional<Number> import_number(const nlohmann::json& object, const char* name,
                                    const std::string& where) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_number() || (std::is_integral_v<Number> && !it->is_number_integer()) ||
      (it->is_number_float() && !std::isfinite(it->get<double>())))
    throw_invalid(where + "." + name + " must be a number, got " + json_read::describe(*it),
                  where + "." + name);
  return it->get<Number>();
}

}  // namespace

std::string format_local_time(std::int64_t epoch_ms) {
  const std::tm time = broken_down(epoch_ms, true);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M", &time);
  return text;
}

std::string format_utc_iso8601(std::int64_t epoch_ms) {
  const std::tm time = broken_down(epoch_ms, false);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &time);
  const auto millis = static_cast<int>(((epoch_ms % 1000) + 1000) % 1000);
  char fraction[8];
  std::snprintf(fraction, sizeof fraction, ".%03dZ", millis);
  return std::string(text) + fraction;
}

std::string export_markdown(const SessionInfo& session, std::span<const StoredMessage> messages) {
  std::string out = "# " + session.name + "\n\n";
  out += "- Model: " + (session.model.empty() ? std::string("(not recorded)") : session.model) + "\n";
  out += "- Created: " + format_local_time(session.created_ms) + "\n";
  out += "- Updated: " + format_local_time(session.updated_ms) + "\n";
  out += "- Messages: " + std::to_string(messages.size()) + "\n";
  if (!session.system_prompt.empty()) out += "\n## System prompt\n\n" + session.system_prompt + "\n";
  for (const auto& message : messages) {
    out += "\n## " + heading_for(message.role);
    if (message.state != state_complete) out += " (" + message.state + ")";
    out += "\n\n" + message.content;
    if (message.content.empty() || message.content.back() != '\n') out += "\n";
    if (message.state == state_partial) {
      out += "\n> **Partial answer:** cut off before the end";
      out += message.error.empty() ? "." : ": " + message.error;
      out += "\n";
    } else if (message.state == state_interrupted) {
      out += "\n> **Interrupted** by the user";
      out += message.error.empty() ? "." : ": " + message.error;
      out += "\n";
    } else if (message.state == state_length) {
      out += "\n> **Cut at the length limit:** the answer stopped at max_tokens or the end of the context.\n";
    }
    if (const auto stats = stats_line(message.stats); !stats.empty()) out += "\n*" + stats + "*\n";
  }
  return out;
}

nlohmann::json export_json(const SessionInfo& session, std::span<const StoredMessage> messages) {
  nlohmann::json out = {
      {"format", "clawbot-session"},
      {"version", 1},
      {"name", session.name},
      {"model", session.model},
      {"system_prompt", session.system_prompt},
      {"created", format_utc_iso8601(session.created_ms)},
      {"updated", format_utc_iso8601(session.updated_ms)},
      {"messages", nlohmann::json::array()},
  };
  for (const auto& message : messages) {
    nlohmann::json item = {
        {"role", message.role},
        {"content", message.content},
        {"state", message.state},
        {"created", format_utc_iso8601(message.created_ms)},
    };
    if (message.stats.ttft_ms) item["ttft_ms"] = *message.stats.ttft_ms;
    if (message.stats.tokens_per_s) item["tokens_per_s"] = *message.stats.tokens_per_s;
    if (message.stats.tokens) item["tokens"] = *message.stats.tokens;
    if (!message.error.empty()) item["error"] = message.error;
    out["messages"].push_back(std::move(item));
  }
  return out;
}

ImportedSession import_json(const nlohmann::json& exported) {
  if (!exported.is_object())
    throw_invalid("a session export is a JSON object, got " + json_read::describe(exported));
  if (import_string(exported, "format", "session", "") != "clawbot-session")
    throw_invalid(
        "not a clawbot session: \"format\" must be \"clawbot-session\" (clawbot sessions export "
        "--format json writes one)",
        "format");
  if (const auto version = import_number<std::int64_t>(exported, "version", "session"); version != 1)
    throw_invalid("session format version " + (version ? std::to_string(*version) : std::string("(none)")) +
                      " is not one this clawbot reads (1)",
                  "version");
  ImportedSession session;
  session.name = import_string(exported, "name", "session", "");
  session.model = import_string(exported, "model", "session", "");
  session.system_prompt = import_string(exported, "system_prompt", "session", "");
  const auto messages = exported.find("messages");
  if (messages == exported.end() || !messages->is_array())
    throw_invalid("session.messages must be an array of messages", "messages");
  for (std::size_t i = 0; i < messages->size(); ++i) {
    const auto& item = (*messages)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!item.is_object())
      throw_invalid(where + " must be an object, got " + json_read::describe(item), where);
    StoredMessage message;
    message.role = import_string(item, "role", where, nullptr);
    if (message.role != role_system && message.role != role_user && message.role != role_assistant)
      throw_invalid(
          where + ".role must be system, user or assistant, got " + json_read::describe(item["role"]),
          where + ".role");
    message.content = import_string(item, "content", where, nullptr);
    message.state = import_string(item, "state", where, "complete");
    if (message.state != state_complete && message.state != state_partial &&
        message.state != state_interrupted && message.state != state_length)
      throw_invalid(where + ".state must be complete, partial, interrupted or length, got " +
                        json_read::describe(item["state"]),
                    where + ".state");
    message.stats.ttft_ms = import_number<double>(item, "ttft_ms", where);
    message.stats.tokens_per_s = import_number<double>(item, "tokens_per_s", where);
    message.stats.tokens = import_number<std::int64_t>(item, "tokens", where);
    message.error = import_string(item, "error", where, "");
    session.messages.push_back(std::move(message));
  }
  return session;
}

}  // namespace clawbot::client
