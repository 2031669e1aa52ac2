#include "web/assets.h"

#include <cstddef>

namespace clawbot::web {
namespace detail {
// In the C++ that web/build.mjs generates (build tree: src/web/web_assets_data.cpp).
extern const Asset asset_table[];
extern const std::size_t asset_count;
}  // namespace detail

std::span<const Asset> assets() {
  return {detail::asset_table, detail::asset_count};
}

const Asset* find_asset(std::string_view path) {
  for (const Asset& asset : assets())
    if (asset.path == path) return &asset;
  return nullptr;
}

}  // namespace clawbot::web
