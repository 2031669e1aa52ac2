// An upstream's event stream as the gateway relays it: SseParser (src/common/http_client.*) fed in pieces
// the input chooses, find_usage() on every event's data, the usage-only chunk test through the bounded
// reader. The events must not depend on how the bytes were split into reads.
//
// Input: byte 0 = piece size (0: one piece), then the stream.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "common/http_client.h"
#include "common/json_read.h"
#include "gateway/request_facts.h"

namespace {

using clawbot::http::SseEvent;
using clawbot::http::SseParser;

struct Parsed {
  std::vector<SseEvent> events;
  std::size_t comments = 0;
  bool overflow = false;
};

Parsed parse(std::string_view bytes, std::size_t piece, std::size_t max_line) {
  SseParser parser(max_line);
  Parsed out;
  for (std::size_t at = 0; at < bytes.size(); at += piece) {
    if (!parser.feed(bytes.substr(at, piece), out.events)) {
      out.overflow = true;
      return out;
    }
  }
  parser.finish(out.events);
  out.comments = parser.comments();
  return out;
}

bool same(const SseEvent& a, const SseEvent& b) {
  return a.data == b.data && a.event == b.event && a.id == b.id;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t piece = data[0] == 0 ? bytes.size() + 1 : data[0];
  const std::size_t max_line = 1024;
  const Parsed split = parse(bytes, piece, max_line);
  const Parsed whole = parse(bytes, bytes.size() + 1, max_line);
  if (!split.overflow && !whole.overflow) {
    if (split.events.size() != whole.events.size() || split.comments != whole.comments) std::abort();
    for (std::size_t i = 0; i < split.events.size(); ++i)
      if (!same(split.events[i], whole.events[i])) std::abort();
  }
  for (const auto& event : split.events) {
    std::int64_t prompt_tokens = 0, completion_tokens = 0;
    if (event.data == "[DONE]" || !clawbot::gateway::find_usage(event.data, prompt_tokens, completion_tokens))
      continue;
    const auto chunk = clawbot::json_read::parse(event.data);
    if (!chunk || !chunk.value->is_object()) continue;
    const auto choices = chunk.value->find("choices");
    (void)(choices == chunk.value->end() || (choices->is_array() && choices->empty()));
  }
  return 0;
}
