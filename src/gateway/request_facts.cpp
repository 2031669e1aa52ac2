#include "gateway/request_facts.h"

#include <cctype>
#include <charconv>

#include <nlohmann/json.hpp>

#include "gateway/upstream_pool.h"

namespace clawbot::gateway {

using nlohmann::json;

namespace {

// SAX events of one request body. Depth 1 is the request object; "messages" elements are at depth 2.
class FactsReader : public nlohmann::json_sax<json> {
 public:
  explicit FactsReader(RequestFacts& facts) : facts_(facts) {}

  bool null() override { return value("null"); }
  bool boolean(bool v) override {
    if (depth_ == 1 && key_ == "stream") facts_.stream = v;
    if (depth_ == 2 && in_stream_options_ && key_ == "include_usage") facts_.include_usage = v;
    return value(v ? "true" : "false");
  }
  bool number_integer(number_integer_t v) override { return value(std::to_string(v)); }
  bool number_unsigned(number_unsigned_t v) override { return value(std::to_string(v)); }
  bool number_float(number_float_t, const string_t& text) override { return value(text); }
  bool string(string_t& v) override {
    if (depth_ == 1) {
      if (key_ == "model") facts_.model = v;
      if (key_ == "prompt") prompt_.assign(v, 0, 512);
      if (key_ == "user") user_ = v;
    }
    return value(v);
  }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    if (depth_ == 1 && key_ == "stream_options") {
      facts_.has_stream_options = true;
      in_stream_options_ = true;
    }
    if (depth_ == 2 && in_messages_) ++message_;
    mix("{");
    ++depth_;
    return true;
  }
  bool key(string_t& k) override {
    key_ = k;
    mix(k);
    mix(":");
    return true;
  }
  bool end_object() override {
    --depth_;
    mix("}");
    if (depth_ == 1) in_stream_options_ = false;
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth_ == 1 && key_ == "messages") in_messages_ = true;
    if (depth_ == 2 && in_messages_) ++message_;  // (a message that is an array: malformed, still counted)
    mix("[");
    ++depth_;
    return true;
  }
  bool end_array() override {
    --depth_;
    mix("]");
    if (depth_ == 1) in_messages_ = false;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

  void finish(std::string_view session) {
    std::string key;
    if (!session.empty()) {
      key = "session:" + std::string(session);
    } else if (has_messages_hash_) {
      key = "messages:" + std::to_string(messages_hash_);
    } else if (!prompt_.empty()) {
      key = "prompt:" + prompt_;
    } else if (!user_.empty()) {
      key = "user:" + user_;
    }
    if (key.empty()) return;
    const std::uint64_t h = stable_hash(key + "\n" + facts_.model);
    facts_.affinity = h == 0 ? 1 : h;
  }

 private:
  bool value(std::string_view text) {
    mix(text);
    return true;
  }
  // Everything inside the first two messages feeds the conversation's hash (FNV-1a over the events).
  void mix(std::string_view text) {
    if (!in_messages_ || depth_ < 2 || message_ == 0 || message_ > 2) return;
    has_messages_hash_ = true;
    for (const unsigned char c : text) {
      messages_hash_ ^= c;
      messages_hash_ *= 0x100000001b3ULL;
    }
    messages_hash_ ^= 0xff;  // separates events ("ab","c" from "a","bc")
    messages_hash_ *= 0x100000001b3ULL;
  }

  RequestFacts& facts_;
  int depth_ = 0;
  std::string key_;
  bool in_stream_options_ = false;
  bool in_messages_ = false;
  std::size_t message_ = 0;
  bool has_messages_hash_ = false;
  std::uint64_t messages_hash_ = 0xcbf29ce484222325ULL;
  std::string prompt_;
  std::string user_;
};

}  // namespace

RequestFacts scan_request(std::string_view body, std::string_view session) {
  RequestFacts facts;
  std::size_t start = 0;
  while (start < body.size() && std::isspace(static_cast<unsigned char>(body[start]))) ++start;
  if (start == body.size() || body[start] != '{') return facts;
  FactsReader reader(facts);
  if (!json::sax_parse(body, &reader)) return RequestFacts{};
  reader.finish(session);
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
