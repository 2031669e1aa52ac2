// A reader of the Prometheus text exposition format (0.0.4) for the client side (`clawbot top`): what a
// remote server sends, so every size is bounded and any bytes give a Scrape or an error, never a crash.
// Families (# HELP, # TYPE), samples with labels (escapes \\ \" \n), NaN/+Inf/-Inf, optional timestamps;
// a histogram's _bucket/_sum/_count samples belong to its family.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clawbot::monitor::prom {

using Labels = std::vector<std::pair<std::string, std::string>>;

struct Sample {
  std::string name;  // as written: http_requests_total, latency_seconds_bucket ...
  Labels labels;     // in the order written
  double value = 0;
  std::optional<long long> timestamp_ms;

  // The label's value, or nullptr.
  const std::string* label(std::string_view key) const;
};

struct Family {
  std::string name;
  std::string type = "untyped";  // counter | gauge | histogram | summary | untyped
  std::string help;
  std::vector<Sample> samples;
};

struct Limits {
  std::size_t max_bytes = 16u << 20;
  std::size_t max_line_bytes = 64u << 10;
  std::size_t max_samples = 200'000;
  std::size_t max_families = 20'000;
  std::size_t max_labels = 64;  // per sample
};

struct Scrape {
  std::vector<Family> families;                            // in the order first seen
  std::vector<std::pair<std::string, std::size_t>> index;  // family name -> position, sorted by name

  const Family* family(std::string_view name) const;
  // The value of the first sample named `name` whose labels include all of `match`; nullopt when none.
  std::optional<double> value(std::string_view name, const Labels& match = {}) const;
  // The sum of every sample named `name` whose labels include all of `match`; nullopt when none.
  std::optional<double> sum(std::string_view name, const Labels& match = {}) const;
};

struct ParseResult {
  std::optional<Scrape> scrape;
  std::string error;  // when !scrape: what is wrong, on which line (bounded, printable)
};

ParseResult parse(std::string_view text, const Limits& limits = {});

// One histogram series of a family (its labels without le): bucket bounds ascending without +Inf, the
// cumulative count at each, and the count and sum.
struct Histogram {
  Labels labels;
  std::vector<double> upper_bounds;
  std::vector<double> cumulative;
  double count = 0;
  double sum = 0;
};
// The histograms of `family` (type histogram), one per label set; buckets with an le that is not a number
// are skipped, and a series without a +Inf bucket takes its count from _count (else its last bucket).
std::vector<Histogram> histograms(const Family& family);

}  // namespace clawbot::monitor::prom
