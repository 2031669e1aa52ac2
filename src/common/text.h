// Small text helpers every part needs: ASCII lower case, trimming, hex. One definition each, so that the
// rules (ASCII only, whatever the locale; lower-case hex digits) are the same everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace clawbot::text {

// What trim() takes off by default: blanks and line ends.
inline constexpr std::string_view blanks_and_newlines = " \t\r\n";
// Optional white space of HTTP headers and of line-oriented files (RFC 9110 OWS).
inline constexpr std::string_view blanks = " \t";
// Everything std::isspace counts as space in the C locale.
inline constexpr std::string_view any_space = " \t\n\v\f\r";

inline constexpr char hex_digits[] = "0123456789abcdef";

// `c` in lower case when it is an ASCII capital; any other byte as it is (UTF-8 passes through untouched).
constexpr char lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// `s` with ASCII capitals in lower case.
inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

// `s` without the characters of `strip` at either end (a view into `s`).
constexpr std::string_view trim(std::string_view s, std::string_view strip = blanks_and_newlines) noexcept {
  const auto first = s.find_first_not_of(strip);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(strip) - first + 1);
}

// Bytes as lower-case hex, two digits a byte.
inline std::string to_hex(std::span<const std::uint8_t> bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const std::uint8_t b : bytes) {
    out.push_back(hex_digits[b >> 4]);
    out.push_back(hex_digits[b & 0xf]);
  }
  return out;
}
inline std::string to_hex(std::string_view bytes) {
  return to_hex(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

// Hex digits (either case) as bytes; nullopt for an odd length or a character that is not a hex digit.
inline std::optional<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>((hi << 4) | lo));
  }
  return out;
}

// Whether `s` is exactly `length` hex digits (either case).
constexpr bool is_hex(std::string_view s, std::size_t length) noexcept {
  if (s.size() != length) return false;
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  }
  return true;
}

}  // namespace clawbot::text
