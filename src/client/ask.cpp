// `clawbot ask`: one question, one answer, fit for scripts: the answer alone on stdout, what went wrong on
// stderr, and an exit status that says which.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>

#include "client/assistant.h"
#include "client/session_store.h"
#include "common/cli_error.h"

namespace clawbot::client {

namespace {

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

nlohmann::json outcome_json(const ChatOutcome& out) {
  nlohmann::json error = nullptr;
  if (out.failure)
    error = {{"kind", failure_kind_name(out.failure->kind)},
             {"message", out.failure->message},
             {"status", out.failure->status},
             {"code", out.failure->code}};
  auto optional_count = [](std::int64_t v) { return v < 0 ? nlohmann::json(nullptr) : nlohmann::json(v); };
  return {{"model", out.model},
          {"content", out.text},
          {"finish_reason",
           out.finish_reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(out.finish_reason)},
          {"complete", out.complete() && !out.cut_at_length()},
          {"partial", out.started && (!out.complete() || out.cut_at_length())},
          {"error", error},
          {"usage",
           {{"prompt_tokens", optional_count(out.prompt_tokens)},
            {"completion_tokens", optional_count(out.completion_tokens)},
            {"cached_tokens", optional_count(out.cached_tokens)}}},
          {"max_tokens", out.max_tokens},
          {"timings",
           {{"ttft_ms", out.ttft_ms}, {"total_ms", out.total_ms}, {"tokens_per_s", out.tokens_per_s()}}},
          {"attempts", out.attempts}};
}

// Why an answer stopped at finish_reason "length", and what would make it longer.
std::string length_note(const ChatOutcome& out) {
  const std::string tokens = std::to_string(out.max_tokens);
  if (out.context > 0 && out.max_tokens < out.context && out.max_tokens * 2 >= out.context)
    return "the answer was cut off at " + tokens + " tokens, where the node's " +
           std::to_string(out.context) +
           "-token context ends (a shorter question, or a node with a larger --ctx)";
  return "the answer was cut off at max_tokens (" + tokens +
         " tokens): raise --max-tokens or max_tokens in clawbot.json for a longer one";
}

// --save: the question and the answer as a new session (clawbot sessions list shows it).
void save_session(const ClientConfig& config, const ChatRequest& request, const ChatOutcome& out) {
  try {
    SessionStore store(config.session_db.empty() ? SessionStore::default_path()
                                                 : std::filesystem::path(config.session_db));
    std::string system;
    for (const auto& m : request.messages)
      if (m.role == "system") system = m.content;
    const SessionInfo session = store.create({}, system, out.model);
    for (const auto& m : request.messages)
      if (m.role != "system") store.append(session.id, m.role, m.content);
    if (out.started || !out.failure) {
      const std::int64_t id = store.append(session.id, role_assistant, out.text, state_partial);
      store.update_message(id, out.text, answer_state(out), answer_stats(out),
                           out.failure ? out.failure->message : std::string());
    }
    std::fprintf(stderr, "clawbot ask: saved as session %s (clawbot sessions show %s)\n",
                 session.name.c_str(), session.name.c_str());
  } catch (const StoreError& e) {
    std::fprintf(stderr, "clawbot ask: not saved: %s\n", e.what());
  }
}

}  // namespace

int run_ask(const AskOptions& options) {
  if (options.list_templates) {
    for (const auto& t : writing_templates()) std::printf("%-10s %s\n", t.name, t.description);
    return 0;
  }
  const WritingTemplate* chosen = nullptr;
  if (!options.template_name.empty()) {
    chosen = find_writing_template(options.template_name);
    if (chosen == nullptr) {
      return cli_error(
          "clawbot ask",
          "no template \"" + options.template_name + "\"; there are: " + writing_template_names(), 2);
    }
  }

  std::string piped;
  if (!isatty(STDIN_FILENO)) {
    std::ostringstream in;
    in << std::cin.rdbuf();
    piped = in.str();
  }
  const std::string question = join(options.question);
  if (question.empty() && piped.empty()) {
    return cli_error("clawbot ask",
                     "nothing to ask: give the question as arguments, or pipe text in "
                     "(git diff | clawbot ask \"write the commit message\")",
                     2);
  }

  ClientConfig config;
  std::unique_ptr<ApiClient> client;
  try {
    config = load_client_config(options.search, options.overrides);
    client = std::make_unique<ApiClient>(config);
  } catch (const ConfigError& e) {
    return cli_error("clawbot ask", e.what(), 2);
  }

  ChatRequest request;
  std::string system = options.system.empty() ? config.system_prompt : options.system;
  std::string user;
  if (chosen != nullptr) {
    system = writing_system_prompt(*chosen, options.language);
    user = piped.empty() ? question : piped;
    if (!piped.empty() && !question.empty()) user += "\n\n(" + question + ")";
  } else {
    user = question;
    if (!piped.empty()) user += (user.empty() ? "" : "\n\n") + piped;
  }
  if (!system.empty()) request.messages.push_back({"system", system});
  request.messages.push_back({"user", user});

  client->set_interruptible(true);
  bool ends_with_newline = true;
  const ChatOutcome out = client->chat(request, [&](std::string_view piece) {
    if (options.json) return;
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    ends_with_newline = piece.ends_with('\n');
  });
  if (options.json) {
    std::printf("%s\n", outcome_json(out).dump(2).c_str());
  } else if (out.started && !ends_with_newline) {
    std::fputc('\n', stdout);
  }
  std::fflush(stdout);

  if (options.save) save_session(config, request, out);

  if (options.stats && out.started)
    std::fprintf(stderr, "clawbot: %.0f ms to first token, %.1f tokens/s, %lld tokens, %d attempt%s\n",
                 out.ttft_ms, out.tokens_per_s(), static_cast<long long>(out.completion_tokens), out.attempts,
                 out.attempts == 1 ? "" : "s");
  if (out.cut_at_length()) {
    // README: a cut answer is exit status 1, and says why on stderr (the text on stdout is what came).
    return options.json ? 1 : cli_error("clawbot ask", length_note(out), 1);
  }
  if (!out.failure) return 0;
  if (out.failure->kind == FailureKind::cancelled) {
    if (options.json) return 130;
    return cli_error("clawbot ask", out.started ? "interrupted (the answer above is partial)" : "interrupted",
                     130);
  }
  if (options.json) return 1;
  return cli_error("clawbot ask", (out.started ? "the answer was cut off: " : "") + out.failure->message, 1);
}

}  // namespace clawbot::client
