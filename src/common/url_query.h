// The query of a request target ("/v1/history?since=1764763200.5&x"): one reader for every route that takes
// parameters there, so that they all split it the same way.
#pragma once

#include <optional>
#include <string_view>

namespace clawbot::http {

// The raw value of the first `key` in `target`'s query (a view into `target`, not percent-decoded): nullopt
// when the key is absent, empty for "?key" and "?key=". The fragment (after '#') is not part of the query.
constexpr std::optional<std::string_view> query_param(std::string_view target,
                                                      std::string_view key) noexcept {
  const auto question = target.find('?');
  if (question == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(question + 1);
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == key)
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
  }
  return std::nullopt;
}

}  // namespace clawbot::http
