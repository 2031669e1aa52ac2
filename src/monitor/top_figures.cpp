#include "monitor/top_figures.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>
#include <utility>

#include <fmt/format.h>

#include "monitor/metrics.h"

namespace clawbot::monitor::top {

namespace {

using prom::Labels;
using prom::Scrape;

// A counter's increase from `then` to `now`; a counter that went down was reset (the server restarted), so
// it counted from 0.
double increase(double then, double now) {
  return now >= then ? now - then : now;
}

std::optional<double> rate(const Scrape& then, const Scrape& now, double span_s, std::string_view name,
                           const Labels& match = {}) {
  const auto a = then.sum(name, match);
  const auto b = now.sum(name, match);
  if (!b || span_s <= 0) return std::nullopt;
  return increase(a.value_or(0), *b) / span_s;
}

// The summed bucket counts of a family's histogram series whose labels include `match`: nullopt when there
// are none, or their bounds differ.
struct Buckets {
  std::vector<double> bounds, cumulative;
  double count = 0;
};
std::optional<Buckets> summed(const Scrape& scrape, std::string_view family, const Labels& match) {
  const prom::Family* f = scrape.family(family);
  if (!f) return std::nullopt;
  std::optional<Buckets> out;
  for (const auto& h : prom::histograms(*f)) {
    bool included = true;
    for (const auto& m : match)
      included = included && std::find(h.labels.begin(), h.labels.end(), m) != h.labels.end();
    if (!included) continue;
    if (!out) {
      out = Buckets{h.upper_bounds, h.cumulative, h.count};
      continue;
    }
    if (out->bounds != h.upper_bounds) return std::nullopt;
    for (std::size_t i = 0; i < h.cumulative.size(); ++i) out->cumulative[i] += h.cumulative[i];
    out->count += h.count;
  }
  return out;
}

// The q-quantile of the observations made between `then` and `now`.
std::optional<double> quantile(double q, const Scrape& then, const Scrape& now, std::string_view family,
                               const Labels& match = {}) {
  auto b = summed(now, family, match);
  if (!b) return std::nullopt;
  const auto a = summed(then, family, match);
  // A reset (fewer observations than before) or changed buckets: the new counts alone.
  if (a && a->bounds == b->bounds && a->count <= b->count) {
    for (std::size_t i = 0; i < b->cumulative.size(); ++i)
      b->cumulative[i] = std::max(0.0, b->cumulative[i] - a->cumulative[i]);
    b->count -= a->count;
  }
  return histogram_quantile(q, b->bounds, b->cumulative, b->count);
}

std::vector<GpuRow> gpu_rows(const Scrape& s) {
  std::map<std::string, GpuRow> rows;  // by the gpu label
  const std::pair<const char*, std::optional<double> GpuRow::*> series[] = {
      {"clawbot_gpu_utilization_ratio", &GpuRow::utilization_ratio},
      {"clawbot_gpu_memory_used_bytes", &GpuRow::memory_used_bytes},
      {"clawbot_gpu_memory_total_bytes", &GpuRow::memory_total_bytes},
      {"clawbot_gpu_gtt_used_bytes", &GpuRow::gtt_used_bytes},
      {"clawbot_gpu_gtt_total_bytes", &GpuRow::gtt_total_bytes},
      {"clawbot_gpu_temperature_celsius", &GpuRow::temperature_celsius},
      {"clawbot_gpu_power_watts", &GpuRow::power_watts},
  };
  for (const auto& [name, member] : series) {
    const prom::Family* f = s.family(name);
    if (!f) continue;
    for (const auto& sample : f->samples) {
      const std::string* gpu = sample.label("gpu");
      if (!gpu || std::isnan(sample.value) || rows.size() > 64) continue;
      GpuRow& row = rows[*gpu];
      row.index = *gpu;
      if (const auto* n = sample.label("name")) row.name = *n;
      if (const auto* d = sample.label("driver")) row.driver = *d;
      row.*member = sample.value;
    }
  }
  std::vector<GpuRow> out;
  for (auto& [index, row] : rows) out.push_back(std::move(row));
  std::stable_sort(out.begin(), out.end(), [](const GpuRow& a, const GpuRow& b) {
    return a.index.size() != b.index.size() ? a.index.size() < b.index.size() : a.index < b.index;
  });
  return out;
}

std::vector<UpstreamRow> upstream_rows(const Scrape& then, const Scrape& now, double span_s, double window_s,
                                       const Scrape& oldest) {
  std::vector<UpstreamRow> rows;
  const prom::Family* up = now.family("clawbot_gateway_upstream_up");
  if (!up) return rows;
  for (const auto& sample : up->samples) {
    const std::string* name = sample.label("upstream");
    if (!name || rows.size() >= 256) continue;
    UpstreamRow row;
    row.name = *name;
    const Labels match{{"upstream", *name}};
    if (const prom::Family* states = now.family("clawbot_gateway_upstream_state")) {
      for (const auto& st : states->samples) {
        const std::string* who = st.label("upstream");
        const std::string* state = st.label("state");
        if (who && state && *who == *name && st.value == 1) row.state = *state;
      }
    }
    if (row.state.empty()) row.state = sample.value == 1 ? "up" : "down";
    row.in_flight = now.value("clawbot_gateway_upstream_in_flight", match);
    if (span_s > 0) {
      // (The gateway names an upstream in its request counters from its first answer on: none yet is 0.)
      row.requests_per_s =
          rate(then, now, span_s, "clawbot_gateway_upstream_requests_total", match).value_or(0);
      double errors = rate(then, now, span_s, "clawbot_gateway_upstream_errors_total", match).value_or(0);
      if (const prom::Family* answers = now.family("clawbot_gateway_upstream_requests_total")) {
        std::map<std::string, bool> statuses;  // the 5xx answers passed on
        for (const auto& a : answers->samples) {
          const std::string* who = a.label("upstream");
          const std::string* status = a.label("status");
          if (who && status && *who == *name && status->size() == 3 && (*status)[0] == '5')
            statuses[*status] = true;
        }
        for (const auto& [status, unused] : statuses)
          errors += rate(then, now, span_s, "clawbot_gateway_upstream_requests_total",
                         {{"upstream", *name}, {"status", status}})
                        .value_or(0);
      }
      row.errors_per_s = errors;
    }
    if (window_s > 0) {
      row.latency_p50_s =
          quantile(0.5, oldest, now, "clawbot_gateway_upstream_request_duration_seconds", match);
      row.latency_p99_s =
          quantile(0.99, oldest, now, "clawbot_gateway_upstream_request_duration_seconds", match);
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

void Tracker::add(prom::Scrape scrape, double time_s) {
  scrapes_.push_back({time_s, std::move(scrape)});
  while (scrapes_.size() > 2 && scrapes_[1].time_s <= time_s - window_s_) scrapes_.pop_front();
}

Figures Tracker::figures() const {
  Figures f;
  if (scrapes_.empty()) return f;
  const Scrape& now = scrapes_.back().scrape;
  const bool two = scrapes_.size() >= 2;
  const Scrape& then = two ? scrapes_[scrapes_.size() - 2].scrape : now;
  const Scrape& oldest = scrapes_.front().scrape;
  f.rate_span_s = two ? scrapes_.back().time_s - scrapes_[scrapes_.size() - 2].time_s : 0;
  f.percentile_span_s = two ? scrapes_.back().time_s - scrapes_.front().time_s : 0;
  const double span = f.rate_span_s;
  f.gateway = now.family("clawbot_gateway_requests_in_flight") != nullptr;

  // The same figures under each role's names.
  struct Names {
    const char *output_tokens, *prompt_tokens, *requests, *e2e;
  };
  static constexpr Names gateway_names{
      "clawbot_gateway_generation_tokens_total", "clawbot_gateway_prompt_tokens_total",
      "clawbot_gateway_upstream_requests_total", "clawbot_gateway_upstream_request_duration_seconds"};
  static constexpr Names node_names{"clawbot_generation_tokens_total", "clawbot_prompt_tokens_total",
                                    "clawbot_e2e_request_latency_seconds_count",
                                    "clawbot_e2e_request_latency_seconds"};
  const Names& names = f.gateway ? gateway_names : node_names;
  f.output_tokens_per_s = rate(then, now, span, names.output_tokens);
  f.prompt_tokens_per_s = rate(then, now, span, names.prompt_tokens);
  // (A node's latency histogram, and a gateway's request counters, appear with the first request: none yet
  // is 0 requests.)
  f.requests_per_s = rate(then, now, span, names.requests).value_or(0);
  const auto percentiles = [&](const char* family, std::optional<double>& p50, std::optional<double>& p99) {
    if (!two) return;  // a window needs two scrapes
    p50 = quantile(0.5, oldest, now, family);
    p99 = quantile(0.99, oldest, now, family);
  };
  percentiles(names.e2e, f.e2e_p50_s, f.e2e_p99_s);
  if (f.gateway) {
    f.slots_busy = now.value("clawbot_gateway_requests_in_flight");
    f.waiting = now.value("clawbot_gateway_queue_length");
    f.upstreams = upstream_rows(then, now, span, two ? f.percentile_span_s : 0, oldest);
  } else {
    percentiles("clawbot_time_to_first_token_seconds", f.ttft_p50_s, f.ttft_p99_s);
    percentiles("clawbot_inter_token_latency_seconds", f.itl_p50_s, f.itl_p99_s);
    f.slots_busy = now.value("clawbot_num_requests_running");
    f.slots_total = now.value("clawbot_slots");
    f.waiting = now.value("clawbot_num_requests_waiting");
    f.kv_cache_ratio = now.value("clawbot_kv_cache_usage_perc");
  }
  // A rate needs two scrapes; with one there is none yet (not 0).
  if (!two) f.output_tokens_per_s = f.prompt_tokens_per_s = f.requests_per_s = std::nullopt;
  f.memory_total_bytes = now.value("clawbot_system_memory_total_bytes");
  f.memory_used_bytes = now.value("clawbot_system_memory_used_bytes");
  f.process_rss_bytes = now.value("process_resident_memory_bytes");
  f.gpu_probed = now.family("clawbot_gpus") != nullptr;
  f.gpus = gpu_rows(now);
  return f;
}

// ------------------------------------------------------------------------------------------ the screen

namespace {

std::string seconds(const std::optional<double>& s) {
  if (!s || !std::isfinite(*s)) return "-";
  if (*s < 1) return fmt::format("{:.0f} ms", *s * 1000);
  return fmt::format("{:.2f} s", *s);
}

std::string bytes(double b) {
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.1f} GiB", b / (1024.0 * 1024 * 1024));
  return fmt::format("{:.0f} MiB", b / (1024.0 * 1024));
}

std::string number(const std::optional<double>& v, int decimals = 1) {
  if (!v || !std::isfinite(*v)) return "-";
  return fmt::format("{:.{}f}", *v, decimals);
}

std::string percent(double ratio) {
  return fmt::format("{:.0f}%", ratio * 100);
}

constexpr int kLabelWidth = 12;
constexpr double kMemoryAlertRatio = 0.9;  // the deployment guide's figure, the alert rule's default

Line labelled(std::string label, Line rest) {
  Line line{{fmt::format("{:<{}}", label, kLabelWidth), Style::label}};
  line.insert(line.end(), std::make_move_iterator(rest.begin()), std::make_move_iterator(rest.end()));
  return line;
}

}  // namespace

std::string memory_bar(double ratio, int width) {
  width = std::max(width, 10);
  ratio = std::clamp(std::isfinite(ratio) ? ratio : 0.0, 0.0, 1.0);
  const int filled = static_cast<int>(std::lround(ratio * width));
  const int mark = static_cast<int>(kMemoryAlertRatio * width);
  std::string bar = "[";
  for (int i = 0; i < width; ++i) bar += i == mark ? '|' : i < filled ? '#' : '.';
  return bar + "]";
}

std::vector<Line> render(const Figures& f, const Status& status, int width) {
  std::vector<Line> lines;
  lines.push_back({{"clawbot top", Style::title},
                   {fmt::format("  {}  ({})  every {:g} s  {}  q quits", status.url,
                                f.gateway ? "gateway" : "node", status.interval_s, status.clock),
                    Style::dim}});
  if (!status.problem.empty())
    lines.push_back({{status.problem, Style::bad},
                     {fmt::format("  (trying again every {:g} s)", status.interval_s), Style::dim}});
  else
    lines.push_back({});

  lines.push_back(labelled("tokens/s", {{"out ", Style::dim},
                                        {number(f.output_tokens_per_s), Style::normal},
                                        {"   prompt ", Style::dim},
                                        {number(f.prompt_tokens_per_s), Style::normal},
                                        {"   requests/s ", Style::dim},
                                        {number(f.requests_per_s, 2), Style::normal}}));
  const auto latency_style = [](const std::optional<double>& p99, double limit) {
    return p99 && *p99 > limit ? Style::warn : Style::normal;
  };
  const std::string window =
      f.percentile_span_s > 0 ? fmt::format("   (last {:.0f} s)", f.percentile_span_s) : "";
  if (f.gateway) {
    lines.push_back(labelled("latency", {{"e2e P50 ", Style::dim},
                                         {seconds(f.e2e_p50_s), Style::normal},
                                         {"  P99 ", Style::dim},
                                         {seconds(f.e2e_p99_s), Style::normal},
                                         {window, Style::dim}}));
    lines.push_back(labelled("requests", {{number(f.slots_busy, 0), Style::normal},
                                          {" in flight   queue ", Style::dim},
                                          {number(f.waiting, 0), Style::normal}}));
  } else {
    lines.push_back(labelled("latency", {{"TTFT P50 ", Style::dim},
                                         {seconds(f.ttft_p50_s), Style::normal},
                                         {" P99 ", Style::dim},
                                         {seconds(f.ttft_p99_s), latency_style(f.ttft_p99_s, 0.2)},
                                         {"   ITL P50 ", Style::dim},
                                         {seconds(f.itl_p50_s), Style::normal},
                                         {" P99 ", Style::dim},
                                         {seconds(f.itl_p99_s), Style::normal},
                                         {"   e2e P50 ", Style::dim},
                                         {seconds(f.e2e_p50_s), Style::normal},
                                         {" P99 ", Style::dim},
                                         {seconds(f.e2e_p99_s), Style::normal},
                                         {window, Style::dim}}));
    const bool full = f.slots_busy && f.slots_total && *f.slots_busy >= *f.slots_total && *f.slots_total > 0;
    lines.push_back(
        labelled("slots", {{fmt::format("{}/{} busy", number(f.slots_busy, 0), number(f.slots_total, 0)),
                            full ? Style::warn : Style::normal},
                           {"   queue ", Style::dim},
                           {number(f.waiting, 0), f.waiting && *f.waiting > 0 ? Style::warn : Style::normal},
                           {"   KV cache ", Style::dim},
                           {f.kv_cache_ratio ? percent(*f.kv_cache_ratio) : "-", Style::normal}}));
  }

  const std::string rss = f.process_rss_bytes ? "process " + bytes(*f.process_rss_bytes) : "";
  if (f.memory_total_bytes && f.memory_used_bytes && *f.memory_total_bytes > 0) {
    const double ratio = *f.memory_used_bytes / *f.memory_total_bytes;
    const int bar_width = std::clamp(width - kLabelWidth - 60, 10, 50);
    lines.push_back(labelled(
        "memory", {{memory_bar(ratio, bar_width), ratio >= kMemoryAlertRatio ? Style::bad : Style::good},
                   {fmt::format(" {} of {} used", percent(ratio), bytes(*f.memory_total_bytes)),
                    ratio >= kMemoryAlertRatio ? Style::bad : Style::normal},
                   {" (| alert at 90%)   " + rss, Style::dim}}));
  } else {
    lines.push_back(labelled("memory", {{rss.empty() ? "-" : rss, Style::normal}}));
  }

  if (f.gpus.empty()) {
    lines.push_back(labelled("GPU", {{"no GPU", Style::dim}}));
  }
  for (const auto& g : f.gpus) {
    Line rest{{g.name + (g.driver.empty() ? "" : " (" + g.driver + ")"), Style::normal}};
    if (g.utilization_ratio) rest.push_back({"  busy " + percent(*g.utilization_ratio), Style::normal});
    if (g.memory_used_bytes && g.memory_total_bytes)
      rest.push_back(
          {"  mem " + bytes(*g.memory_used_bytes) + " / " + bytes(*g.memory_total_bytes), Style::normal});
    if (g.gtt_used_bytes && g.gtt_total_bytes)
      rest.push_back(
          {"  GTT " + bytes(*g.gtt_used_bytes) + " / " + bytes(*g.gtt_total_bytes), Style::normal});
    if (g.temperature_celsius)
      rest.push_back({fmt::format("  {:.0f} C", *g.temperature_celsius), Style::normal});
    if (g.power_watts) rest.push_back({fmt::format("  {:.0f} W", *g.power_watts), Style::normal});
    lines.push_back(labelled("GPU " + g.index, std::move(rest)));
  }

  if (f.gateway) {
    lines.push_back({});
    lines.push_back({{fmt::format("{:<24} {:<10} {:>9} {:>8} {:>9} {:>9} {:>9}", "upstream", "state",
                                  "in flight", "req/s", "errors/s", "P50", "P99"),
                      Style::title}});
    if (f.upstreams.empty()) lines.push_back({{"(no upstreams reported)", Style::dim}});
    for (const auto& u : f.upstreams) {
      const Style state_style = u.state == "up"          ? Style::good
                                : u.state == "half_open" ? Style::warn
                                                         : Style::bad;
      const std::string name = u.name.size() > 24 ? u.name.substr(0, 23) + "~" : u.name;
      lines.push_back(
          {{fmt::format("{:<24} ", name), Style::normal},
           {fmt::format("{:<10} ", u.state), state_style},
           {fmt::format("{:>9} {:>8} ", number(u.in_flight, 0), number(u.requests_per_s, 2)), Style::normal},
           {fmt::format("{:>9} ", number(u.errors_per_s, 2)),
            u.errors_per_s && *u.errors_per_s > 0 ? Style::bad : Style::normal},
           {fmt::format("{:>9} {:>9}", seconds(u.latency_p50_s), seconds(u.latency_p99_s)), Style::normal}});
    }
  }
  return lines;
}

}  // namespace clawbot::monitor::top
