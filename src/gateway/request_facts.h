// What the proxy needs from a JSON request body, read in one pass without building the document: the model,
// whether it streams and asked for usage, how many tokens it may generate, and a key for conversation
// affinity. A full parse of every request was a fifth of the gateway's CPU time per request.
//
// The same pass checks the body as strictly as the JSON reader every node uses (src/common/json_read.h):
// nesting deeper than 128, invalid UTF-8, lone surrogates and numbers out of range are refused here, before
// anything goes upstream, so that the gateway never forwards a body no node may accept, and never reads a
// body differently from the node that answers it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace clawbot::gateway {

// Where a value stands in the body: its bytes [offset, offset + size).
struct Span {
  std::size_t offset = 0;
  std::size_t size = 0;
  bool found() const noexcept { return size != 0; }
};

struct RequestFacts {
  bool valid = false;            // the body is one JSON object the gateway can use; else `refusal` says why
  std::optional<Error> refusal;  // a 400 naming the problem (syntax, depth, a field the gateway reads)
  std::string model;
  bool stream = false;
  bool stream_given = false;  // "stream" is in the body (Ollama's routes stream unless it says false)
  bool has_stream_options = false;
  bool include_usage = false;  // stream_options.include_usage is true
  // max_tokens, max_completion_tokens or n_predict when one is a positive integer (else 0), and `n` choices.
  std::int64_t max_tokens = 0;
  std::int64_t choices = 1;
  // The values the gateway may rewrite: the top-level "model", "stream_options" and its "include_usage".
  Span model_value;
  Span stream_options_value;
  Span include_usage_value;
  // The turns of one conversation share their leading messages (system prompt, first user turn): a hash of
  // those, with the model, sends every turn to the upstream that holds the conversation's prefix cache (the
  // leading items of a Responses `input` alike). For /v1/completions the first 512 bytes of the prompt; else
  // the OpenAI `user` field. 0: none.
  std::uint64_t affinity = 0;
};

// `session` (an X-Session-Id header) names the conversation outright when not empty.
RequestFacts scan_request(std::string_view body, std::string_view session = {});

// `body` with "stream_options": {"include_usage": true} added; only for an object without stream_options.
std::string with_usage_requested(std::string_view body);

// `body` (scanned into `facts`, valid) with stream_options.include_usage set to true when `request_usage`,
// and the top-level "model" replaced by `model` when it is not empty. No parse: the scan's spans are
// replaced in the text.
std::string rewritten(std::string_view body, const RequestFacts& facts, bool request_usage,
                      std::string_view model);

// The prompt and completion token counts in an answer, a stream event or an NDJSON line, found without
// parsing the rest of it: a `usage` object's prompt_tokens/completion_tokens (OpenAI) or
// input_tokens/output_tokens (Responses, Anthropic), else Ollama's prompt_eval_count/eval_count. Sets the
// counts it finds (an Anthropic event may hold one of them); false when there is none.
bool find_usage(std::string_view text, std::int64_t& prompt_tokens, std::int64_t& completion_tokens);

// Whether a streamed chunk carries generated text: a non-empty "content", "text", "reasoning_content",
// "delta", "response", "thinking" or "partial_json" string, or "tool_calls" (one token per such chunk, as
// servers stream them), in any protocol's events. Found without a parse.
bool carries_generated_text(std::string_view chunk);

}  // namespace clawbot::gateway
