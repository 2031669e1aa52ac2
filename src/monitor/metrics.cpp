#include "monitor/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace clawbot::monitor {
namespace {

// The text format's escapes: `\` and a line break everywhere, `"` in label values only (HELP may hold
// quotes).
std::string escape_text(std::string_view v, bool quotes) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || (quotes && c == '"')) out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string escape_label(const std::string& v) {
  return escape_text(v, true);
}

}  // namespace

// The shortest text that reads back as the same double (0.3, not 0.29999999999999999).
std::string format_value(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  std::array<char, 32> text{};
  const auto end = std::to_chars(text.data(), text.data() + text.size(), v).ptr;
  return std::string(text.data(), end);
}

namespace {

// "{a="x"}" plus an extra label (le) for histogram buckets.
std::string with_label(const std::string& rendered, const std::string& key, const std::string& value) {
  const std::string extra = key + "=\"" + value + "\"";
  if (rendered.empty()) return "{" + extra + "}";
  return rendered.substr(0, rendered.size() - 1) + "," + extra + "}";
}

// render_labels() read back: {a="x",b="y\"z"} -> [(a, x), (b, y"z)].
Labels parse_rendered_labels(std::string_view text) {
  Labels labels;
  if (text.size() < 2) return labels;
  text = text.substr(1, text.size() - 2);
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t eq = text.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= text.size() || text[eq + 1] != '"') break;
    std::string key(text.substr(i, eq - i));
    std::string value;
    std::size_t j = eq + 2;
    for (; j < text.size() && text[j] != '"'; ++j) {
      if (text[j] == '\\' && j + 1 < text.size()) {
        ++j;
        value += text[j] == 'n' ? '\n' : text[j];
      } else {
        value += text[j];
      }
    }
    labels.emplace_back(std::move(key), std::move(value));
    i = j + 2;  // past the closing quote and the comma
  }
  return labels;
}

double meminfo_kib(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string name;
  double value = 0;
  std::string unit;
  while (in >> name >> value >> unit) {
    if (name == key + ":") return value;
  }
  return 0;
}

}  // namespace

std::string render_labels(const Labels& labels) {
  if (labels.empty()) return {};
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ",";
    out += labels[i].first + "=\"" + escape_label(labels[i].second) + "\"";
  }
  return out + "}";
}

Registry::Family& Registry::family(const std::string& name, const std::string& type,
                                   const std::string& help) {
  auto& f = families_[name];
  if (f.type.empty()) {
    f.type = type;
    f.help = help;
  }
  return f;
}

void Registry::counter_add(const std::string& name, const std::string& help, const Labels& labels,
                           double value) {
  std::lock_guard lock(mutex_);
  family(name, "counter", help).values[render_labels(labels)] += value;
}

void Registry::histogram_observe(const std::string& name, const std::string& help,
                                 const std::vector<double>& buckets, double value, const Labels& labels) {
  histogram(name, help, buckets, labels).observe(value);
}

CounterHandle Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  CounterHandle handle;
  handle.registry_ = this;
  handle.value_ = &family(name, "counter", help).values[render_labels(labels)];  // std::map: a stable address
  return handle;
}

HistogramHandle Registry::histogram(const std::string& name, const std::string& help,
                                    const std::vector<double>& buckets, const Labels& labels) {
  std::lock_guard lock(mutex_);
  auto& h = family(name, "histogram", help).histograms[render_labels(labels)];
  if (h.buckets.empty()) {
    h.buckets = buckets;
    h.counts.assign(buckets.size(), 0);
  }
  HistogramHandle handle;
  handle.registry_ = this;
  handle.histogram_ = &h;
  return handle;
}

void CounterHandle::add(double value) {
  std::lock_guard lock(registry_->mutex_);
  *value_ += value;
}

void HistogramHandle::observe(double value) {
  std::lock_guard lock(registry_->mutex_);
  auto& h = *static_cast<Registry::Histogram*>(histogram_);
  for (size_t i = 0; i < h.buckets.size(); ++i) {
    if (value <= h.buckets[i]) {
      ++h.counts[i];
      break;
    }
  }
  h.sum += value;
  ++h.count;
}

void Registry::gauge_callback(const std::string& name, const std::string& help, std::function<double()> read,
                              const Labels& labels) {
  std::lock_guard lock(mutex_);
  family(name, "gauge", help).reads[render_labels(labels)] = std::move(read);
}

void Registry::counter_callback(const std::string& name, const std::string& help,
                                std::function<double()> read, const Labels& labels) {
  std::lock_guard lock(mutex_);
  family(name, "counter", help).reads[render_labels(labels)] = std::move(read);
}

std::string Registry::render() const {
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  for (const auto& [name, f] : families_) {
    out << "# HELP " << name << ' ' << escape_text(f.help, false) << '\n'
        << "# TYPE " << name << ' ' << f.type << '\n';
    for (const auto& [labels, v] : f.values) out << name << labels << ' ' << format_value(v) << '\n';
    for (const auto& [labels, read] : f.reads) out << name << labels << ' ' << format_value(read()) << '\n';
    for (const auto& [labels, h] : f.histograms) {
      std::uint64_t cumulative = 0;
      for (size_t i = 0; i < h.buckets.size(); ++i) {
        cumulative += h.counts[i];
        out << name << "_bucket" << with_label(labels, "le", format_value(h.buckets[i])) << ' ' << cumulative
            << '\n';
      }
      out << name << "_bucket" << with_label(labels, "le", "+Inf") << ' ' << h.count << '\n';
      out << name << "_sum" << labels << ' ' << format_value(h.sum) << '\n';
      out << name << "_count" << labels << ' ' << h.count << '\n';
    }
  }
  return out.str();
}

MetricsSnapshot Registry::snapshot() const {
  MetricsSnapshot snap;
  std::lock_guard lock(mutex_);
  for (const auto& [name, f] : families_) {
    auto& out = snap.families[name];
    out.type = f.type;
    out.values.reserve(f.values.size() + f.reads.size());
    for (const auto& [labels, v] : f.values) out.values.push_back({parse_rendered_labels(labels), v});
    for (const auto& [labels, read] : f.reads) out.values.push_back({parse_rendered_labels(labels), read()});
    for (const auto& [labels, h] : f.histograms) {
      MetricsSnapshot::Histogram copy;
      copy.labels = parse_rendered_labels(labels);
      copy.upper_bounds = h.buckets;
      copy.cumulative.reserve(h.counts.size());
      std::uint64_t cumulative = 0;
      for (const auto count : h.counts) {
        cumulative += count;
        copy.cumulative.push_back(static_cast<double>(cumulative));
      }
      copy.sum = h.sum;
      copy.count = static_cast<double>(h.count);
      out.histograms.push_back(std::move(copy));
    }
  }
  return snap;
}

const MetricsSnapshot::Family* MetricsSnapshot::find(std::string_view name) const {
  const auto it = families.find(name);
  return it == families.end() ? nullptr : &it->second;
}

const std::string* label_value(const Labels& labels, std::string_view key) {
  for (const auto& [k, v] : labels)
    if (k == key) return &v;
  return nullptr;
}

const std::vector<double>& ttft_buckets() {
  // 0.15 and 0.2: the deployment guide's P99 target is 200 ms, so an alert at 0.2 s needs a bucket bound
  // there.
  static const std::vector<double> b{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                     0.15,  0.2,   0.25, 0.5,  0.75, 1.0,  2.5,  5.0,
                                     7.5,   10.0,  20.0, 40.0, 80.0, 160., 640., 2560.};
  return b;
}
const std::vector<double>& itl_buckets() {
  static const std::vector<double> b{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                     0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
  return b;
}
const std::vector<double>& e2e_buckets() {
  static const std::vector<double> b{0.05, 0.1,  0.2,   0.3,   0.5,   0.8,   1.0,    1.5,
                                     2.0,  2.5,  5.0,   10.0,  15.0,  20.0,  30.0,   40.0,
                                     50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  return b;
}

std::optional<double> histogram_quantile(double q, std::span<const double> upper_bounds,
                                         std::span<const double> cumulative, double total) {
  if (!(total > 0) || upper_bounds.size() != cumulative.size() || std::isnan(q)) return std::nullopt;
  if (q <= 0) return upper_bounds.empty() ? std::nullopt : std::optional<double>(0.0);
  const double rank = std::min(q, 1.0) * total;
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    if (cumulative[i] < rank) continue;
    const double lower = i == 0 ? 0.0 : upper_bounds[i - 1];
    const double below = i == 0 ? 0.0 : cumulative[i - 1];
    const double in_bucket = cumulative[i] - below;
    if (in_bucket <= 0) return upper_bounds[i];
    return lower + (upper_bounds[i] - lower) * (rank - below) / in_bucket;
  }
  // In the +Inf bucket: the highest finite bound, as Prometheus answers.
  if (upper_bounds.empty()) return std::nullopt;
  return upper_bounds.back();
}

double process_rss_bytes() {
  std::ifstream in("/proc/self/statm");
  double pages_total = 0, pages_resident = 0;
  in >> pages_total >> pages_resident;
  return pages_resident * static_cast<double>(sysconf(_SC_PAGESIZE));
}
double system_memory_total_bytes() {
  return meminfo_kib("MemTotal") * 1024.0;
}
namespace {

std::optional<double> whole_number(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value) ||
      value < 0)
    return std::nullopt;
  return value;
}

// CLAWBOT_MEMORY_AVAILABLE: bytes, or a file that holds them (a test rewrites it to cross a threshold).
std::optional<double> memory_available_seam() {
  const char* seam = std::getenv("CLAWBOT_MEMORY_AVAILABLE");
  if (seam == nullptr || *seam == '\0') return std::nullopt;
  if (auto bytes = whole_number(seam)) return bytes;
  std::ifstream in(seam);
  std::string text(64, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return whole_number(text);
}

}  // namespace

double system_memory_available_bytes() {
  if (const auto seam = memory_available_seam()) return *seam;
  return meminfo_kib("MemAvailable") * 1024.0;
}

}  // namespace clawbot::monitor
