// The in-process metrics history: serve and gateway sample their own Registry every few seconds into a ring
// buffer (the last hour at 5 s by default, memory fixed at construction, nothing on disk), so a dashboard
// opened now shows the last hour, and the alert rules read the same samples.
//
// CONTRACT (issue 20). The JSON of GET /api/metrics/history?since=<unix seconds, optional>:
//   {
//     "role": "serve" | "gateway",
//     "interval_s": 5, "retention_s": 3600,
//     "now": 1764763200.5,                       // unix seconds, the server's clock
//     "t": [1764763195.0, ...],                  // sample times (unix s), ascending, each > since
//     "series": { "<series::name>": [number | null, ...] },   // every array as long as "t"
//     "upstreams": { "<name>": { "state": ["healthy" | "open" | "standby" | "down", ...],
//                                "series": { "<series::upstream_*>": [...] } } },   // gateway only
//     "keys": [ { "id", "name", "requests", "prompt_tokens", "completion_tokens" } ],   // gateway only
//     "thresholds": { "<series name>": number }  // from the alert rules (the 90% memory line, 0.2 s TTFT)
//   }
// Every series of the role is listed, whether or not it was ever known (all null then: no GPU, no TLS). On
// the gateway the route is behind the same keys as every route. A `since` that is not a number is a 400
// naming it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace clawbot::monitor {

class Registry;
struct MetricsSnapshot;

// One sampling instant. A series that cannot be known at that instant is absent from `values`.
struct Sample {
  double time = 0;  // unix seconds
  std::map<std::string, double, std::less<>> values;
  struct Upstream {
    std::string state;  // healthy | open | standby | down
    std::map<std::string, double, std::less<>> values;
  };
  std::map<std::string, Upstream, std::less<>> upstreams;  // gateway only
};

// The routes that watch a node or gateway rather than use it (/metrics, /health, the pages (chat, dashboard)
// and polls): not the traffic the charts show, not worth an audit record or an info-level access-log line
// each.
bool monitoring_route(std::string_view route);

// The series a role keeps (series.h), in the order the JSON lists them.
const std::vector<std::string_view>& role_series(std::string_view role);

class History {
 public:
  struct Options {
    std::string role = "serve";  // serve | gateway
    double interval_s = 5;
    double retention_s = 3600;
    double window_s = 60;  // percentiles and ratios: over this many seconds of deltas
    // Requests that may wait (serve --queue-max, the gateway's queue.max_waiting): queue_full_ratio; 0: the
    // ratio is unknown.
    std::size_t queue_capacity = 0;
    std::vector<std::string> upstreams;   // gateway: the upstreams' names (their columns are made at once)
    std::optional<double> tls_not_after;  // unix seconds: the served certificate's end (tls_cert_days_left)
    std::function<double()> clock;        // unix seconds; empty: the system clock (tests pass their own)
  };

  // Takes a first reading of `registry` (the baseline of the first sample's rates); allocates the ring.
  History(const Registry& registry, Options options);
  ~History();
  History(const History&) = delete;
  History& operator=(const History&) = delete;

  // The sampler: a thread of its own that samples every interval (never the scheduler's nor an HTTP worker's
  // thread). stop() (and the destructor) ends it.
  void start();
  void stop();

  // Samples now (or at `time`: tests), keeps the sample, calls the listeners; returns it.
  Sample sample_now();
  Sample sample_now(double time);

  // Called on the sampler's thread after each sample (the alert rules evaluate there). Not while sampling.
  void add_listener(std::function<void(const Sample&)> listener);
  // The lines the dashboard draws ("thresholds" in the JSON): series name -> value.
  void set_thresholds(std::map<std::string, double, std::less<>> thresholds);

  // GET /api/metrics/history's body: the samples taken after `since` (all kept when none).
  std::string json(std::optional<double> since = std::nullopt) const;
  // The samples kept taken after `since`, oldest first.
  std::vector<Sample> samples(double since = 0) const;
  std::optional<Sample> latest() const;

  const Options& options() const noexcept { return options_; }
  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t size() const;
  double now() const;

 private:
  struct Reading;  // the cumulative figures of one snapshot
  struct KeyUsage {
    std::string id, name;
    double requests = 0, prompt_tokens = 0, completion_tokens = 0;
  };
  Reading read(const MetricsSnapshot& snap, double time) const;
  Sample derive(const MetricsSnapshot& snap) const;
  void store(const Sample& sample, std::vector<KeyUsage> keys);
  Sample sample_at(std::size_t index) const;  // under data_mutex_
  void run(std::stop_token stop);

  const Registry& registry_;
  Options options_;
  std::vector<std::string_view> series_;  // the role's
  std::size_t capacity_ = 0;

  std::mutex sample_mutex_;        // one sample at a time (the thread, or a test's sample_now)
  std::vector<Reading> readings_;  // the last window_s of readings (and one before), oldest first

  mutable std::mutex data_mutex_;
  std::vector<double> times_;         // capacity_
  std::vector<double> values_;        // capacity_ x (series + upstreams x upstream series); NaN: absent
  std::vector<std::uint8_t> states_;  // capacity_ x upstreams
  std::size_t head_ = 0;              // where the next sample goes
  std::size_t count_ = 0;             // samples kept
  std::map<std::string, double, std::less<>> thresholds_;
  std::vector<KeyUsage> keys_;  // gateway: the keys' usage at the last sample

  std::mutex listeners_mutex_;
  std::vector<std::function<void(const Sample&)>> listeners_;

  std::mutex thread_mutex_;
  std::condition_variable_any wake_;
  std::jthread thread_;
};

// The `since` of a GET /api/metrics/history request target ("/api/metrics/history?since=1764763200.5");
// nullopt when it has none. Throws ClawbotError invalid_request naming "since" when it is not a number.
std::optional<double> history_since(std::string_view target);

}  // namespace clawbot::monitor
