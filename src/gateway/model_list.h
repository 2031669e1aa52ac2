// What the gateway reads from its upstreams' own answers, as the untrusted input they are: bounded in size
// and depth by json_read, and only what the gateway uses is kept. Of a GET /v1/models list: each model's id,
// a few descriptive strings and numbers, and the flat facts of its "meta" object (clients read the context
// size there). Nothing of an upstream's document is copied as it came: an answer 100,000 levels deep or
// 1 GB large is refused, and the gateway keeps running.
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

// The "memory" object of an upstream's /health answer when it reports one, as up to 16 numeric members
// ({"total_bytes": ..., "used_bytes": ...}); null when it does not, or the answer cannot be read.
nlohmann::json read_reported_memory(std::string_view health_body);

}  // namespace clawbot::gateway
