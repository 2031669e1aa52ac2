#include "common/json_config.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

#include "common/edit_distance.h"
#include "common/json_check.h"
#include "common/json_read.h"
#include "common/user_dirs.h"

namespace clawbot::config {

using nlohmann::json;
namespace fs = std::filesystem;

std::string describe(const json& value) {
  const std::string text = json_read::describe(value);
  switch (value.type()) {
    case json::value_t::string:
      return text + " (a string)";
    case json::value_t::boolean:
      return text + " (a boolean)";
    case json::value_t::null:
      return "null";
    case json::value_t::array:
      return text + " (an array)";
    case json::value_t::object:
      return text + " (an object)";
    case json::value_t::number_float:
      return text + " (a number with a fraction)";
    default:
      return text;
  }
}

std::string closest(std::string_view key, const std::vector<std::string>& known) {
  std::string best;
  std::size_t best_distance = 4;  // farther than this is not a typo
  for (const auto& k : known) {
    const std::size_t d = edit_distance(key, k);
    if (d < best_distance) best_distance = d, best = k;
  }
  return best;
}

namespace {

std::string line_and_column(std::string_view text, std::size_t byte) {
  std::size_t line = 1, column = 1;
  for (std::size_t i = 0; i < byte && i < text.size(); ++i) {
    if (text[i] == '\n')
      ++line, column = 1;
    else
      ++column;
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

}  // namespace

json parse_object(std::string_view text, const std::string& origin) {
  // A file is read whole by its caller; 16 MiB is far beyond any real config.
  json_read::Result parsed = json_read::parse(text, {.max_depth = json_read::default_max_depth,
                                                     .max_bytes = 16u << 20,
                                                     .allow_comments = true});
  if (!parsed) {
    const auto& f = parsed.failure;
    if (f.code != "invalid_json") throw ConfigError(origin + ": the file " + f.message);
    throw ConfigError(origin + ": not valid JSON at " + line_and_column(text, f.byte > 0 ? f.byte - 1 : 0) +
                      " (" + f.message + ")");
  }
  json doc = std::move(*parsed.value);
  if (!doc.is_object())
    throw ConfigError(origin + ": the file must hold one JSON object ({...}), not " + describe(doc));
  return doc;
}

std::string resolve_path(const std::string& path, const fs::path& base_dir) {
  if (path.empty()) return path;
  if (path[0] == '~') {
    const auto home = user_dirs::home();
    if (home && (path.size() == 1 || path[1] == '/')) return home->string() + path.substr(1);
  }
  const fs::path p(path);
  if (p.is_absolute() || base_dir.empty()) return path;
  return (base_dir / p).lexically_normal().string();
}

void Validator::fail(const std::string& key, const json& value, const std::string& allowed) const {
  throw ConfigError(origin_ + ": \"" + key + "\" is " + describe(value) + "; allowed: " + allowed);
}

std::int64_t Validator::integer(const std::string& key, const json& value, std::int64_t lo, std::int64_t hi,
                                const std::string& unit) const {
  const std::string allowed = "an integer" + (unit.empty() ? std::string() : " number of " + unit) +
                              " from " + std::to_string(lo) + " to " + std::to_string(hi);
  const auto checked = json_check::integer(value, lo, hi);
  if (!checked) fail(key, value, allowed);
  return checked.value;
}

double Validator::number(const std::string& key, const json& value, double lo, double hi) const {
  std::ostringstream allowed;
  allowed << "a number from " << lo << " to " << hi;
  const auto checked = json_check::number(value, lo, hi);
  if (!checked) fail(key, value, allowed.str());
  return checked.value;
}

std::string Validator::string(const std::string& key, const json& value, bool allow_empty) const {
  if (!value.is_string()) fail(key, value, "a string");
  std::string s = value.get<std::string>();
  if (!allow_empty && s.empty()) fail(key, value, "a non-empty string");
  return s;
}

bool Validator::boolean(const std::string& key, const json& value) const {
  if (!value.is_boolean()) fail(key, value, "true or false");
  return value.get<bool>();
}

const json& Validator::object(const std::string& key, const json& value, std::string_view example) const {
  if (!value.is_object()) fail(key, value, "an object such as " + std::string(example));
  return value;
}

void Validator::warn(const std::string& key, const std::vector<std::string>& known) {
  const std::string suggestion = closest(key.substr(key.rfind('.') + 1), known);
  warnings_.push_back(origin_ + ": unknown key \"" + key + "\" (ignored)" +
                      (suggestion.empty() ? std::string() : "; did you mean \"" + suggestion + "\"?"));
}

}  // namespace clawbot::config
