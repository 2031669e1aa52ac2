// What the proxy needs from a JSON request body, read in one pass without building the document: the model,
// whether it streams and asked for usage, and a key for conversation affinity. A full parse of every request
// was a fifth of the gateway's CPU time per request.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace clawbot::gateway {

struct RequestFacts {
  bool valid = false;  // the body is one JSON object
  std::string model;
  bool stream = false;
  bool has_stream_options = false;
  bool include_usage = false;  // stream_options.include_usage is true
  // The turns of one conversation share their leading messages (system prompt, first user turn): a hash of
  // those, with the model, sends every turn to the upstream that holds the conversation's prefix cache. For
  // /v1/completions the first 512 bytes of the prompt; else the OpenAI `user` field. 0: none.
  std::uint64_t affinity = 0;
};

// `session` (an X-Session-Id header) names the conversation outright when not empty.
RequestFacts scan_request(std::string_view body, std::string_view session = {});

// `body` with "stream_options": {"include_usage": true} added; only for an object without stream_options.
std::string with_usage_requested(std::string_view body);

// The `usage` object's prompt_tokens and completion_tokens in an answer or stream chunk, found without
// parsing the rest of it; false when there is none.
bool find_usage(std::string_view text, std::int64_t& prompt_tokens, std::int64_t& completion_tokens);

}  // namespace clawbot::gateway
