#include "gateway/request_facts.h"

#include <cctype>
#include <charconv>

namespace clawbot::gateway {

namespace {

// One pass over a request body that checks its JSON syntax and picks out the facts: a hand-written scanner,
// since nlohmann's SAX lexer (building a std::string per key and value) was 4% of the gateway's time per
// request. Values nested deeper than this are refused as not valid (the request still goes upstream as is).
constexpr int max_depth = 256;

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

class FactsScanner {
 public:
  FactsScanner(std::string_view body, RequestFacts& facts)
      : at_(body.data()), end_(body.data() + body.size()), facts_(facts) {}

  // The whole body: one object and nothing after it but white space.
  bool scan() {
    skip_space();
    if (!object(1)) return false;
    skip_space();
    return at_ == end_;
  }

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
  enum class Member { other, model, stream, stream_options, messages, prompt, user, include_usage };

  void skip_space() noexcept {
    while (at_ != end_ && is_space(*at_)) ++at_;
  }
  bool take(char c) noexcept {
    if (at_ == end_ || *at_ != c) return false;
    ++at_;
    return true;
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
          // A surrogate pair is one character.
          if (code >= 0xd800 && code < 0xdc00 && end_ - at_ >= 6 && at_[0] == '\\' && at_[1] == 'u') {
            const char* save = at_;
            at_ += 2;
            std::uint32_t low = 0;
            if (hex4(low) && low >= 0xdc00 && low < 0xe000)
              code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
            else
              at_ = save;
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
  bool number() noexcept {
    take('-');
    if (take('0')) {
      // no leading zeros
    } else if (!digits()) {
      return false;
    }
    if (take('.') && !digits()) return false;
    if (at_ != end_ && (*at_ == 'e' || *at_ == 'E')) {
      ++at_;
      if (!take('+')) take('-');
      if (!digits()) return false;
    }
    return true;
  }
  bool literal(std::string_view word) noexcept {
    if (static_cast<std::size_t>(end_ - at_) < word.size() || std::string_view(at_, word.size()) != word)
      return false;
    at_ += word.size();
    return true;
  }

  // Any value; `member` says what it is to the request (only at depth 1, and include_usage at depth 2).
  bool value(int depth, Member member) {
    if (at_ == end_) return false;
    switch (*at_) {
      case '{': {
        if (member == Member::stream_options) {
          facts_.has_stream_options = true;
          return object(depth + 1, true);
        }
        return object(depth + 1);
      }
      case '[':
        return array(depth + 1, member == Member::messages);
      case '"':
        if (member == Member::model) {
          facts_.model.clear();
          return string(&facts_.model);
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
        if (!literal("true")) return false;
        if (member == Member::stream) facts_.stream = true;
        if (member == Member::include_usage) facts_.include_usage = true;
        return true;
      case 'f':
        if (!literal("false")) return false;
        if (member == Member::stream) facts_.stream = false;
        if (member == Member::include_usage) facts_.include_usage = false;
        return true;
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }

  // `depth` is the depth of the object's members (1: the request's own).
  bool object(int depth, bool stream_options = false) {
    if (depth > max_depth || !take('{')) return false;
    skip_space();
    if (take('}')) return true;
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
      if (depth == 1) {
        if (key == "model")
          member = Member::model;
        else if (key == "stream")
          member = Member::stream;
        else if (key == "stream_options")
          member = Member::stream_options;
        else if (key == "messages")
          member = Member::messages;
        else if (key == "prompt")
          member = Member::prompt;
        else if (key == "user")
          member = Member::user;
      } else if (stream_options && key == "include_usage") {
        member = Member::include_usage;
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
      if (hash_leading && index < 2) mix(std::string_view(first, static_cast<std::size_t>(at_ - first)));
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

  const char* at_;
  const char* end_;
  RequestFacts& facts_;
  bool has_messages_hash_ = false;
  std::uint64_t messages_hash_ = 0xcbf29ce484222325ULL;
  std::string prompt_;
  std::string user_;
};

}  // namespace

RequestFacts scan_request(std::string_view body, std::string_view session) {
  RequestFacts facts;
  FactsScanner scanner(body, facts);
  if (!scanner.scan()) return RequestFacts{};
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

bool find_usage(std::string_view text, std::int64_t& prompt_tokens, std::int64_t& completion_tokens) {
  // Inside a JSON string every quote is escaped, so an unescaped "usage" followed by ':' is a key.
  constexpr std::string_view key = "\"usage\"";
  for (std::size_t at = text.rfind(key); at != std::string_view::npos;
       at = at == 0 ? std::string_view::npos : text.rfind(key, at - 1)) {
    std::size_t i = at + key.size();
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= text.size() || text[i] != ':') continue;
    ++i;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= text.size() || text[i] != '{') return false;  // "usage": null
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
    if (end >= text.size()) return false;
    // The two counts, read where they stand (a JSON parse of the object cost more than the rest of this).
    const std::string_view usage = text.substr(i, end - i + 1);
    const bool has_prompt = integer_member(usage, "\"prompt_tokens\"", prompt_tokens);
    const bool has_completion = integer_member(usage, "\"completion_tokens\"", completion_tokens);
    return has_prompt || has_completion;
  }
  return false;
}

}  // namespace clawbot::gateway
