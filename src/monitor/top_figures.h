// What `clawbot top` shows, computed from successive scrapes of a node's or a gateway's /metrics: rates over
// the last interval (counters, with resets taken as restarts from 0), latency percentiles over a window of
// histogram bucket deltas (histogram_quantile, as Prometheus and the in-process history compute them).
// No terminal here: the figures and their text lines are unit-tested; top_cmd.cpp draws them with ncurses.
#pragma once

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "monitor/prom_text.h"

namespace clawbot::monitor::top {

struct GpuRow {
  std::string index, name, driver;
  std::optional<double> utilization_ratio, memory_used_bytes, memory_total_bytes, gtt_used_bytes,
      gtt_total_bytes, temperature_celsius, power_watts;
};

struct UpstreamRow {
  std::string name;
  std::string state;  // the state whose clawbot_gateway_upstream_state is 1: up, down, open, half_open ...
  std::optional<double> in_flight, requests_per_s, errors_per_s, latency_p50_s, latency_p99_s;
};

struct Figures {
  bool gateway = false;
  double rate_span_s = 0;        // rates: between the last two scrapes (0: only one so far)
  double percentile_span_s = 0;  // percentiles: over this many seconds of scrapes
  std::optional<double> output_tokens_per_s, prompt_tokens_per_s, requests_per_s;
  std::optional<double> ttft_p50_s, ttft_p99_s, itl_p50_s, itl_p99_s, e2e_p50_s, e2e_p99_s;
  std::optional<double> slots_busy, slots_total, waiting;  // gateway: requests in flight, queue length
  std::optional<double> kv_cache_ratio;
  std::optional<double> memory_total_bytes, memory_used_bytes, process_rss_bytes;
  bool gpu_probed = false;  // the server exports clawbot_gpus (it looks for GPUs)
  std::vector<GpuRow> gpus;
  std::vector<UpstreamRow> upstreams;
};

class Tracker {
 public:
  explicit Tracker(double window_s = 60) : window_s_(window_s) {}
  // A scrape taken at `time_s` (a steady clock, seconds); older ones than the window are let go.
  void add(prom::Scrape scrape, double time_s);
  bool empty() const noexcept { return scrapes_.empty(); }
  Figures figures() const;

 private:
  struct Taken {
    double time_s;
    prom::Scrape scrape;
  };
  double window_s_;
  std::deque<Taken> scrapes_;
};

// The screen as text, `width` columns: one entry per line, each a run of pieces in a style (the terminal
// gives each style its attribute). The memory bar is `[###....|..]` with the '|' at 90%, the alert line.
enum class Style { normal, title, label, good, warn, bad, dim };
struct Piece {
  std::string text;
  Style style = Style::normal;
};
using Line = std::vector<Piece>;

struct Status {
  std::string url{};
  double interval_s = 2;
  std::string clock{};    // local time of the last attempt, HH:MM:SS
  std::string problem{};  // empty: the last scrape worked; else "unreachable: ..." or "HTTP 401 ..."
};

std::vector<Line> render(const Figures& figures, const Status& status, int width);

// The memory bar alone (also for tests): `width` cells inside the brackets, `ratio` used 0..1.
std::string memory_bar(double ratio, int width);

}  // namespace clawbot::monitor::top
