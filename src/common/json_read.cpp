#include "common/json_read.h"

#include "common/error.h"

namespace clawbot::json_read {

using nlohmann::json;

std::size_t nesting_depth(std::string_view text, std::size_t limit, bool comments) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    // A comment is skipped as nlohmann skips it (// to the end of the line, /* to */): a quote or bracket
    // inside one must not hide the brackets after it.
    if (comments && !in_string && c == '/' && i + 1 < text.size()) {
      if (text[i + 1] == '/') {
        const std::size_t end = text.find_first_of(std::string_view("\n\r\0", 3), i + 2);  // as nlohmann
        if (end == std::string_view::npos) break;
        i = end;
        continue;
      }
      if (text[i + 1] == '*') {
        const std::size_t end = text.find("*/", i + 2);
        if (end == std::string_view::npos) break;
        i = end + 1;
        continue;
      }
    }
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > deepest) {
          deepest = depth;
          if (deepest > limit) return deepest;
        }
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return deepest;
}

Result parse(std::string_view text, const Limits& limits) {
  Result result;
  if (limits.max_bytes != 0 && text.size() > limits.max_bytes) {
    result.failure = {
        "json_too_large",
        "is " + std::to_string(text.size()) + " bytes; the limit is " + std::to_string(limits.max_bytes), 0};
    return result;
  }
  if (nesting_depth(text, limits.max_depth, limits.allow_comments) > limits.max_depth) {
    result.failure = {
        "json_too_deep",
        "nests arrays or objects more than " + std::to_string(limits.max_depth) + " levels deep (the limit)",
        0};
    return result;
  }
  try {
    result.value = json::parse(text, nullptr, /*allow_exceptions=*/true, limits.allow_comments);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> from "parse error".
    const auto from = what.find("parse error");
    result.failure = {"invalid_json", from == std::string::npos ? what : what.substr(from), e.byte};
  } catch (const json::exception& e) {
    // out_of_range 406 ("number overflow parsing '1e999'") and anything else the parser throws.
    std::string what = e.what();
    const auto from = what.find("] ");
    result.failure = {"invalid_json", from == std::string::npos ? what : what.substr(from + 2), 0};
  }
  return result;
}

json parse_or_throw(std::string_view text, std::string_view what, const Limits& limits) {
  Result r = parse(text, limits);
  if (!r) {
    std::string message(what);
    message += r.failure.code == "invalid_json" ? " is not valid JSON: " : " ";
    message += r.failure.message;
    throw ClawbotError(Error{ErrorKind::invalid_request, std::move(message), "", r.failure.code});
  }
  return std::move(*r.value);
}

namespace {

// Appends a rendering of `v` to `out`, stopping once `out` reaches `budget` characters; containers deeper
// than `levels` show as [...] or {...}.
void render(const json& v, std::string& out, std::size_t budget, int levels) {
  if (out.size() >= budget) return;
  if (v.is_array() || v.is_object()) {
    const bool array = v.is_array();
    if (levels == 0 || v.empty()) {
      out += array ? (v.empty() ? "[]" : "[...]") : (v.empty() ? "{}" : "{...}");
      return;
    }
    out += array ? '[' : '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (out.size() >= budget) return;
      if (!first) out += ',';
      first = false;
      if (!array) {
        out += json(it.key()).dump(-1, ' ', false, json::error_handler_t::replace);
        out += ':';
      }
      render(*it, out, budget, levels - 1);
    }
    out += array ? ']' : '}';
    return;
  }
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    // Only as much of a long string as can show.
    const std::string head = s.size() > budget ? s.substr(0, budget) : s;
    out += json(head).dump(-1, ' ', false, json::error_handler_t::replace);
    return;
  }
  out += v.dump();
}

}  // namespace

std::string describe(const json& value, std::size_t max_chars) {
  std::string out;
  render(value, out, max_chars + 1, 3);
  if (out.size() > max_chars) out = out.substr(0, max_chars > 3 ? max_chars - 3 : 0) + "...";
  return out;
}

}  // namespace clawbot::json_read
