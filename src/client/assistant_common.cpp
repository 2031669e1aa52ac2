// What `ask` and `chat` share: the config with command-line overrides, writing templates, context fitting.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "client/assistant.h"

namespace clawbot::client {

namespace {

// A number as people write it: 5, 0.25 (not 5.000000).
std::string shortest(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

}  // namespace

ClientConfig load_client_config(const ConfigSearch& search, const ClientOverrides& overrides) {
  ClientConfig config = load_config(search);
  for (const auto& w : config.warnings) std::cerr << "warning: " << w << "\n";
  if (!overrides.endpoint.empty()) {
    // Checked as if it were in the file, so a bad flag gets the same message as a bad key.
    const ClientConfig probe =
        parse_config(nlohmann::json{{"model_endpoint", overrides.endpoint}}.dump(), "--endpoint");
    config.model_endpoint = probe.model_endpoint;
    config.source["model_endpoint"] = "--endpoint";
  }
  if (!overrides.model.empty()) config.model = overrides.model, config.source["model"] = "--model";
  if (overrides.temperature) {
    if (*overrides.temperature < 0 || *overrides.temperature > 2)
      throw ConfigError("--temperature " + shortest(*overrides.temperature) + ": allowed: 0 to 2");
    config.temperature = *overrides.temperature, config.source["temperature"] = "--temperature";
  }
  if (overrides.max_tokens) {
    if (*overrides.max_tokens < 1) throw ConfigError("--max-tokens must be at least 1");
    config.max_tokens = *overrides.max_tokens, config.source["max_tokens"] = "--max-tokens";
  }
  if (overrides.timeout_ms) {
    if (*overrides.timeout_ms < 100) throw ConfigError("--timeout is in milliseconds and at least 100");
    config.network_timeout = std::chrono::milliseconds(*overrides.timeout_ms);
    config.source["network_timeout"] = "--timeout";
  }
  return config;
}

std::string_view answer_state(const ChatOutcome& out) {
  if (out.failure) return out.failure->kind == FailureKind::cancelled ? state_interrupted : state_partial;
  return out.cut_at_length() ? state_length : state_complete;
}

MessageStats answer_stats(const ChatOutcome& out) {
  MessageStats stats;
  if (!out.started) return stats;
  stats.ttft_ms = out.ttft_ms;
  if (out.tokens_per_s() > 0) stats.tokens_per_s = out.tokens_per_s();
  if (out.completion_tokens >= 0) stats.tokens = out.completion_tokens;
  return stats;
}

std::int64_t estimate_tokens(const ChatMessage& message, double tokens_per_byte) {
  // A few tokens of chat-template framing per message, as most templates add.
  return static_cast<std::int64_t>(std::ceil(static_cast<double>(message.content.size()) * tokens_per_byte)) +
         4;
}

ContextFit fit_to_context(std::span<const ChatMessage> conversation, std::int64_t context_tokens,
                          std::int64_t answer_reserve, double tokens_per_byte) {
  ContextFit fit;
  fit.messages.assign(conversation.begin(), conversation.end());
  auto total = [&] {
    std::int64_t sum = 0;
    for (const auto& m : fit.messages) sum += estimate_tokens(m, tokens_per_byte);
    return sum;
  };
  fit.estimated_tokens = total();
  if (context_tokens <= 0) return fit;
  const std::int64_t budget = context_tokens - answer_reserve;
  const std::size_t first = (!fit.messages.empty() && fit.messages.front().role == "system") ? 1 : 0;
  // Drop whole turns (a user message with the answers after it) from the oldest, keeping the last message.
  while (fit.estimated_tokens > budget && fit.messages.size() > first + 1) {
    std::size_t end = first + 1;
    while (end < fit.messages.size() - 1 && fit.messages[end].role != "user") ++end;
    fit.dropped_messages += static_cast<int>(end - first);
    fit.messages.erase(fit.messages.begin() + static_cast<std::ptrdiff_t>(first),
                       fit.messages.begin() + static_cast<std::ptrdiff_t>(end));
    fit.estimated_tokens = total();
  }
  fit.fits = fit.estimated_tokens <= budget;
  return fit;
}

}  // namespace clawbot::client
