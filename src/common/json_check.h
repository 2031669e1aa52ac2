// The one validator of JSON fields, for configs (common/json_config.h's Validator) and API requests (the
// *_field helpers below) alike: what a value must be is decided here once; each caller only words the failure
// its own way. Values come from json_read (bounded depth and size, numbers in range), so nothing here
// recurses.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace clawbot::json_check {

// What is wrong with a value: nothing, its type, or its size.
enum class Fault { none, type, range };

template <typename T>
struct Checked {
  T value{};
  Fault fault = Fault::none;
  explicit operator bool() const noexcept { return fault == Fault::none; }
};

// An integer from lo to hi: a JSON integer, or a number without a fraction (2.0). Compared as what it is: a
// double beyond the range of int64 is out of range, never converted.
Checked<std::int64_t> integer(const nlohmann::json& value, std::int64_t lo, std::int64_t hi);
// A finite number from lo to hi.
Checked<double> number(const nlohmann::json& value, double lo, double hi);

// --- request fields (OpenAI-style errors: ClawbotError invalid_request, 400, naming the field in `param`)
// --- Each is nullopt (or `fallback`) when the field is absent or null.

// "'top_p' must be a number, got "x"" / "'top_p' must be between 0 and 1, got 3".
std::optional<double> number_field(const nlohmann::json& body, const char* key, double min, double max);
// "'n' must be an integer, got 1.5" / "'n' must be between 1 and 16, got 17".
std::optional<long long> integer_field(const nlohmann::json& body, const char* key, long long min,
                                       long long max);
// "'stream' must be true or false, got "yes"".
bool bool_field(const nlohmann::json& body, const char* key, bool fallback);

}  // namespace clawbot::json_check
