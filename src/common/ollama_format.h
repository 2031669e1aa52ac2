// What the node (serve's /api/* routes) and the gateway (its merged /api/tags and /api/ps) both say in
// Ollama's words: the API version they report, a parameter count and a time as Ollama writes them.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace clawbot::ollama_format {

// The Ollama version /api/version reports. Clients compare it to decide what a server can do (Open WebUI,
// Continue and ollama-js callers gate tool calling on >= 0.3, structured outputs on >= 0.5, thinking on
// >= 0.9): 0.12.6 (October 2025) has every feature these routes offer: tools, "format" as a JSON schema,
// "think", /api/embed.
inline constexpr std::string_view api_version = "0.12.6";

// "8.0B", "494.03M", "260.00K": a parameter count as Ollama shows it.
std::string parameter_size(std::uint64_t n_params);
// RFC 3339 with nanoseconds, in UTC ("2025-10-01T12:00:00.123456789Z"), as Ollama writes times.
std::string rfc3339(std::chrono::system_clock::time_point when);
// The name Ollama lists a model by: with its default tag ":latest" when it has no tag.
std::string tagged_name(std::string_view model_id);

}  // namespace clawbot::ollama_format
