#include "common/json_check.h"

#include <cmath>

#include "common/error.h"
#include "common/json_read.h"

namespace clawbot::json_check {

using nlohmann::json;

Checked<std::int64_t> integer(const json& value, std::int64_t lo, std::int64_t hi) {
  const bool integral = value.is_number_integer() ||
                        (value.is_number_float() && std::floor(value.get<double>()) == value.get<double>());
  if (!integral) return {0, Fault::type};
  // A double cast to int64 out of its range is undefined, and 2^63 as a double equals INT64_MAX as a double.
  bool in_range = false;
  std::int64_t v = 0;
  if (value.is_number_unsigned()) {
    const auto u = value.get<std::uint64_t>();
    in_range = hi >= 0 && u <= static_cast<std::uint64_t>(hi);
    v = in_range ? static_cast<std::int64_t>(u) : 0;
    in_range = in_range && v >= lo;
  } else if (value.is_number_integer()) {
    v = value.get<std::int64_t>();
    in_range = v >= lo && v <= hi;
  } else {
    const double d = value.get<double>();
    in_range = d >= static_cast<double>(lo) && d < 9.2233720368547758e18 && d <= static_cast<double>(hi);
    v = in_range ? static_cast<std::int64_t>(d) : 0;
    in_range = in_range && v >= lo && v <= hi;
  }
  if (!in_range) return {0, Fault::range};
  return {v, Fault::none};
}

Checked<double> number(const json& value, double lo, double hi) {
  if (!value.is_number()) return {0, Fault::type};
  const double d = value.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) return {0, Fault::range};
  return {d, Fault::none};
}

namespace {

using json_read::describe;

// The field's value, or null when it is absent (both mean "not given").
const json* given(const json& body, const char* key) {
  const auto it = body.find(key);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace

std::optional<double> number_field(const json& body, const char* key, double min, double max) {
  const json* value = given(body, key);
  if (value == nullptr) return std::nullopt;
  const auto checked = number(*value, min, max);
  if (checked.fault == Fault::type)
    throw_invalid(std::string("'") + key + "' must be a number, got " + describe(*value), key);
  if (checked.fault == Fault::range) {
    throw_invalid(std::string("'") + key + "' must be between " + describe(json(min)) + " and " +
                      describe(json(max)) + ", got " + describe(*value),
                  key);
  }
  return checked.value;
}

std::optional<long long> integer_field(const json& body, const char* key, long long min, long long max) {
  const json* value = given(body, key);
  if (value == nullptr) return std::nullopt;
  const auto checked = integer(*value, min, max);
  if (checked.fault == Fault::type)
    throw_invalid(std::string("'") + key + "' must be an integer, got " + describe(*value), key);
  if (checked.fault == Fault::range) {
    throw_invalid(std::string("'") + key + "' must be between " + std::to_string(min) + " and " +
                      std::to_string(max) + ", got " + describe(*value),
                  key);
  }
  return checked.value;
}

bool bool_field(const json& body, const char* key, bool fallback) {
  const json* value = given(body, key);
  if (value == nullptr) return fallback;
  if (!value->is_boolean())
    throw_invalid(std::string("'") + key + "' must be true or false, got " + describe(*value), key);
  return value->get<bool>();
}

}  // namespace clawbot::json_check
