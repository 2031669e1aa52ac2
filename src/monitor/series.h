// The names of the series the in-process history keeps, the alert rules read and the dashboard draws. One
// list, so that the sampler, the rules, /api/metrics/history and the page cannot drift apart.
//
// Units are in the name: _per_s (a rate over the sampling interval), _s (seconds), _bytes, _ratio (0..1).
// Percentiles (_p50_s, _p99_s) are computed as Prometheus' histogram_quantile() computes them over the last
// 60 s of histogram bucket deltas (linear interpolation inside a bucket), so the in-process alerts and the
// rules in deploy/ agree. A value that cannot be known (no requests in the window, no GPU) is absent, never
// 0.
#pragma once

#include <string_view>

namespace clawbot::monitor::series {

// Both roles (serve and gateway)
inline constexpr std::string_view requests_per_s = "requests_per_s";  // answered requests
inline constexpr std::string_view errors_per_s = "errors_per_s";      // answered with a 5xx
inline constexpr std::string_view error_ratio = "error_ratio";        // 5xx / answered, last 60 s
inline constexpr std::string_view output_tokens_per_s = "output_tokens_per_s";
inline constexpr std::string_view prompt_tokens_per_s = "prompt_tokens_per_s";
inline constexpr std::string_view e2e_p50_s = "e2e_p50_s";
inline constexpr std::string_view e2e_p99_s = "e2e_p99_s";
inline constexpr std::string_view process_rss_bytes = "process_rss_bytes";
inline constexpr std::string_view memory_total_bytes = "memory_total_bytes";
inline constexpr std::string_view memory_available_bytes = "memory_available_bytes";
inline constexpr std::string_view memory_used_ratio = "memory_used_ratio";    // 1 - available/total
inline constexpr std::string_view tls_cert_days_left = "tls_cert_days_left";  // only when serving TLS

// serve
inline constexpr std::string_view ttft_p50_s = "ttft_p50_s";
inline constexpr std::string_view ttft_p99_s = "ttft_p99_s";
inline constexpr std::string_view itl_p50_s = "itl_p50_s";
inline constexpr std::string_view itl_p99_s = "itl_p99_s";
inline constexpr std::string_view requests_running = "requests_running";
inline constexpr std::string_view requests_waiting = "requests_waiting";
inline constexpr std::string_view queue_full_ratio = "queue_full_ratio";  // waiting / queue capacity
inline constexpr std::string_view slots_total = "slots_total";
inline constexpr std::string_view kv_cache_usage_ratio = "kv_cache_usage_ratio";
inline constexpr std::string_view prefix_cache_hit_ratio = "prefix_cache_hit_ratio";  // last 60 s
inline constexpr std::string_view gpu_utilization_ratio = "gpu_utilization_ratio";    // first GPU
inline constexpr std::string_view gpu_memory_used_bytes = "gpu_memory_used_bytes";    // VRAM, all GPUs
inline constexpr std::string_view gpu_memory_total_bytes = "gpu_memory_total_bytes";
inline constexpr std::string_view gpu_gtt_used_bytes = "gpu_gtt_used_bytes";  // AMD: system RAM the GPU maps
inline constexpr std::string_view gpu_gtt_total_bytes = "gpu_gtt_total_bytes";
inline constexpr std::string_view gpu_temperature_c = "gpu_temperature_c";
inline constexpr std::string_view gpu_power_w = "gpu_power_w";

// gateway
inline constexpr std::string_view requests_in_flight = "requests_in_flight";
inline constexpr std::string_view queue_length = "queue_length";
inline constexpr std::string_view upstreams_down =
    "upstreams_down";  // upstreams not healthy (circuit open/down)
// Per upstream (kept under "upstreams" in the history, labelled by the upstream's name):
inline constexpr std::string_view upstream_requests_per_s = "requests_per_s";
inline constexpr std::string_view upstream_errors_per_s = "errors_per_s";
inline constexpr std::string_view upstream_e2e_p99_s = "e2e_p99_s";
inline constexpr std::string_view upstream_in_flight = "in_flight";

}  // namespace clawbot::monitor::series
