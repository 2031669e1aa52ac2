// Shared by the fuzz targets: facts about a JSON value found without recursion (a value deeper than the
// reader's limit must never get this far; if it does, these must not crash first).
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace clawbot::fuzz {

// The nesting depth of `value` (a scalar is 0, [] is 1), walked with a stack of its own.
inline std::size_t depth_of(const nlohmann::json& value) {
  std::size_t deepest = 0;
  std::vector<std::pair<const nlohmann::json*, std::size_t>> pending{{&value, 0}};
  while (!pending.empty()) {
    auto [v, depth] = pending.back();
    pending.pop_back();
    if (!v->is_structured()) continue;
    deepest = std::max(deepest, depth + 1);
    for (const auto& child : *v) pending.emplace_back(&child, depth + 1);
  }
  return deepest;
}

}  // namespace clawbot::fuzz
