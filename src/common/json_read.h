// The one way to read JSON that comes from outside (request bodies, upstream answers, config files, session
// imports): bounded in depth and size before any value is built, so that nothing later (dump, copy, compare,
// all recursive in nlohmann::json) can recurse without bound on it.
//
// nlohmann's parser itself keeps its nesting on the heap, but a value nested 100,000 deep is then dumped,
// copied or compared recursively and takes the stack. The depth is checked here in one pass over the bytes,
// before the parser builds anything.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace clawbot::json_read {

inline constexpr std::size_t default_max_depth = 128;

struct Limits {
  std::size_t max_depth = default_max_depth;  // nesting of arrays and objects; the top level is depth 1
  std::size_t max_bytes = 0;                  // 0: no limit beyond what the caller already bounded
  bool allow_comments = false;                // config files may have // and /* */ comments
};

// Why a text was refused. `code` is machine-readable: json_too_deep, json_too_large or invalid_json.
struct Failure {
  std::string code;
  std::string message;   // names the limit or the parser's reason ("number overflow parsing '1e999'")
  std::size_t byte = 0;  // where in the text (0 when it does not apply)
};

// The greatest nesting depth in `text`, counting only brackets outside strings (and, with `comments`, outside
// // and /* */ comments); stops counting (and returns a value > limit) as soon as `limit` is exceeded. Valid
// JSON or not, it never recurses.
std::size_t nesting_depth(std::string_view text, std::size_t limit, bool comments = false);

// Parses `text` within `limits`: the value, or why not (never throws for bad input).
struct Result {
  std::optional<nlohmann::json> value;
  Failure failure;
  explicit operator bool() const noexcept { return value.has_value(); }
};
Result parse(std::string_view text, const Limits& limits = {});

// The same, throwing ClawbotError (invalid_request, HTTP 400) with the failure's code and a message that
// starts with `what` ("request body"); a number out of range or a too-deep value is a 400, never a 500.
nlohmann::json parse_or_throw(std::string_view text, std::string_view what = "request body",
                              const Limits& limits = {});

// A short, bounded rendering of a value for an error message: at most `max_chars` characters, never more than
// a few levels deep, whatever the value's size.
std::string describe(const nlohmann::json& value, std::size_t max_chars = 60);

}  // namespace clawbot::json_read
