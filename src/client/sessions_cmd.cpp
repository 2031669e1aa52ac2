#include "client/sessions_cmd.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string_view>

#include "client/session_store.h"
#include "common/cli_error.h"
#include "common/error.h"
#include "common/json_read.h"

namespace clawbot::client {

namespace {

// The code point starting at text[at], and the index after it (malformed bytes count as one each).
std::pair<char32_t, std::size_t> decode_at(std::string_view text, std::size_t at) {
  const auto lead = static_cast<unsigned char>(text[at]);
  const std::size_t length = lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : 4;
  if (length == 1 || at + length > text.size()) return {lead, at + 1};
  char32_t code = lead & (0x7Fu >> length);
  for (std::size_t k = 1; k < length; ++k)
    code = (code << 6) | (static_cast<unsigned char>(text[at + k]) & 0x3Fu);
  return {code, at + length};
}

// Terminal columns of one code point: 2 for East Asian wide and emoji ranges, else 1 (enough to keep a table
// of CJK names aligned without a locale).
std::size_t columns_of(char32_t code) {
  const bool wide = (code >= 0x1100 && code <= 0x115F) || (code >= 0x2E80 && code <= 0xA4CF) ||
                    (code >= 0xAC00 && code <= 0xD7A3) || (code >= 0xF900 && code <= 0xFAFF) ||
                    (code >= 0xFE30 && code <= 0xFE4F) || (code >= 0xFF00 && code <= 0xFF60) ||
                    (code >= 0xFFE0 && code <= 0xFFE6) || (code >= 0x1F300 && code <= 0x1F64F) ||
                    (code >= 0x1F900 && code <= 0x1F9FF) || (code >= 0x20000 && code <= 0x3FFFD);
  return wide ? 2 : 1;
}

std::size_t display_width(std::string_view text) {
  std::size_t width = 0;
  for (std::size_t at = 0; at < text.size();) {
    const auto [code, next] = decode_at(text, at);
    width += columns_of(code);
    at = next;
  }
  return width;
}

// At most `width` columns; a cut is shown with an ellipsis.
std::string fit(std::string_view text, std::size_t width) {
  if (display_width(text) <= width) return std::string(text);
  std::size_t used = 0, end = 0;
  while (end < text.size()) {
    const auto [code, next] = decode_at(text, end);
    if (used + columns_of(code) + 1 > width) break;  // leave a column for the ellipsis
    used += columns_of(code);
    end = next;
  }
  return std::string(text.substr(0, end)) + "…";
}

std::string pad(const std::string& text, std::size_t width) {
  const std::size_t used = display_width(text);
  return used >= width ? text : text + std::string(width - used, ' ');
}

int list_sessions(SessionStore& store, bool json) {
  const auto sessions = store.list();
  if (json) {
    auto out = nlohmann::json::array();
    for (const auto& session : sessions) {
      out.push_back({{"id", session.id},
                     {"name", session.name},
                     {"messages", session.message_count},
                     {"model", session.model},
                     {"created", format_utc_iso8601(session.created_ms)},
                     {"updated", format_utc_iso8601(session.updated_ms)},
                     {"first_user_line", session.preview}});
    }
    std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  if (sessions.empty()) {
    std::cout << "no sessions yet in " << store.path() << "\n";
    return 0;
  }
  constexpr std::size_t name_max = 32, model_max = 24, preview_max = 48;
  std::size_t name_width = 4, model_width = 5;
  for (const auto& session : sessions) {
    name_width = std::max(name_width, std::min(name_max, display_width(session.name)));
    model_width = std::max(model_width, std::min(model_max, display_width(session.model)));
  }
  std::cout << pad("NAME", name_width) << "  MESSAGES  " << pad("UPDATED", 16) << "  "
            << pad("MODEL", model_width) << "  FIRST USER LINE\n";
  for (const auto& session : sessions) {
    char count[16];
    std::snprintf(count, sizeof count, "%8lld", static_cast<long long>(session.message_count));
    std::cout << pad(fit(session.name, name_max), name_width) << "  " << count << "  "
              << format_local_time(session.updated_ms) << "  "
              << pad(fit(session.model, model_max), model_width) << "  " << fit(session.preview, preview_max)
              << "\n";
  }
  return 0;
}

int show_session(SessionStore& store, std::string_view name) {
  const SessionInfo session = store.get(name);
  const auto messages = store.messages(session.id);
  std::cout << session.name << "  (" << messages.size() << " messages"
            << (session.model.empty() ? "" : ", model " + session.model) << ", created "
            << format_local_time(session.created_ms) << ", updated " << format_local_time(session.updated_ms)
            << ")\n";
  if (!session.system_prompt.empty()) std::cout << "\n[system prompt]\n" << session.system_prompt << "\n";
  for (const auto& message : messages) {
    std::cout << "\n[" << message.role << " · " << format_local_time(message.created_ms);
    if (message.stats.tokens) std::cout << " · " << *message.stats.tokens << " tokens";
    if (message.stats.tokens_per_s) {
      char speed[32];
      std::snprintf(speed, sizeof speed, "%.1f", *message.stats.tokens_per_s);
      std::cout << " · " << speed << " tokens/s";
    }
    std::cout << "]\n" << message.content;
    if (message.content.empty() || message.content.back() != '\n') std::cout << "\n";
    if (message.state != state_complete) {
      std::cout << "[" << message.state << (message.error.empty() ? "" : ": " + message.error) << "]\n";
    }
  }
  return 0;
}

// Writes next to the target and renames it into place, so a failed export never leaves half a file.
void write_file_atomically(const std::filesystem::path& target, std::string_view text) {
  const std::filesystem::path temporary = target.string() + ".tmp-" + std::to_string(getpid());
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
      throw ClawbotError(ErrorKind::internal,
                         "cannot write " + target.string() + ": " + std::strerror(errno));
    }
  }
  std::error_code ec;
  std::filesystem::rename(temporary, target, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw ClawbotError(ErrorKind::internal, "cannot write " + target.string() + ": " + ec.message());
  }
}

int export_session(SessionStore& store, const SessionsOptions& options) {
  const SessionInfo session = store.get(options.name);
  const auto messages = store.messages(session.id);
  std::string text;
  if (options.format == "json") {
    text =
        export_json(session, messages).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  } else if (options.format == "md") {
    text = export_markdown(session, messages);
  } else {
    throw ClawbotError(ErrorKind::invalid_request,
                       "unknown export format \"" + options.format + "\": use md or json");
  }
  if (options.output.empty() || options.output == "-") {
    std::cout << text;
  } else {
    write_file_atomically(options.output, text);
    std::cerr << "wrote " << options.output << " (" << messages.size() << " messages)\n";
  }
  return 0;
}

// A session from export_json's JSON (ours, or the browser chat's export): checked whole before anything is
// written, then stored in one go; a store failure half-way removes what it had written.
int import_session(SessionStore& store, const SessionsOptions& options) {
  std::string text;
  if (options.file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(options.file, std::ios::binary);
    if (!in)
      throw ClawbotError(ErrorKind::invalid_request,
                         "cannot read " + options.file + ": " + std::strerror(errno));
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const auto parsed = json_read::parse(text);
  if (!parsed)
    throw ClawbotError(ErrorKind::invalid_request, options.file + " is not JSON: " + parsed.failure.message);
  ImportedSession imported;
  try {
    imported = import_json(*parsed.value);
  } catch (const ClawbotError& e) {
    throw ClawbotError(ErrorKind::invalid_request, options.file + ": " + e.what());
  }
  const std::string name = options.name.empty() ? imported.name : options.name;
  if (!name.empty() && store.find(name))
    throw ClawbotError(ErrorKind::invalid_request,
                       "a session named \"" + name + "\" exists already: choose another name with --name");
  const SessionInfo session = store.create(name, imported.system_prompt, imported.model);
  try {
    for (const auto& message : imported.messages) {
      const std::int64_t id = store.append(session.id, message.role, message.content, message.state);
      if (message.stats.ttft_ms || message.stats.tokens_per_s || message.stats.tokens ||
          !message.error.empty())
        store.update_message(id, message.content, message.state, message.stats, message.error);
    }
  } catch (...) {
    store.remove(std::to_string(session.id));
    throw;
  }
  std::cout << "imported \"" << session.name << "\" (" << imported.messages.size() << " messages)\n";
  return 0;
}

}  // namespace

int run_sessions(const SessionsOptions& options) {
  try {
    SessionStore store(options.db.empty() ? SessionStore::default_path() : std::filesystem::path(options.db));
    if (options.action == "list") return list_sessions(store, options.json);
    if (options.action == "show") return show_session(store, options.name);
    if (options.action == "export") return export_session(store, options);
    if (options.action == "import") return import_session(store, options);
    if (options.action == "rename") {
      store.rename(options.name, options.new_name);
      std::cout << "renamed \"" << options.name << "\" to \"" << options.new_name << "\"\n";
      return 0;
    }
    if (options.action == "rm") {
      const SessionInfo session = store.remove(options.name);
      std::cout << "removed \"" << session.name << "\" (" << session.message_count << " messages)\n";
      return 0;
    }
    return cli_error("clawbot sessions",
                     "unknown action \"" + options.action + "\" (list, show, rename, rm, export or import)",
                     1);
  } catch (const std::exception& error) {
    return cli_error("clawbot sessions", error.what(), 1);
  }
}

}  // namespace clawbot::client
