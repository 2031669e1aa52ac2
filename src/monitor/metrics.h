// A small Prometheus registry: counters, gauges and histograms with labels, rendered in the text format.
// Thread-safe; values are read at scrape time from callbacks where the owner keeps them (gauges).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace clawbot::monitor {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Registry;

// Every family's values at one instant (Registry::snapshot()): counters and gauges (callbacks read), and
// histograms' buckets, by label set. What the in-process history derives its series from.
struct MetricsSnapshot {
  struct Value {
    Labels labels;
    double value = 0;
  };
  struct Histogram {
    Labels labels;
    std::vector<double> upper_bounds;  // ascending, the +Inf bucket excluded
    std::vector<double> cumulative;    // observations at or below each bound
    double sum = 0;
    double count = 0;  // every observation (the +Inf bucket)
  };
  struct Family {
    std::string type;  // counter | gauge | histogram
    std::vector<Value> values;
    std::vector<Histogram> histograms;
  };
  std::map<std::string, Family, std::less<>> families;

  const Family* find(std::string_view name) const;
};

// The value of label `key`, or nullptr.
const std::string* label_value(const Labels& labels, std::string_view key);

// A series resolved once (its name, help and labels rendered at creation): each add or observe then costs one
// lock and no allocation. Valid as long as its Registry.
class CounterHandle {
 public:
  void add(double value = 1);

 private:
  friend class Registry;
  Registry* registry_ = nullptr;
  double* value_ = nullptr;
};

class HistogramHandle {
 public:
  void observe(double value);

 private:
  friend class Registry;
  Registry* registry_ = nullptr;
  void* histogram_ = nullptr;
};

class Registry {
 public:
  CounterHandle counter(const std::string& name, const std::string& help, const Labels& labels = {});
  HistogramHandle histogram(const std::string& name, const std::string& help,
                            const std::vector<double>& buckets, const Labels& labels = {});
  void counter_add(const std::string& name, const std::string& help, const Labels& labels, double value = 1);
  void histogram_observe(const std::string& name, const std::string& help, const std::vector<double>& buckets,
                         double value, const Labels& labels = {});
  // A value computed at scrape time.
  void gauge_callback(const std::string& name, const std::string& help, std::function<double()> read,
                      const Labels& labels = {});
  void counter_callback(const std::string& name, const std::string& help, std::function<double()> read,
                        const Labels& labels = {});
  std::string render() const;  // Prometheus text exposition format 0.0.4
  // A copy of every family's current values; callbacks are read as render() reads them. Cheap enough to take
  // every few seconds (one lock, a copy of a few hundred numbers).
  MetricsSnapshot snapshot() const;

 private:
  struct Histogram {
    std::vector<double> buckets;
    std::vector<std::uint64_t> counts;  // per bucket (not cumulative)
    double sum = 0;
    std::uint64_t count = 0;
  };
  struct Family {
    std::string type;
    std::string help;
    std::map<std::string, double> values;                  // rendered labels -> value
    std::map<std::string, Histogram> histograms;           // rendered labels -> histogram
    std::map<std::string, std::function<double()>> reads;  // rendered labels -> callback
  };
  friend class CounterHandle;
  friend class HistogramHandle;
  Family& family(const std::string& name, const std::string& type, const std::string& help);
  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
};

std::string render_labels(const Labels& labels);
// A sample value or bucket bound as the text format writes it: the shortest round-trip form, +Inf, NaN.
std::string format_value(double v);

// Prometheus' histogram_quantile() for one histogram: `upper_bounds` ascending (the +Inf bucket excluded),
// `cumulative` the count at or below each bound, `total` the count of every observation (the +Inf bucket).
// Linear interpolation inside the bucket (the first bucket starts at 0); a quantile in the +Inf bucket is the
// highest finite bound. Used on bucket deltas, it gives the quantile over that window. nullopt when total is
// 0.
std::optional<double> histogram_quantile(double q, std::span<const double> upper_bounds,
                                         std::span<const double> cumulative, double total);

// Buckets in seconds for latencies, as vLLM uses for time to first token and inter-token latency.
const std::vector<double>& ttft_buckets();
const std::vector<double>& itl_buckets();
const std::vector<double>& e2e_buckets();

// Process resident memory and system memory (bytes), from /proc. A test seam: CLAWBOT_MEMORY_AVAILABLE, a
// number of bytes or the path of a file holding one (re-read on every call), stands for MemAvailable, so that
// /metrics, the history and the alerts see the same figure when a test makes memory run short.
double process_rss_bytes();
double system_memory_total_bytes();
double system_memory_available_bytes();

// Memory read bandwidth in bytes/s: the best of `repeats` passes over `bytes` with `threads` threads.
double measure_read_bandwidth(std::size_t bytes = std::size_t{1} << 30, int threads = 2, int repeats = 3);

}  // namespace clawbot::monitor
