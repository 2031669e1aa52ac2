// What clawbot.json and gateway.json share: JSON with // and /* */ comments, errors that name the file, the
// key, the value and what is allowed, and unknown keys reported with the closest known name (typo help).
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace clawbot::config {

// A file that cannot be used: its message names the file, the key, the value and what is allowed.
class ConfigError : public ClawbotError {
 public:
  explicit ConfigError(const std::string& message) : ClawbotError(ErrorKind::internal, message) {}
};

// The value as written, with its JSON type where that explains a mistake: `"8080" (a string)`.
std::string describe(const nlohmann::json& value);
// The known name within edit distance 3 of `key`, or "" when none is that close.
std::string closest(std::string_view key, const std::vector<std::string>& known);
// Parses the text of a file that must hold one JSON object; comments allowed. A syntax error names the line
// and column.
nlohmann::json parse_object(std::string_view text, const std::string& origin);
// `path` as the file means it: ~ is $HOME, a relative path is relative to `base_dir` (when not empty).
std::string resolve_path(const std::string& path, const std::filesystem::path& base_dir);

class Validator {
 public:
  Validator(std::string origin, std::vector<std::string>& warnings)
      : origin_(std::move(origin)), warnings_(warnings) {}

  const std::string& origin() const noexcept { return origin_; }
  [[noreturn]] void fail(const std::string& key, const nlohmann::json& value,
                         const std::string& allowed) const;
  std::int64_t integer(const std::string& key, const nlohmann::json& value, std::int64_t lo, std::int64_t hi,
                       const std::string& unit = {}) const;
  double number(const std::string& key, const nlohmann::json& value, double lo, double hi) const;
  std::string string(const std::string& key, const nlohmann::json& value, bool allow_empty = true) const;
  bool boolean(const std::string& key, const nlohmann::json& value) const;
  // The object at `key`, or a failure that shows an example of one.
  const nlohmann::json& object(const std::string& key, const nlohmann::json& value,
                               std::string_view example) const;
  // A warning for an unknown key ("a.b.c" is matched on its last part), with a suggestion.
  void warn(const std::string& key, const std::vector<std::string>& known);

 private:
  std::string origin_;
  std::vector<std::string>& warnings_;
};

}  // namespace clawbot::config
