#include "monitor/history.h"

#include <pthread.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/url_query.h"
#include "monitor/metrics.h"
#include "monitor/series.h"

namespace clawbot::monitor {
namespace {

constexpr double absent = std::numeric_limits<double>::quiet_NaN();

// Per-upstream series, in their column order.
constexpr std::array<std::string_view, 4> upstream_series = {
    series::upstream_requests_per_s, series::upstream_errors_per_s, series::upstream_e2e_p99_s,
    series::upstream_in_flight};

// An upstream's state as the JSON names it (0: unknown).
constexpr std::array<std::string_view, 5> state_names = {"", "healthy", "open", "standby", "down"};

std::uint8_t state_code(std::string_view state) {
  for (std::size_t i = 1; i < state_names.size(); ++i)
    if (state_names[i] == state) return static_cast<std::uint8_t>(i);
  return 0;
}

// A histogram's cumulative counts, summed over the label sets that share its bounds.
struct HistogramTotals {
  std::vector<double> bounds;
  std::vector<double> cumulative;
  double count = 0;
  bool present = false;

  void add(const MetricsSnapshot::Histogram& h) {
    if (!present) {
      bounds = h.upper_bounds;
      cumulative.assign(bounds.size(), 0);
      present = true;
    }
    if (h.upper_bounds != bounds) return;  // another bucket layout: not summable
    for (std::size_t i = 0; i < bounds.size(); ++i) cumulative[i] += h.cumulative[i];
    count += h.count;
  }
};

// Quantile `q` of the observations between `base` and `now` (a histogram created since counts from 0).
std::optional<double> window_quantile(double q, const HistogramTotals& now, const HistogramTotals* base) {
  if (!now.present) return std::nullopt;
  if (base == nullptr || !base->present) return histogram_quantile(q, now.bounds, now.cumulative, now.count);
  if (base->bounds != now.bounds || now.count < base->count) return std::nullopt;
  std::vector<double> delta(now.bounds.size());
  for (std::size_t i = 0; i < delta.size(); ++i) delta[i] = now.cumulative[i] - base->cumulative[i];
  return histogram_quantile(q, now.bounds, delta, now.count - base->count);
}

HistogramTotals histogram_of(const MetricsSnapshot& snap, std::string_view family,
                             const std::string* upstream = nullptr) {
  HistogramTotals totals;
  if (const auto* f = snap.find(family)) {
    for (const auto& h : f->histograms) {
      if (upstream != nullptr) {
        const std::string* name = label_value(h.labels, "upstream");
        if (name == nullptr || *name != *upstream) continue;
      }
      totals.add(h);
    }
  }
  return totals;
}

// The sum of a family's values whose labels pass `keep`; nullopt when the family does not exist.
template <class Keep>
std::optional<double> sum_of(const MetricsSnapshot& snap, std::string_view family, Keep keep) {
  const auto* f = snap.find(family);
  if (f == nullptr) return std::nullopt;
  double total = 0;
  for (const auto& v : f->values)
    if (keep(v.labels)) total += v.value;
  return total;
}

std::optional<double> sum_of(const MetricsSnapshot& snap, std::string_view family) {
  return sum_of(snap, family, [](const Labels&) { return true; });
}

bool has_label(const Labels& labels, std::string_view key, std::string_view value) {
  const std::string* v = label_value(labels, key);
  return v != nullptr && *v == value;
}

int status_of(const Labels& labels) {
  const std::string* text = label_value(labels, "status");
  int status = 0;
  if (text != nullptr) std::from_chars(text->data(), text->data() + text->size(), status);
  return status;
}

// (value now - value before) / seconds; a counter that went down was reset (counted from 0).
std::optional<double> rate(std::optional<double> now, std::optional<double> before, double seconds) {
  if (!now || !before || !(seconds > 0)) return std::nullopt;
  const double delta = *now >= *before ? *now - *before : *now;
  return delta / seconds;
}

// part / whole over a window; nullopt when nothing happened in it.
std::optional<double> ratio(std::optional<double> part_now, std::optional<double> part_before,
                            std::optional<double> whole_now, std::optional<double> whole_before) {
  if (!part_now || !whole_now) return std::nullopt;
  const double whole = *whole_now - whole_before.value_or(0);
  const double part = *part_now - part_before.value_or(0);
  if (!(whole > 0) || part < 0) return std::nullopt;
  return std::min(part / whole, 1.0);
}

void put(Sample& sample, std::string_view name, std::optional<double> value) {
  if (value && std::isfinite(*value)) sample.values.emplace(std::string(name), *value);
}

void put(Sample::Upstream& upstream, std::string_view name, std::optional<double> value) {
  if (value && std::isfinite(*value)) upstream.values.emplace(std::string(name), *value);
}

// The first GPU's value (gpu="0", else the lowest), or the sum or the maximum over all of them.
enum class OverGpus { first, sum, max };
std::optional<double> gpu_value(const MetricsSnapshot& snap, std::string_view family, OverGpus how) {
  const auto* f = snap.find(family);
  if (f == nullptr || f->values.empty()) return std::nullopt;
  if (how == OverGpus::first) {
    const MetricsSnapshot::Value* first = nullptr;
    for (const auto& v : f->values) {
      const std::string* gpu = label_value(v.labels, "gpu");
      const std::string* best = first ? label_value(first->labels, "gpu") : nullptr;
      if (first == nullptr ||
          (gpu && best && (gpu->size() < best->size() || (gpu->size() == best->size() && *gpu < *best))))
        first = &v;
    }
    return first->value;
  }
  double out = how == OverGpus::sum ? 0 : -std::numeric_limits<double>::infinity();
  for (const auto& v : f->values) out = how == OverGpus::sum ? out + v.value : std::max(out, v.value);
  return out;
}

void append_number(std::string& out, double value) {
  if (std::isfinite(value))
    out += format_value(value);
  else
    out += "null";
}

void append_string(std::string& out, std::string_view text) {
  out += nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

double system_clock_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

// A dashboard polling every second would otherwise be most of the traffic the charts show.
bool monitoring_route(std::string_view route) {
  return route == "/metrics" || route == "/health" || route == "/api/metrics/history" ||
         route == "/api/alerts" || route.starts_with("/dashboard") || route == "/" ||
         route.starts_with("/chat/");
}

const std::vector<std::string_view>& role_series(std::string_view role) {
  namespace s = series;
  // clang-format off
  static const std::vector<std::string_view> serve = {
      s::requests_per_s, s::errors_per_s, s::error_ratio, s::output_tokens_per_s, s::prompt_tokens_per_s,
      s::ttft_p50_s, s::ttft_p99_s, s::itl_p50_s, s::itl_p99_s, s::e2e_p50_s, s::e2e_p99_s,
      s::requests_running, s::requests_waiting, s::queue_full_ratio, s::slots_total, s::kv_cache_usage_ratio,
      s::prefix_cache_hit_ratio, s::process_rss_bytes, s::memory_total_bytes, s::memory_available_bytes,
      s::memory_used_ratio, s::gpu_utilization_ratio, s::gpu_memory_used_bytes, s::gpu_memory_total_bytes,
      s::gpu_gtt_used_bytes, s::gpu_gtt_total_bytes, s::gpu_temperature_c, s::gpu_power_w,
      s::tls_cert_days_left};
  static const std::vector<std::string_view> gateway = {
      s::requests_per_s, s::errors_per_s, s::error_ratio, s::output_tokens_per_s, s::prompt_tokens_per_s,
      s::e2e_p50_s, s::e2e_p99_s, s::requests_in_flight, s::queue_length, s::queue_full_ratio,
      s::upstreams_down, s::process_rss_bytes, s::memory_total_bytes, s::memory_available_bytes,
      s::memory_used_ratio, s::tls_cert_days_left};
  // clang-format on
  return role == "gateway" ? gateway : serve;
}

struct History::Reading {
  double time = 0;
  std::optional<double> requests, errors;  // answered requests (monitoring aside), and those with a 5xx
  std::optional<double> output_tokens, prompt_tokens, cache_queries, cache_hits;
  HistogramTotals ttft, itl, e2e;
  struct Upstream {
    std::optional<double> requests, errors;
    HistogramTotals latency;
  };
  std::vector<Upstream> upstreams;  // in Options::upstreams order
};

History::History(const Registry& registry, Options options)
    : registry_(registry), options_(std::move(options)), series_(role_series(options_.role)) {
  if (!(options_.interval_s > 0)) options_.interval_s = 5;
  if (!(options_.retention_s >= options_.interval_s)) options_.retention_s = options_.interval_s;
  if (!(options_.window_s > 0)) options_.window_s = 60;
  // Bounded whatever the options: a day at 1 s at most.
  capacity_ = std::min<std::size_t>(
      86'400, static_cast<std::size_t>(std::ceil(options_.retention_s / options_.interval_s - 1e-9)));
  capacity_ = std::max<std::size_t>(capacity_, 1);
  const std::size_t width = series_.size() + options_.upstreams.size() * upstream_series.size();
  // Allocated (and touched) once: an idle node's memory does not grow as the ring fills.
  times_.assign(capacity_, absent);
  values_.assign(capacity_ * width, absent);
  states_.assign(capacity_ * options_.upstreams.size(), 0);
  readings_.reserve(static_cast<std::size_t>(options_.window_s / options_.interval_s) + 4);
  readings_.push_back(read(registry_.snapshot(), now()));
}

History::~History() {
  stop();
}

double History::now() const {
  return options_.clock ? options_.clock() : system_clock_now();
}

void History::start() {
  std::lock_guard lock(thread_mutex_);
  if (thread_.joinable()) return;
  thread_ = std::jthread([this](std::stop_token stop) { run(std::move(stop)); });
}

void History::stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  wake_.notify_all();
  thread_.join();
}

void History::run(std::stop_token stop) {
  pthread_setname_np(pthread_self(), "clawbot-history");  // (15 characters at most) for top -H and perf
  using SteadyClock = std::chrono::steady_clock;
  const auto interval =
      std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(options_.interval_s));
  auto next = SteadyClock::now() + interval;
  bool warned = false;
  std::unique_lock lock(thread_mutex_);
  while (!stop.stop_requested()) {
    wake_.wait_until(lock, stop, next, [] { return false; });
    if (stop.stop_requested()) break;
    lock.unlock();
    try {
      sample_now();
    } catch (const std::exception& e) {
      if (!warned) spdlog::warn("metrics history: a sample failed: {}", e.what());
      warned = true;
    }
    lock.lock();
    next += interval;
    if (const auto t = SteadyClock::now(); next <= t) next = t + interval;  // fell behind: no burst
  }
}

History::Reading History::read(const MetricsSnapshot& snap, double time) const {
  const bool gateway = options_.role == "gateway";
  Reading r;
  r.time = time;
  const std::string_view requests_family =
      gateway ? "clawbot_gateway_requests_total" : "clawbot_http_requests_total";
  // Families made at the first request count from 0 before it.
  r.requests = sum_of(snap, requests_family, [](const Labels& l) {
                 const std::string* route = label_value(l, "route");
                 return !(route && monitoring_route(*route)) && status_of(l) != 499;
               }).value_or(0);
  r.errors = sum_of(snap, requests_family, [](const Labels& l) {
               const std::string* route = label_value(l, "route");
               return !(route && monitoring_route(*route)) && status_of(l) >= 500;
             }).value_or(0);
  if (gateway) {
    r.output_tokens = sum_of(snap, "clawbot_gateway_generation_tokens_total");
    r.prompt_tokens = sum_of(snap, "clawbot_gateway_prompt_tokens_total");
    r.e2e = histogram_of(snap, "clawbot_gateway_upstream_request_duration_seconds");
    for (const auto& name : options_.upstreams) {
      Reading::Upstream u;
      u.requests = sum_of(snap, "clawbot_gateway_upstream_requests_total", [&](const Labels& l) {
                     return has_label(l, "upstream", name);
                   }).value_or(0);
      // Failures (unreachable, cut off, 5xx) but not a busy node's 503: it is full, not failing.
      const double failures = sum_of(snap, "clawbot_gateway_upstream_errors_total", [&](const Labels& l) {
                                return has_label(l, "upstream", name) && !has_label(l, "kind", "status_503");
                              }).value_or(0);
      const double answered_5xx =
          sum_of(snap, "clawbot_gateway_upstream_requests_total", [&](const Labels& l) {
            return has_label(l, "upstream", name) && status_of(l) >= 500;
          }).value_or(0);
      u.errors = failures + answered_5xx;
      u.latency = histogram_of(snap, "clawbot_gateway_upstream_request_duration_seconds", &name);
      r.upstreams.push_back(std::move(u));
    }
  } else {
    r.output_tokens = sum_of(snap, "clawbot_generation_tokens_total");
    r.prompt_tokens = sum_of(snap, "clawbot_prompt_tokens_total");
    r.cache_queries = sum_of(snap, "clawbot_prefix_cache_queries_total");
    r.cache_hits = sum_of(snap, "clawbot_prefix_cache_hits_total");
    r.ttft = histogram_of(snap, "clawbot_time_to_first_token_seconds");
    r.itl = histogram_of(snap, "clawbot_inter_token_latency_seconds");
    r.e2e = histogram_of(snap, "clawbot_e2e_request_latency_seconds");
  }
  return r;
}

// From the newest reading (readings_.back()), the one before it (rates) and the oldest of the window.
Sample History::derive(const MetricsSnapshot& snap) const {
  namespace s = series;
  const Reading& now = readings_.back();
  const Reading* prev = readings_.size() >= 2 ? &readings_[readings_.size() - 2] : nullptr;
  const Reading* base = readings_.size() >= 2 ? &readings_.front() : nullptr;
  const double dt = prev ? now.time - prev->time : 0;
  Sample sample;
  sample.time = now.time;
  const auto per_s = [&](auto member) { return prev ? rate(now.*member, prev->*member, dt) : std::nullopt; };
  put(sample, s::requests_per_s, per_s(&Reading::requests));
  put(sample, s::errors_per_s, per_s(&Reading::errors));
  put(sample, s::output_tokens_per_s, per_s(&Reading::output_tokens));
  put(sample, s::prompt_tokens_per_s, per_s(&Reading::prompt_tokens));
  if (base) put(sample, s::error_ratio, ratio(now.errors, base->errors, now.requests, base->requests));
  put(sample, s::e2e_p50_s, window_quantile(0.5, now.e2e, base ? &base->e2e : nullptr));
  put(sample, s::e2e_p99_s, window_quantile(0.99, now.e2e, base ? &base->e2e : nullptr));

  const double total = system_memory_total_bytes();
  const double available = system_memory_available_bytes();
  put(sample, s::process_rss_bytes, process_rss_bytes());
  if (total > 0) {
    put(sample, s::memory_total_bytes, total);
    put(sample, s::memory_available_bytes, available);
    put(sample, s::memory_used_ratio, std::clamp(1.0 - available / total, 0.0, 1.0));
  }
  if (options_.tls_not_after)
    put(sample, s::tls_cert_days_left, (*options_.tls_not_after - now.time) / 86'400);

  const auto ratio_of_capacity = [&](std::optional<double> waiting) -> std::optional<double> {
    if (!waiting || options_.queue_capacity == 0) return std::nullopt;
    return *waiting / static_cast<double>(options_.queue_capacity);
  };
  if (options_.role == "gateway") {
    put(sample, s::requests_in_flight, sum_of(snap, "clawbot_gateway_requests_in_flight"));
    const auto waiting = sum_of(snap, "clawbot_gateway_queue_length");
    put(sample, s::queue_length, waiting);
    put(sample, s::queue_full_ratio, ratio_of_capacity(waiting));
    double down = 0;
    for (std::size_t i = 0; i < options_.upstreams.size(); ++i) {
      const std::string& name = options_.upstreams[i];
      Sample::Upstream u;
      const auto in_state = [&](std::string_view state) {
        return sum_of(snap, "clawbot_gateway_upstream_state", [&](const Labels& l) {
                 return has_label(l, "upstream", name) && has_label(l, "state", state);
               }).value_or(0) > 0;
      };
      const bool serving = sum_of(snap, "clawbot_gateway_upstream_up", [&](const Labels& l) {
                             return has_label(l, "upstream", name);
                           }).value_or(0) > 0;
      if (in_state("down"))
        u.state = "down";
      else if (in_state("open") || in_state("half_open"))
        u.state = "open";
      else if (in_state("up"))
        u.state = serving ? "healthy" : "standby";
      if (u.state == "down" || u.state == "open") ++down;
      const auto& un = now.upstreams[i];
      if (prev) {
        put(u, s::upstream_requests_per_s, rate(un.requests, prev->upstreams[i].requests, dt));
        put(u, s::upstream_errors_per_s, rate(un.errors, prev->upstreams[i].errors, dt));
      }
      put(u, s::upstream_e2e_p99_s,
          window_quantile(0.99, un.latency, base ? &base->upstreams[i].latency : nullptr));
      put(u, s::upstream_in_flight, sum_of(snap, "clawbot_gateway_upstream_in_flight", [&](const Labels& l) {
            return has_label(l, "upstream", name);
          }));
      sample.upstreams.emplace(name, std::move(u));
    }
    if (!options_.upstreams.empty()) put(sample, s::upstreams_down, down);
    return sample;
  }

  put(sample, s::ttft_p50_s, window_quantile(0.5, now.ttft, base ? &base->ttft : nullptr));
  put(sample, s::ttft_p99_s, window_quantile(0.99, now.ttft, base ? &base->ttft : nullptr));
  put(sample, s::itl_p50_s, window_quantile(0.5, now.itl, base ? &base->itl : nullptr));
  put(sample, s::itl_p99_s, window_quantile(0.99, now.itl, base ? &base->itl : nullptr));
  if (base)
    put(sample, s::prefix_cache_hit_ratio,
        ratio(now.cache_hits, base->cache_hits, now.cache_queries, base->cache_queries));
  put(sample, s::requests_running, sum_of(snap, "clawbot_num_requests_running"));
  const auto waiting = sum_of(snap, "clawbot_num_requests_waiting");
  put(sample, s::requests_waiting, waiting);
  put(sample, s::queue_full_ratio, ratio_of_capacity(waiting));
  put(sample, s::slots_total, sum_of(snap, "clawbot_slots"));
  put(sample, s::kv_cache_usage_ratio, sum_of(snap, "clawbot_kv_cache_usage_perc"));
  put(sample, s::gpu_utilization_ratio, gpu_value(snap, "clawbot_gpu_utilization_ratio", OverGpus::first));
  put(sample, s::gpu_memory_used_bytes, gpu_value(snap, "clawbot_gpu_memory_used_bytes", OverGpus::sum));
  put(sample, s::gpu_memory_total_bytes, gpu_value(snap, "clawbot_gpu_memory_total_bytes", OverGpus::sum));
  put(sample, s::gpu_gtt_used_bytes, gpu_value(snap, "clawbot_gpu_gtt_used_bytes", OverGpus::sum));
  put(sample, s::gpu_gtt_total_bytes, gpu_value(snap, "clawbot_gpu_gtt_total_bytes", OverGpus::sum));
  put(sample, s::gpu_temperature_c, gpu_value(snap, "clawbot_gpu_temperature_celsius", OverGpus::max));
  put(sample, s::gpu_power_w, gpu_value(snap, "clawbot_gpu_power_watts", OverGpus::sum));
  return sample;
}

Sample History::sample_now() {
  return sample_now(now());
}

Sample History::sample_now(double time) {
  std::lock_guard lock(sample_mutex_);
  const MetricsSnapshot snap = registry_.snapshot();
  readings_.push_back(read(snap, time));
  // Keep the newest reading at or before the window's start (the base of its deltas), and the ones after.
  const double tolerance = options_.interval_s / 4;
  while (readings_.size() > 2 && readings_[1].time <= time - options_.window_s + tolerance)
    readings_.erase(readings_.begin());
  Sample sample = derive(snap);

  std::vector<KeyUsage> keys;
  if (const auto* requests = snap.find("clawbot_gateway_key_requests_total")) {
    for (const auto& v : requests->values) {
      const std::string* id = label_value(v.labels, "key");
      if (id == nullptr) continue;
      KeyUsage usage;
      usage.id = *id;
      if (const std::string* name = label_value(v.labels, "name")) usage.name = *name;
      usage.requests = v.value;
      const auto of_key = [&](const Labels& l) { return has_label(l, "key", *id); };
      usage.prompt_tokens = sum_of(snap, "clawbot_gateway_key_prompt_tokens_total", of_key).value_or(0);
      usage.completion_tokens =
          sum_of(snap, "clawbot_gateway_key_completion_tokens_total", of_key).value_or(0);
      keys.push_back(std::move(usage));
    }
    std::sort(keys.begin(), keys.end(), [](const KeyUsage& a, const KeyUsage& b) { return a.id < b.id; });
  }
  store(sample, std::move(keys));

  std::vector<std::function<void(const Sample&)>> listeners;
  {
    std::lock_guard listeners_lock(listeners_mutex_);
    listeners = listeners_;
  }
  for (const auto& listener : listeners) listener(sample);
  return sample;
}

void History::store(const Sample& sample, std::vector<KeyUsage> keys) {
  std::lock_guard lock(data_mutex_);
  const std::size_t width = series_.size() + options_.upstreams.size() * upstream_series.size();
  const std::size_t row = head_;
  times_[row] = sample.time;
  double* values = values_.data() + row * width;
  for (std::size_t s = 0; s < series_.size(); ++s) {
    const auto it = sample.values.find(series_[s]);
    values[s] = it == sample.values.end() ? absent : it->second;
  }
  for (std::size_t u = 0; u < options_.upstreams.size(); ++u) {
    const auto found = sample.upstreams.find(options_.upstreams[u]);
    double* column = values + series_.size() + u * upstream_series.size();
    for (std::size_t k = 0; k < upstream_series.size(); ++k) {
      if (found == sample.upstreams.end()) {
        column[k] = absent;
        continue;
      }
      const auto it = found->second.values.find(upstream_series[k]);
      column[k] = it == found->second.values.end() ? absent : it->second;
    }
    states_[row * options_.upstreams.size() + u] =
        found == sample.upstreams.end() ? std::uint8_t{0} : state_code(found->second.state);
  }
  head_ = (head_ + 1) % capacity_;
  count_ = std::min(count_ + 1, capacity_);
  keys_ = std::move(keys);
}

Sample History::sample_at(std::size_t row) const {
  const std::size_t width = series_.size() + options_.upstreams.size() * upstream_series.size();
  Sample sample;
  sample.time = times_[row];
  const double* values = values_.data() + row * width;
  for (std::size_t s = 0; s < series_.size(); ++s)
    if (!std::isnan(values[s])) sample.values.emplace(std::string(series_[s]), values[s]);
  for (std::size_t u = 0; u < options_.upstreams.size(); ++u) {
    Sample::Upstream upstream;
    upstream.state = state_names[states_[row * options_.upstreams.size() + u]];
    const double* column = values + series_.size() + u * upstream_series.size();
    for (std::size_t k = 0; k < upstream_series.size(); ++k)
      if (!std::isnan(column[k])) upstream.values.emplace(std::string(upstream_series[k]), column[k]);
    sample.upstreams.emplace(options_.upstreams[u], std::move(upstream));
  }
  return sample;
}

std::size_t History::size() const {
  std::lock_guard lock(data_mutex_);
  return count_;
}

std::vector<Sample> History::samples(double since) const {
  std::lock_guard lock(data_mutex_);
  std::vector<Sample> out;
  for (std::size_t i = 0; i < count_; ++i) {
    const std::size_t row = (head_ + capacity_ - count_ + i) % capacity_;
    if (times_[row] > since) out.push_back(sample_at(row));
  }
  return out;
}

std::optional<Sample> History::latest() const {
  std::lock_guard lock(data_mutex_);
  if (count_ == 0) return std::nullopt;
  return sample_at((head_ + capacity_ - 1) % capacity_);
}

void History::add_listener(std::function<void(const Sample&)> listener) {
  std::lock_guard lock(listeners_mutex_);
  listeners_.push_back(std::move(listener));
}

void History::set_thresholds(std::map<std::string, double, std::less<>> thresholds) {
  std::lock_guard lock(data_mutex_);
  thresholds_ = std::move(thresholds);
}

std::string History::json(std::optional<double> since) const {
  const bool gateway = options_.role == "gateway";
  const std::size_t width = series_.size() + options_.upstreams.size() * upstream_series.size();
  std::string out;
  out += "{\"role\":";
  append_string(out, options_.role);
  out += ",\"interval_s\":";
  append_number(out, options_.interval_s);
  out += ",\"retention_s\":";
  append_number(out, options_.retention_s);
  out += ",\"now\":";
  append_number(out, now());

  std::lock_guard lock(data_mutex_);
  std::vector<std::size_t> rows;  // oldest first, after `since`
  rows.reserve(count_);
  for (std::size_t i = 0; i < count_; ++i) {
    const std::size_t row = (head_ + capacity_ - count_ + i) % capacity_;
    if (!since || times_[row] > *since) rows.push_back(row);
  }
  out.reserve(out.size() + 64 + rows.size() * (width + 1) * 12);
  const auto column = [&](std::size_t offset) {
    out += '[';
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (i) out += ',';
      append_number(out, values_[rows[i] * width + offset]);
    }
    out += ']';
  };
  out += ",\"t\":[";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (i) out += ',';
    append_number(out, times_[rows[i]]);
  }
  out += "],\"series\":{";
  for (std::size_t s = 0; s < series_.size(); ++s) {
    if (s) out += ',';
    append_string(out, series_[s]);
    out += ':';
    column(s);
  }
  out += '}';
  if (gateway) {
    out += ",\"upstreams\":{";
    for (std::size_t u = 0; u < options_.upstreams.size(); ++u) {
      if (u) out += ',';
      append_string(out, options_.upstreams[u]);
      out += ":{\"state\":[";
      for (std::size_t i = 0; i < rows.size(); ++i) {
        if (i) out += ',';
        const std::uint8_t state = states_[rows[i] * options_.upstreams.size() + u];
        if (state == 0)
          out += "null";
        else
          append_string(out, state_names[state]);
      }
      out += "],\"series\":{";
      for (std::size_t k = 0; k < upstream_series.size(); ++k) {
        if (k) out += ',';
        append_string(out, upstream_series[k]);
        out += ':';
        column(series_.size() + u * upstream_series.size() + k);
      }
      out += "}}";
    }
    out += "},\"keys\":[";
    for (std::size_t k = 0; k < keys_.size(); ++k) {
      if (k) out += ',';
      out += "{\"id\":";
      append_string(out, keys_[k].id);
      out += ",\"name\":";
      append_string(out, keys_[k].name);
      out += ",\"requests\":";
      append_number(out, keys_[k].requests);
      out += ",\"prompt_tokens\":";
      append_number(out, keys_[k].prompt_tokens);
      out += ",\"completion_tokens\":";
      append_number(out, keys_[k].completion_tokens);
      out += '}';
    }
    out += ']';
  }
  out += ",\"thresholds\":{";
  bool first = true;
  for (const auto& [name, value] : thresholds_) {
    if (!first) out += ',';
    first = false;
    append_string(out, name);
    out += ':';
    append_number(out, value);
  }
  out += "}}";
  return out;
}

std::optional<double> history_since(std::string_view target) {
  const auto value = http::query_param(target, "since");
  if (!value) return std::nullopt;
  const std::string_view text = *value;
  double since = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), since);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !std::isfinite(since)) {
    std::string shown(text.substr(0, 64));
    for (char& c : shown)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    throw_invalid("'since' must be a time in unix seconds, such as 1764763200.5; got '" + shown +
                      (text.size() > 64 ? "...'" : "'"),
                  "since");
  }
  return since;
}

}  // namespace clawbot::monitor
