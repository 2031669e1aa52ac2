#include "gateway/request_facts.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/json_read.h"

namespace clawbot::gateway {

namespace {

// One pass over a request body that checks its JSON syntax and picks out the facts: a hand-written scanner,
// since nlohmann's SAX lexer (building a std::string per key and value) was 4% of the gateway's time per
// request. It accepts exactly what json_read::parse accepts (RFC 8259, UTF-8, nesting up to its limit,
// finite numbers); on anything else the slow path below asks json_read to name the problem.
constexpr int max_depth = static_cast<int>(json_read::default_max_depth);

bool is_space(char c) noexcept {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::string& out, std::uint32_t code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xc0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3f));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xe0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (code & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (code & 0x3f));
  }
}

// The length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, no surrogates, at most U+10FFFF)
// that starts at `at`, a byte >= 0x80; 0 when it is not one.
std::size_t utf8_sequence(const char* at, const char* end) noexcept {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(at[i]); };
  const auto left = static_cast<std::size_t>(end - at);
  const unsigned char lead = byte(0);
  auto tail = [&](std::size_t n, unsigned char low, unsigned char high) -> std::size_t {
    if (left < n + 1 || byte(1) < low || byte(1) > high) return 0;
    for (std::size_t i = 2; i <= n; ++i)
      if ((byte(i) & 0xc0) != 0x80) return 0;
    return n + 1;
  };
  if (lead >= 0xc2 && lead <= 0xdf) return tail(1, 0x80, 0xbf);
  if (lead == 0xe0) return tail(2, 0xa0, 0xbf);
  if ((lead >= 0xe1 && lead <= 0xec) || lead == 0xee || lead == 0xef) return tail(2, 0x80, 0xbf);
  if (lead == 0xed) return tail(2, 0x80, 0x9f);
  if (lead == 0xf0) return tail(3, 0x90, 0xbf);
  if (lead >= 0xf1 && lead <= 0xf3) return tail(3, 0x80, 0xbf);
  if (lead == 0xf4) return tail(3, 0x80, 0x8f);
  return 0;
}

// A value's text for an error message: at most 40 bytes of it.
std::string shown(std::string_view raw) {
  return raw.size() > 40 ? std::string(raw.substr(0, 37)) + "..." : std::string(raw);
}

class FactsScanner {
 public:
  FactsScanner(std::string_view body, RequestFacts& facts)
      : begin_(body.data()), at_(body.data()), end_(body.data() + body.size()), facts_(facts) {}

  // The whole body: one object and nothing after it but white space (after a UTF-8 byte order mark, which
  // the JSON reader skips too).
  bool scan() {
    if (end_ - at_ >= 3 && std::string_view(at_, 3) == "\xef\xbb\xbf") at_ += 3;
    skip_space();
    if (!object(1)) return false;
    skip_space();
    return at_ == end_;
  }

  // Why scan() failed when the reason is a field's value rather than the syntax.
  std::optional<Error>& problem() noexcept { return problem_; }

  void finish(std::string_view session) {
    // The key is hashed piece by piece (FNV-1a, as stable_hash): no string is built for it.
    std::uint64_t h = 0xcbf29ce484222325ULL;
    auto add = [&h](std::string_view text) {
      for (const unsigned char c : text) h = (h ^ c) * 0x100000001b3ULL;
    };
    if (!session.empty()) {
      add("session:");
      add(session);
    } else if (has_messages_hash_) {
      add("messages:");
      add(std::string_view(reinterpret_cast<const char*>(&messages_hash_), sizeof messages_hash_));
    } else if (!prompt_.empty()) {
      add("prompt:");
      add(prompt_);
    } else if (!user_.empty()) {
      add("user:");
      add(user_);
    } else {
      return;
    }
    add("\n");
    add(facts_.model);
    facts_.affinity = h == 0 ? 1 : h;
  }

 private:
  // The members the gateway reads; each may appear once (two would let the gateway and the node that
  // answers read different values: nlohmann keeps the last, another parser the first).
  enum class Member : unsigned {
    other = 0,
    model = 1,
    stream = 2,
    stream_options = 4,
    messages = 8,
    prompt = 16,
    user = 32,
    include_usage = 64,
    max_tokens = 128,
    max_completion_tokens = 256,
    n_predict = 512,
    n = 1024,
    max_output_tokens = 2048,  // Responses' max_tokens
    input = 4096,              // Responses' conversation items (hashed like messages)
  };

  void skip_space() noexcept {
    while (at_ != end_ && is_space(*at_)) ++at_;
  }
  bool take(char c) noexcept {
    if (at_ == end_ || *at_ != c) return false;
    ++at_;
    return true;
  }
  Span span_from(const char* first) const noexcept {
    return {static_cast<std::size_t>(first - begin_), static_cast<std::size_t>(at_ - first)};
  }
  bool refuse(std::string message, std::string param, std::string code = {}) {
    problem_ = Error{ErrorKind::invalid_request, std::move(message), std::move(param), std::move(code)};
    return false;
  }

  // A string; its decoded text goes to `out` when given (up to `limit` bytes), its raw text between the
  // quotes to `raw`.
  bool string(std::string* out = nullptr, std::size_t limit = std::string::npos,
              std::string_view* raw = nullptr) {
    if (!take('"')) return false;
    const char* first = at_;
    while (at_ != end_) {
      const char c = *at_;
      if (c == '"') {
        if (raw) *raw = std::string_view(first, static_cast<std::size_t>(at_ - first));
        ++at_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;  // control characters must be escaped
      if (static_cast<unsigned char>(c) >= 0x80) {
        const std::size_t n = utf8_sequence(at_, end_);
        if (n == 0) return false;  // not UTF-8
        if (out && out->size() < limit) out->append(at_, n);
        at_ += n;
        continue;
      }
      if (c != '\\') {
        if (out && out->size() < limit) *out += c;
        ++at_;
        continue;
      }
      if (++at_ == end_) return false;
      const char e = *at_++;
      char plain = 0;
      switch (e) {
        case '"':
          plain = '"';
          break;
        case '\\':
          plain = '\\';
          break;
        case '/':
          plain = '/';
          break;
        case 'b':
          plain = '\b';
          break;
        case 'f':
          plain = '\f';
          break;
        case 'n':
          plain = '\n';
          break;
        case 'r':
          plain = '\r';
          break;
        case 't':
          plain = '\t';
          break;
        case 'u': {
          std::uint32_t code = 0;
          if (!hex4(code)) return false;
          // A surrogate pair is one character; a surrogate alone is no character (the JSON reader refuses
          // it, and so does every node).
          if (code >= 0xdc00 && code < 0xe000) return false;
          if (code >= 0xd800 && code < 0xdc00) {
            std::uint32_t low = 0;
            if (end_ - at_ < 6 || at_[0] != '\\' || at_[1] != 'u') return false;
            at_ += 2;
            if (!hex4(low) || low < 0xdc00 || low >= 0xe000) return false;
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
          }
          if (out && out->size() < limit) append_utf8(*out, code);
          continue;
        }
        default:
          return false;
      }
      if (out && out->size() < limit) *out += plain;
    }
    return false;
  }
  bool hex4(std::uint32_t& code) noexcept {
    if (end_ - at_ < 4) return false;
    for (int i = 0; i < 4; ++i) {
      const int v = hex_value(*at_++);
      if (v < 0) return false;
      code = code << 4 | static_cast<std::uint32_t>(v);
    }
    return true;
  }
  bool digits() noexcept {
    const char* first = at_;
    while (at_ != end_ && *at_ >= '0' && *at_ <= '9') ++at_;
    return at_ != first;
  }
  // A number; a non-negative integer's value goes to `integer` (-1 when it is none or too large).
  bool number(std::int64_t* integer = nullptr) {
    const char* first = at_;
    take('-');
    if (take('0')) {
      // no leading zeros
    } else if (!digits()) {
      return false;
    }
    const char* integer_end = at_;
    bool exponent = false;
    if (take('.') && !digits()) return false;
    if (at_ != end_ && (*at_ == 'e' || *at_ == 'E')) {
      exponent = true;
      ++at_;
      if (!take('+')) take('-');
      if (!digits()) return false;
    }
    // Out of range as a double (1e999): the JSON reader refuses it. Only a number with an exponent or more
    // than 308 digits can be.
    const auto length = static_cast<std::size_t>(at_ - first);
    if (exponent || length > 308) {
      const std::string text(first, length);
      if (!std::isfinite(std::strtod(text.c_str(), nullptr))) return false;
    }
    if (integer) {
      *integer = -1;
      std::int64_t value = 0;
      const auto [end, error] = std::from_chars(first, integer_end, value);
      if (error == std::errc() && end == at_ && value >= 0) *integer = value;
    }
    return true;
  }
  bool literal(std::string_view word) noexcept {
    if (static_cast<std::size_t>(end_ - at_) < word.size() || std::string_view(at_, word.size()) != word)
      return false;
    at_ += word.size();
    return true;
  }

  // true, false or null for a member that must be a boolean; else a refusal naming it.
  bool boolean(int depth, const char* param, bool& into) {
    const char* first = at_;
    if (literal("true")) {
      into = true;
      return true;
    }
    if (literal("false") || literal("null")) {
      into = false;
      return true;
    }
    if (!value(depth, Member::other)) return false;
    return refuse(std::string("'") + param + "' must be a boolean, got " + shown(span_text(first)), param);
  }
  std::string_view span_text(const char* first) const noexcept {
    return std::string_view(first, static_cast<std::size_t>(at_ - first));
  }

  // Any value; `member` says what it is to the request (only at depth 1, and include_usage at depth 2).
  bool value(int depth, Member member) {
    if (at_ == end_) return false;
    const char* first = at_;
    switch (member) {
      case Member::stream:
        facts_.stream_given = *at_ != 'n';  // "stream": null is the route's default
        return boolean(depth, "stream", facts_.stream);
      case Member::include_usage: {
        const bool ok = boolean(depth, "stream_options.include_usage", facts_.include_usage);
        facts_.include_usage_value = span_from(first);
        return ok;
      }
      case Member::stream_options:
        facts_.has_stream_options = true;
        if (*at_ == '{') {
          const bool ok = object(depth + 1, true);
          facts_.stream_options_value = span_from(first);
          return ok;
        }
        if (literal("null")) {
          facts_.stream_options_value = span_from(first);
          return true;
        }
        if (!value(depth, Member::other)) return false;
        return refuse("'stream_options' must be an object such as {\"include_usage\": true}, got " +
                          shown(span_text(first)),
                      "stream_options");
      case Member::max_tokens:
      case Member::max_completion_tokens:
      case Member::max_output_tokens:
      case Member::n_predict:
      case Member::n:
        if (*at_ == '-' || (*at_ >= '0' && *at_ <= '9')) {
          std::int64_t integer = -1;
          if (!number(&integer)) return false;
          if (member == Member::n)
            facts_.choices = integer >= 1 && integer <= 128 ? integer : 1;
          else if (integer > 0)
            facts_.max_tokens = integer;
          return true;
        }
        break;  // a node answers 400 for a wrong type; the gateway only needs a number it can use
      default:
        break;
    }
    switch (*at_) {
      case '{':
        return object(depth + 1);
      case '[':
        return array(depth + 1, member == Member::messages || member == Member::input);
      case '"':
        if (member == Member::model) {
          facts_.model.clear();
          const bool ok = string(&facts_.model);
          facts_.model_value = span_from(first);
          return ok;
        }
        if (member == Member::prompt) {
          prompt_.clear();
          return string(&prompt_, 512);
        }
        if (member == Member::user) {
          user_.clear();
          return string(&user_);
        }
        return string();
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }

  static Member top_member(std::string_view key) noexcept {
    static constexpr std::pair<std::string_view, Member> known[] = {
        {"model", Member::model},
        {"stream", Member::stream},
        {"stream_options", Member::stream_options},
        {"messages", Member::messages},
        {"prompt", Member::prompt},
        {"user", Member::user},
        {"max_tokens", Member::max_tokens},
        {"max_completion_tokens", Member::max_completion_tokens},
        {"n_predict", Member::n_predict},
        {"max_output_tokens", Member::max_output_tokens},
        {"input", Member::input},
        {"n", Member::n}};
    for (const auto& [name, member] : known)
      if (key == name) return member;
    return Member::other;
  }

  // `depth` is the depth of the object's members (1: the request's own).
  bool object(int depth, bool stream_options = false) {
    if (depth > max_depth || !take('{')) return false;
    skip_space();
    if (take('}')) return true;
    unsigned seen = 0;  // the members the gateway reads, met so far in this object
    for (;;) {
      const char* key_start = at_;
      std::string_view key;
      if (!string(nullptr, 0, &key)) return false;
      std::string decoded;  // a key written with escapes ("mod\u0065l") is still the key it spells
      if (key.find('\\') != std::string_view::npos) {
        const char* after = at_;
        at_ = key_start;
        string(&decoded);
        at_ = after;
        key = decoded;
      }
      skip_space();
      if (!take(':')) return false;
      skip_space();
      Member member = Member::other;
      if (depth == 1)
        member = top_member(key);
      else if (stream_options && key == "include_usage")
        member = Member::include_usage;
      if (member != Member::other) {
        const auto bit = static_cast<unsigned>(member);
        if (seen & bit) {
          const std::string name =
              member == Member::include_usage ? "stream_options.include_usage" : std::string(key);
          return refuse("the request body has '" + name + "' twice; send it once", name, "duplicate_key");
        }
        seen |= bit;
      }
      if (!value(depth, member)) return false;
      skip_space();
      if (take('}')) return true;
      if (!take(',')) return false;
      skip_space();
    }
  }

  // An array; for the request's messages (`hash_leading`) its first two elements, as written (white space
  // outside strings left out), make the conversation's hash (FNV-1a), so every turn of one conversation has
  // the same.
  bool array(int depth, bool hash_leading = false) {
    if (depth > max_depth || !take('[')) return false;
    skip_space();
    if (take(']')) return true;
    for (int index = 0;; ++index) {
      const char* first = at_;
      if (!value(depth, Member::other)) return false;
      // (Objects only: an embedding request's "input" of strings has no conversation.)
      if (hash_leading && index < 2 && *first == '{')
        mix(std::string_view(first, static_cast<std::size_t>(at_ - first)));
      skip_space();
      if (take(']')) return true;
      if (!take(',')) return false;
      skip_space();
    }
  }
  void mix(std::string_view text) noexcept {
    has_messages_hash_ = true;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
      const char c = text[i];
      if (!in_string && is_space(c)) continue;
      if (in_string && c == '\\' && i + 1 < text.size()) {
        messages_hash_ = (messages_hash_ ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
        ++i;
        messages_hash_ = (messages_hash_ ^ static_cast<unsigned char>(text[i])) * 0x100000001b3ULL;
        continue;
      }
      if (c == '"') in_string = !in_string;
      messages_hash_ = (messages_hash_ ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
    }
    messages_hash_ = (messages_hash_ ^ 0xff) * 0x100000001b3ULL;  // separates the two messages
  }

  const char* begin_;
  const char* at_;
  const char* end_;
  RequestFacts& facts_;
  std::optional<Error> problem_;
  bool has_messages_hash_ = false;
  std::uint64_t messages_hash_ = 0xcbf29ce484222325ULL;
  std::string prompt_;
  std::string user_;
};

// Why a body the scanner refused cannot be used, in the JSON reader's words (the slow path: bad input only).
Error why_unreadable(std::string_view body) {
  try {
    const auto parsed = json_read::parse_or_throw(body, "request body");
    if (!parsed.is_object())
      return Error{ErrorKind::invalid_request,
                   "request body must be a JSON object, got " + json_read::describe(parsed),
                   {},
                   {}};
  } catch (const ClawbotError& e) {
    return e.error();
  }
  // The reader took what the scanner did not: a difference between the two, which tests look for.
  return Error{
      ErrorKind::invalid_request, "request body is not JSON the gateway can read", {}, "invalid_json"};
}

}  // namespace

RequestFacts scan_request(std::string_view body, std::string_view session) {
  RequestFacts facts;
  FactsScanner scanner(body, facts);
  if (!scanner.scan()) {
    RequestFacts refused;
    refused.refusal = scanner.problem() ? std::move(*scanner.problem()) : why_unreadable(body);
    return refused;
  }
  scanner.finish(session);
  facts.valid = true;
  return facts;
}

std::string with_usage_requested(std::string_view body) {
  const std::size_t open = body.find('{');
  std::string out;
  out.reserve(body.size() + 48);
  out.append(body.substr(0, open + 1));
  out.append("\"stream_options\":{\"include_usage\":true}");
  // An empty object takes no comma.
  std::size_t next = open + 1;
  while (next < body.size() && std::isspace(static_cast<unsigned char>(body[next]))) ++next;
  if (next < body.size() && body[next] != '}') out.append(",");
  out.append(body.substr(open + 1));
  return out;
}

std::string rewritten(std::string_view body, const RequestFacts& facts, bool request_usage,
                      std::string_view model) {
  struct Splice {
    std::size_t offset, size;
    std::string text;
  };
  std::vector<Splice> splices;
  // The text to put after an object's '{' at `open`: with a comma unless the object is empty.
  const auto first_member = [&](std::size_t open, std::string member) {
    std::size_t next = open + 1;
    while (next < body.size() && std::isspace(static_cast<unsigned char>(body[next]))) ++next;
    if (next < body.size() && body[next] != '}') member += ',';
    return Splice{open + 1, 0, std::move(member)};
  };
  if (request_usage && !facts.include_usage) {
    const Span options = facts.stream_options_value;
    if (!options.found())
      splices.push_back(first_member(body.find('{'), "\"stream_options\":{\"include_usage\":true}"));
    else if (body[options.offset] != '{')  // null
      splices.push_back({options.offset, options.size, "{\"include_usage\":true}"});
    else if (facts.include_usage_value.found())  // false or null
      splices.push_back({facts.include_usage_value.offset, facts.include_usage_value.size, "true"});
    else
      splices.push_back(first_member(options.offset, "\"include_usage\":true"));
  }
  if (!model.empty() && facts.model_value.found())
    splices.push_back({facts.model_value.offset, facts.model_value.size,
                       nlohmann::json(model).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
  std::sort(splices.begin(), splices.end(),
            [](const Splice& a, const Splice& b) { return a.offset > b.offset; });
  std::string out(body);
  for (const auto& s : splices) out.replace(s.offset, s.size, s.text);
  return out;
}

namespace {

// `"key"` followed by ':' and a value that starts with one of `starts` (and, for a string, is not empty).
bool key_with_value(std::string_view text, std::string_view quoted_key, std::string_view starts) {
  for (std::size_t at = text.find(quoted_key); at != std::string_view::npos;
       at = text.find(quoted_key, at + 1)) {
    std::size_t i = at + quoted_key.size();
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= text.size() || text[i] != ':') continue;  // a value that reads like the key, not the key
    ++i;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= text.size() || starts.find(text[i]) == std::string_view::npos) continue;
    if (text[i] == '"' && (i + 1 >= text.size() || text[i + 1] == '"')) continue;  // ""
    return true;
  }
  return false;
}

}  // namespace

bool carries_generated_text(std::string_view chunk) {
  // Inside a JSON string every quote is escaped, so an unescaped "content" followed by ':' is a key.
  // OpenAI: content, text, reasoning_content, tool_calls; Responses: "delta" as a string; Anthropic: text,
  // thinking, partial_json (in a content_block_delta); Ollama: message.content, response, thinking,
  // tool_calls.
  static constexpr std::string_view text_keys[] = {"\"content\"",     "\"text\"",     "\"reasoning_content\"",
                                                   "\"delta\"",       "\"response\"", "\"thinking\"",
                                                   "\"partial_json\""};
  for (const auto key : text_keys)
    if (key_with_value(chunk, key, "\"")) return true;
  return key_with_value(chunk, "\"tool_calls\"", "[{");
}

namespace {

// `"key": 123` at the top level of a small flat object such as usage; false when absent or not an integer.
bool integer_member(std::string_view object, std::string_view quoted_key, std::int64_t& value) {
  std::size_t at = object.find(quoted_key);
  if (at == std::string_view::npos) return false;
  at += quoted_key.size();
  while (at < object.size() && std::isspace(static_cast<unsigned char>(object[at]))) ++at;
  if (at >= object.size() || object[at] != ':') return false;
  ++at;
  while (at < object.size() && std::isspace(static_cast<unsigned char>(object[at]))) ++at;
  const char* first = object.data() + at;
  const char* last = object.data() + object.size();
  std::int64_t parsed = 0;
  const auto [end, error] = std::from_chars(first, last, parsed);
  if (error != std::errc() || end == first || (end < last && (*end == '.' || *end == 'e' || *end == 'E')))
    return false;
  value = parsed;
  return true;
}

}  // namespace

namespace {

// The text of the object a `"usage"` key holds (the last such key), or none (absent, null, cut off).
std::optional<std::string_view> usage_object(std::string_view text) {
  // Inside a JSON string every quote is escaped, so an unescaped "usage" followed by ':' is a key.
  constexpr std::string_view key = "\"usage\"";
  for (std::size_t at = text.rfind(key); at != std::string_view::npos;
       at = at == 0 ? std::string_view::npos : text.rfind(key, at - 1)) {
    std::size_t i = at + key.size();
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= text.size() || text[i] != ':') continue;
    ++i;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= text.size() || text[i] != '{') return std::nullopt;  // "usage": null
    // The object's end: count braces outside strings.
    int depth = 0;
    bool in_string = false;
    std::size_t end = i;
    for (; end < text.size(); ++end) {
      const char c = text[end];
      if (in_string) {
        if (c == '\\')
          ++end;
        else if (c == '"')
          in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{') {
        ++depth;
      } else if (c == '}' && --depth == 0) {
        break;
      }
    }
    if (end >= text.size()) return std::nullopt;
    return text.substr(i, end - i + 1);
  }
  return std::nullopt;
}

}  // namespace

// Each protocol's counts, read where they stand (a JSON parse cost more than the rest of this): OpenAI's
// usage {prompt_tokens, completion_tokens}; Responses' and Anthropic's usage {input_tokens, output_tokens}
// (Anthropic's cache_read_input_tokens and cache_creation_input_tokens added to the prompt); (Anthropic's
// stream says input_tokens in message_start and output_tokens, so far, in message_delta: each count is taken
// where it comes); Ollama's final line's prompt_eval_count and eval_count.
bool find_usage(std::string_view text, std::int64_t& prompt_tokens, std::int64_t& completion_tokens) {
  if (const auto usage = usage_object(text)) {
    bool has_prompt = integer_member(*usage, "\"prompt_tokens\"", prompt_tokens);
    if (!has_prompt && integer_member(*usage, "\"input_tokens\"", prompt_tokens)) {
      has_prompt = true;
      // Anthropic counts the prompt tokens read from (or written to) its cache apart from input_tokens; the
      // prompt is all of them, as OpenAI's prompt_tokens (cached ones included).
      for (const std::string_view cache_key :
           {"\"cache_read_input_tokens\"", "\"cache_creation_input_tokens\""}) {
        std::int64_t cached = 0;
        if (integer_member(*usage, cache_key, cached)) prompt_tokens += cached;
      }
    }
    const bool has_completion = integer_member(*usage, "\"completion_tokens\"", completion_tokens) ||
                                integer_member(*usage, "\"output_tokens\"", completion_tokens);
    return has_prompt || has_completion;
  }
  const bool has_prompt = integer_member(text, "\"prompt_eval_count\"", prompt_tokens);
  const bool has_completion = integer_member(text, "\"eval_count\"", completion_tokens);
  return has_prompt || has_completion;
}

}  // namespace clawbot::gateway
