// Levenshtein distance, for "did you mean ...?" in error messages and warnings.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/text.h"

namespace clawbot {

inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Up to three of `names` close to `wanted`, best first, ignoring case: a small edit away, containing it (or
// contained in it), or starting the same. Empty when none is close enough to be a likely typo.
inline std::vector<std::string> closest_names(std::string_view wanted,
                                              const std::vector<std::string>& names) {
  const auto lowercase = [](std::string_view s) { return text::lower(s); };
  const std::string wanted_lower = lowercase(wanted);
  std::vector<std::pair<std::size_t, std::string>> scored;
  for (const auto& name : names) {
    const std::string name_lower = lowercase(name);
    const std::size_t distance = edit_distance(wanted_lower, name_lower);
    const bool contains = !wanted_lower.empty() && (name_lower.find(wanted_lower) != std::string::npos ||
                                                    wanted_lower.find(name_lower) != std::string::npos);
    const auto mismatch =
        std::mismatch(wanted_lower.begin(), wanted_lower.end(), name_lower.begin(), name_lower.end());
    const auto common_prefix = static_cast<std::size_t>(mismatch.first - wanted_lower.begin());
    const bool same_start = common_prefix >= std::max<std::size_t>(3, wanted.size() / 2);
    if (distance <= std::max<std::size_t>(2, wanted.size() / 3) || contains || same_start) {
      scored.emplace_back(distance, name);
    }
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> out;
  for (std::size_t k = 0; k < scored.size() && k < 3; ++k) out.push_back(scored[k].second);
  return out;
}

}  // namespace clawbot
