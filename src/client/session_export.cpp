// Exports of one session: Markdown for people, JSON for programs.
#include <cstdio>
#include <ctime>

#include "client/session_store.h"

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

}  // namespace clawbot::client
