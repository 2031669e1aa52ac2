#include "common/ollama_format.h"

#include <cstdio>
#include <ctime>

namespace clawbot::ollama_format {

std::string parameter_size(std::uint64_t n) {
  char text[32];
  const auto d = static_cast<double>(n);
  if (n >= 1'000'000'000)
    std::snprintf(text, sizeof text, "%.1fB", d / 1e9);
  else if (n >= 1'000'000)
    std::snprintf(text, sizeof text, "%.2fM", d / 1e6);
  else if (n >= 1'000)
    std::snprintf(text, sizeof text, "%.2fK", d / 1e3);
  else
    std::snprintf(text, sizeof text, "%llu", static_cast<unsigned long long>(n));
  return text;
}

std::string rfc3339(std::chrono::system_clock::time_point when) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
  const auto seconds = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof text - n, ".%09lldZ", static_cast<long long>(ns % 1'000'000'000));
  return text;
}

std::string tagged_name(std::string_view model_id) {
  std::string name(model_id);
  if (name.find(':') == std::string::npos) name += ":latest";
  return name;
}

}  // namespace clawbot::ollama_format
