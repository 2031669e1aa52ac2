// src/common/json_read.h, the one reader of untrusted JSON (request bodies, upstream answers, config files):
// whatever it accepts is within its depth and size limits and is what nlohmann reads from the same text;
// describe() stays within its length on any accepted value; parse_or_throw throws only ClawbotError.
//
// Input: byte 0 = limits (depth, comments, max_chars), then the text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/error.h"
#include "common/json_read.h"
#include "json_value.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace clawbot;
  if (size < 1) return 0;
  const std::uint8_t control = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  json_read::Limits limits;
  limits.max_depth = (control & 0x0f) == 0 ? json_read::default_max_depth : (control & 0x0f);
  limits.allow_comments = (control & 0x10) != 0;
  if (control & 0x20) limits.max_bytes = 64;

  const json_read::Result result = json_read::parse(text, limits);
  if (result) {
    if (limits.max_bytes != 0 && text.size() > limits.max_bytes) std::abort();
    if (fuzz::depth_of(*result.value) > limits.max_depth) std::abort();  // the limit must hold
    // The same value nlohmann reads (the reader only refuses, never changes).
    const auto plain = nlohmann::json::parse(text, nullptr, false, limits.allow_comments);
    if (plain.is_discarded() || plain != *result.value) std::abort();
    const std::size_t max_chars = (control >> 6) == 0 ? 60 : 8u << (control >> 6);
    if (json_read::describe(*result.value, max_chars).size() > max_chars) std::abort();
    (void)result.value->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    const auto& code = result.failure.code;
    if (code != "json_too_deep" && code != "json_too_large" && code != "invalid_json") std::abort();
    if (result.failure.message.empty()) std::abort();
  }
  try {
    (void)json_read::parse_or_throw(text, "fuzz input", limits);
    if (!result) std::abort();
  } catch (const ClawbotError&) {
    if (result) std::abort();
  }
  return 0;
}
