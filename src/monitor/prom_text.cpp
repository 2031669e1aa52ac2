#include "monitor/prom_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>

namespace clawbot::monitor::prom {

namespace {

bool name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool name_char(char c) {
  return name_start(c) || (c >= '0' && c <= '9');
}
bool label_start(char c) {
  return name_start(c) && c != ':';
}
bool label_char(char c) {
  return name_char(c) && c != ':';
}
bool blank(char c) {
  return c == ' ' || c == '\t';
}

// A line as an error message may quote it: at most 80 bytes, anything unprintable as \xNN.
std::string quote(std::string_view line) {
  std::string out;
  for (std::size_t i = 0; i < line.size() && i < 80; ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (line.size() > 80) out += "...";
  return out;
}

// A sample value: a float as Go's ParseFloat reads the text format's (NaN, +Inf, -Inf, 1e3, 0.5).
std::optional<double> parse_value(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (text.front() == '+') text.remove_prefix(1);
  if (text.empty() || text.front() == '+') return std::nullopt;
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ptr != end) return std::nullopt;
  if (ec ==
      std::errc::result_out_of_range) {  // 1e999 is an infinity and 1e-999 is 0, as ParseFloat reads them
    const auto exponent = text.find_first_of("eE");
    if (exponent != std::string_view::npos && exponent + 1 < text.size() && text[exponent + 1] == '-')
      return 0.0;
    return text.front() == '-' ? -std::numeric_limits<double>::infinity()
                               : std::numeric_limits<double>::infinity();
  }
  if (ec != std::errc()) return std::nullopt;
  return value;
}

class Parser {
 public:
  Parser(const Limits& limits) : limits_(limits) {}

  ParseResult run(std::string_view text) {
    if (text.size() > limits_.max_bytes)
      return fail("the exposition is " + std::to_string(text.size()) + " bytes, over the limit of " +
                  std::to_string(limits_.max_bytes));
    std::size_t start = 0;
    while (start < text.size()) {
      auto nl = text.find('\n', start);
      if (nl == std::string_view::npos) nl = text.size();
      std::string_view line = text.substr(start, nl - start);
      start = nl + 1;
      ++line_number_;
      if (line.size() > limits_.max_line_bytes)
        return fail("line " + std::to_string(line_number_) + " is over " +
                    std::to_string(limits_.max_line_bytes) + " bytes");
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      std::string problem = take_line(line);
      if (!problem.empty())
        return fail("line " + std::to_string(line_number_) + ": " + problem + ": \"" + quote(line) + "\"");
    }
    std::sort(scrape_.index.begin(), scrape_.index.end());
    ParseResult result;
    result.scrape = std::move(scrape_);
    return result;
  }

 private:
  static ParseResult fail(std::string message) {
    ParseResult result;
    result.error = std::move(message);
    return result;
  }

  Family* find(std::string_view name) {
    const auto it = positions_.find(name);
    return it == positions_.end() ? nullptr : &scrape_.families[it->second];
  }

  // The family named `name`, made (untyped) when new; nullptr past the limit.
  Family* make(std::string_view name) {
    if (Family* f = find(name)) return f;
    if (scrape_.families.size() >= limits_.max_families) return nullptr;
    positions_.emplace(std::string(name), scrape_.families.size());
    scrape_.index.emplace_back(std::string(name), scrape_.families.size());
    scrape_.families.emplace_back().name = std::string(name);
    return &scrape_.families.back();
  }

  // The family a sample belongs to: its own name, or a histogram's or summary's for their suffixes.
  Family* family_of(std::string_view sample) {
    if (Family* f = find(sample)) return f;
    for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (!sample.ends_with(suffix)) continue;
      Family* base = find(sample.substr(0, sample.size() - suffix.size()));
      if (base && (base->type == "histogram" || (base->type == "summary" && suffix != "_bucket")))
        return base;
    }
    return make(sample);
  }

  std::string take_line(std::string_view line) {
    std::size_t pos = 0;
    while (pos < line.size() && blank(line[pos])) ++pos;
    if (pos == line.size()) return {};
    if (line[pos] == '#') return take_comment(line.substr(pos + 1));
    return take_sample(line.substr(pos));
  }

  // "# HELP name text", "# TYPE name type"; any other comment is skipped.
  std::string take_comment(std::string_view rest) {
    auto next_word = [&rest]() {
      while (!rest.empty() && blank(rest.front())) rest.remove_prefix(1);
      std::size_t n = 0;
      while (n < rest.size() && !blank(rest[n])) ++n;
      const std::string_view word = rest.substr(0, n);
      rest.remove_prefix(n);
      return word;
    };
    const std::string_view keyword = next_word();
    if (keyword != "HELP" && keyword != "TYPE") return {};
    const std::string_view name = next_word();
    if (name.empty()) return {};
    if (!name_start(name.front()) || !std::all_of(name.begin(), name.end(), name_char))
      return "a metric name that is not one";
    Family* family = make(name);
    if (!family) return "more than " + std::to_string(limits_.max_families) + " metric families";
    if (!rest.empty() && blank(rest.front())) rest.remove_prefix(1);
    if (keyword == "HELP") {
      std::string help;
      for (std::size_t i = 0; i < rest.size(); ++i) {
        if (rest[i] == '\\' && i + 1 < rest.size() && (rest[i + 1] == '\\' || rest[i + 1] == 'n')) {
          help += rest[i + 1] == 'n' ? '\n' : '\\';
          ++i;
        } else {
          help += rest[i];
        }
      }
      family->help = std::move(help);
      return {};
    }
    const std::string_view type = next_word();
    if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" && type != "untyped")
      return "an unknown metric type";
    if (!family->samples.empty() && family->type != type) return "a TYPE line after the family's samples";
    family->type = std::string(type);
    return {};
  }

  std::string take_sample(std::string_view line) {
    if (samples_ >= limits_.max_samples)
      return "more than " + std::to_string(limits_.max_samples) + " samples";
    Sample sample;
    std::size_t pos = 0;
    if (!name_start(line[pos])) return "a sample that does not start with a metric name";
    while (pos < line.size() && name_char(line[pos])) ++pos;
    sample.name = std::string(line.substr(0, pos));
    auto skip_blanks = [&] {
      while (pos < line.size() && blank(line[pos])) ++pos;
    };
    skip_blanks();
    if (pos < line.size() && line[pos] == '{') {
      ++pos;
      for (;;) {
        skip_blanks();
        if (pos >= line.size()) return "labels without their closing }";
        if (line[pos] == '}') {
          ++pos;
          break;
        }
        if (sample.labels.size() >= limits_.max_labels)
          return "more than " + std::to_string(limits_.max_labels) + " labels";
        const std::size_t name_begin = pos;
        if (!label_start(line[pos])) return "a label name that is not one";
        while (pos < line.size() && label_char(line[pos])) ++pos;
        std::string key(line.substr(name_begin, pos - name_begin));
        skip_blanks();
        if (pos >= line.size() || line[pos] != '=') return "a label without =";
        ++pos;
        skip_blanks();
        if (pos >= line.size() || line[pos] != '"') return "a label value without quotes";
        ++pos;
        std::string value;
        for (;;) {
          if (pos >= line.size()) return "a label value without its closing quote";
          const char c = line[pos++];
          if (c == '"') break;
          if (c != '\\') {
            value += c;
            continue;
          }
          if (pos >= line.size()) return "a label value without its closing quote";
          const char escaped = line[pos++];
          if (escaped == 'n')
            value += '\n';
          else if (escaped == '\\' || escaped == '"')
            value += escaped;
          else
            return "an unknown escape in a label value";
        }
        for (const auto& [k, v] : sample.labels)
          if (k == key) return "the label " + quote(key) + " twice";
        sample.labels.emplace_back(std::move(key), std::move(value));
        skip_blanks();
        if (pos < line.size() && line[pos] == ',') {
          ++pos;
          continue;
        }
        if (pos < line.size() && line[pos] == '}') continue;
        return "labels not separated by commas";
      }
      skip_blanks();
    } else if (pos < line.size() && !blank(line[pos - 1])) {
      return "a metric name that is not one";
    }
    std::size_t end = pos;
    while (end < line.size() && !blank(line[end])) ++end;
    const auto value = parse_value(line.substr(pos, end - pos));
    if (!value) return "a sample value that is not a number";
    sample.value = *value;
    pos = end;
    skip_blanks();
    if (pos < line.size()) {
      end = pos;
      while (end < line.size() && !blank(line[end])) ++end;
      long long ms = 0;
      const auto [ptr, ec] = std::from_chars(line.data() + pos, line.data() + end, ms);
      if (ec != std::errc() || ptr != line.data() + end) return "a timestamp that is not an integer";
      sample.timestamp_ms = ms;
      pos = end;
      skip_blanks();
      if (pos < line.size()) return "text after the timestamp";
    }
    Family* family = family_of(sample.name);
    if (!family) return "more than " + std::to_string(limits_.max_families) + " metric families";
    family->samples.push_back(std::move(sample));
    ++samples_;
    return {};
  }

  const Limits& limits_;
  Scrape scrape_;
  std::map<std::string, std::size_t, std::less<>> positions_;
  std::size_t line_number_ = 0;
  std::size_t samples_ = 0;
};

bool labels_include(const Labels& labels, const Labels& match) {
  // (Each wanted pair is a pair of the sample's.)
  return std::all_of(match.begin(), match.end(), [&labels](const auto& wanted) {
    return std::find(labels.begin(), labels.end(), wanted) != labels.end();
  });
}

}  // namespace

const std::string* Sample::label(std::string_view key) const {
  for (const auto& [k, v] : labels)
    if (k == key) return &v;
  return nullptr;
}

ParseResult parse(std::string_view text, const Limits& limits) {
  return Parser(limits).run(text);
}

const Family* Scrape::family(std::string_view name) const {
  const auto it = std::lower_bound(index.begin(), index.end(), name,
                                   [](const auto& entry, std::string_view n) { return entry.first < n; });
  if (it == index.end() || it->first != name) return nullptr;
  return &families[it->second];
}

namespace {

// The family a sample named `name` is in: its own, or its histogram's or summary's.
const Family* family_for_sample(const Scrape& scrape, std::string_view name) {
  if (const Family* f = scrape.family(name)) return f;
  for (std::string_view suffix : {"_bucket", "_sum", "_count"})
    if (name.ends_with(suffix))
      if (const Family* f = scrape.family(name.substr(0, name.size() - suffix.size()))) return f;
  return nullptr;
}

}  // namespace

std::optional<double> Scrape::value(std::string_view name, const Labels& match) const {
  const Family* f = family_for_sample(*this, name);
  if (!f) return std::nullopt;
  for (const auto& s : f->samples)
    if (s.name == name && labels_include(s.labels, match)) return s.value;
  return std::nullopt;
}

std::optional<double> Scrape::sum(std::string_view name, const Labels& match) const {
  const Family* f = family_for_sample(*this, name);
  if (!f) return std::nullopt;
  std::optional<double> total;
  for (const auto& s : f->samples)
    if (s.name == name && labels_include(s.labels, match)) total = total.value_or(0) + s.value;
  return total;
}

std::vector<Histogram> histograms(const Family& family) {
  if (family.type != "histogram") return {};
  struct Building {
    Histogram histogram;
    std::vector<std::pair<double, double>> buckets;  // (le, cumulative count)
    std::optional<double> inf, count;
  };
  std::map<Labels, Building> series;
  const std::string bucket_name = family.name + "_bucket";
  const std::string sum_name = family.name + "_sum";
  const std::string count_name = family.name + "_count";
  for (const auto& s : family.samples) {
    if (std::isnan(s.value)) continue;
    Labels labels;
    std::string_view le;
    bool has_le = false;
    for (const auto& [k, v] : s.labels) {
      if (k == "le") {
        le = v;
        has_le = true;
      } else {
        labels.emplace_back(k, v);
      }
    }
    std::sort(labels.begin(), labels.end());
    if (s.name == bucket_name) {
      if (!has_le) continue;
      const auto bound = parse_value(le);
      if (!bound || std::isnan(*bound)) continue;
      auto& b = series[labels];
      if (std::isinf(*bound) && *bound > 0)
        b.inf = s.value;
      else
        b.buckets.emplace_back(*bound, s.value);
    } else if (s.name == sum_name && !has_le) {
      series[labels].histogram.sum = s.value;
    } else if (s.name == count_name && !has_le) {
      series[labels].count = s.value;
    }
  }
  std::vector<Histogram> out;
  for (auto& [labels, b] : series) {
    std::sort(b.buckets.begin(), b.buckets.end());
    Histogram h = std::move(b.histogram);
    h.labels = labels;
    double running = 0;  // counts made monotonic, as Prometheus does for a broken exposition
    for (const auto& [bound, count] : b.buckets) {
      if (!h.upper_bounds.empty() && bound == h.upper_bounds.back()) continue;  // a bound written twice
      running = std::max(running, count);
      h.upper_bounds.push_back(bound);
      h.cumulative.push_back(running);
    }
    h.count = std::max(running, b.inf ? *b.inf : b.count ? *b.count : running);
    out.push_back(std::move(h));
  }
  return out;
}

}  // namespace clawbot::monitor::prom
