// The models an upstream lists at GET /v1/models, read as the untrusted input it is: bounded in size and
// depth by json_read, and only what the gateway uses is kept (each model's id, a few descriptive strings and
// numbers, and the flat facts of its "meta" object, which clients read for the context size). Nothing of the
// upstream's document is copied as it came: an answer 100,000 levels deep or 1 GB large is refused, and the
// gateway keeps running.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace clawbot::gateway {

struct ModelList {
  nlohmann::json entries = nlohmann::json::array();  // rebuilt entries: id, object, created, owned_by, meta
  std::vector<std::string> ids;
  std::string error;  // why the answer could not be read ("" when it could)
};

inline constexpr std::size_t max_model_list_bytes = 4u << 20;
inline constexpr std::size_t max_listed_models = 1024;
inline constexpr std::size_t max_model_string_bytes = 512;

ModelList read_model_list(std::string_view body);

}  // namespace clawbot::gateway
