// The gateway's one-pass scan of a request body (src/gateway/request_facts.*): the model, stream and usage
// flags, the affinity key, with_usage_requested() and find_usage(). Whatever the scan calls valid is JSON
// nlohmann reads too; with_usage_requested() of a valid object without stream_options is that object with
// stream_options.include_usage = true added and nothing else changed.
//
// Input: byte 0 = length of an X-Session-Id value taken from the end, then the body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/json_read.h"
#include "gateway/request_facts.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace clawbot;
  if (size < 1) return 0;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t session_bytes = std::min<std::size_t>(data[0] & 0x1f, text.size());
  const std::string_view session = text.substr(text.size() - session_bytes);
  const std::string_view body = text.substr(0, text.size() - session_bytes);

  const gateway::RequestFacts facts = gateway::scan_request(body, session);
  std::int64_t prompt_tokens = -1, completion_tokens = -1;
  (void)gateway::find_usage(body, prompt_tokens, completion_tokens);
  if (!facts.valid) return 0;

  // The scan refuses values deeper than 256; the reader's limit is what the gateway would parse with.
  const auto parsed = json_read::parse(body, {.max_depth = 256});
  if (!parsed) return 0;  // (the scan is lenient where nlohmann is strict: invalid UTF-8, duplicate keys)
  if (!parsed.value->is_object()) std::abort();
  if (facts.has_stream_options) return 0;
  const auto rewritten = json_read::parse(gateway::with_usage_requested(body), {.max_depth = 256});
  if (!rewritten || !rewritten.value->is_object()) std::abort();
  nlohmann::json expected = *parsed.value;
  expected["stream_options"] = {{"include_usage", true}};
  if (*rewritten.value != expected) std::abort();
  return 0;
}
