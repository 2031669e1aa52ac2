// `clawbot top`'s figures from successive scrapes (rates, windowed percentiles, resets), and its screen as
// text: the memory bar's 90% mark, "no GPU", the gateway's upstream table.
#include "monitor/top_figures.h"

#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace clawbot::monitor::top {
namespace {

prom::Scrape scrape(const std::string& text) {
  auto parsed = prom::parse(text);
  EXPECT_TRUE(parsed.scrape) << parsed.error;
  return parsed.scrape ? std::move(*parsed.scrape) : prom::Scrape{};
}

// A node's /metrics with `tokens` generated so far and a TTFT histogram of `fast` observations at or below
// 0.1 s and `slow` ones in (0.1, 0.2].
std::string node(double tokens, int fast, int slow, double used_bytes = 50e9) {
  return fmt::format(
      "# TYPE clawbot_generation_tokens_total counter\nclawbot_generation_tokens_total {}\n"
      "clawbot_prompt_tokens_total {}\n"
      "clawbot_num_requests_running 2\nclawbot_slots 4\nclawbot_num_requests_waiting 1\n"
      "clawbot_kv_cache_usage_perc 0.25\n"
      "clawbot_system_memory_total_bytes 100e9\nclawbot_system_memory_used_bytes {}\n"
      "process_resident_memory_bytes 2147483648\n"
      "# TYPE clawbot_time_to_first_token_seconds histogram\n"
      "clawbot_time_to_first_token_seconds_bucket{{le=\"0.1\"}} {}\n"
      "clawbot_time_to_first_token_seconds_bucket{{le=\"0.2\"}} {}\n"
      "clawbot_time_to_first_token_seconds_bucket{{le=\"+Inf\"}} {}\n"
      "clawbot_time_to_first_token_seconds_count {}\n"
      "# TYPE clawbot_e2e_request_latency_seconds histogram\n"
      "clawbot_e2e_request_latency_seconds_bucket{{le=\"1\"}} {}\n"
      "clawbot_e2e_request_latency_seconds_bucket{{le=\"+Inf\"}} {}\n"
      "clawbot_e2e_request_latency_seconds_count {}\n",
      tokens, tokens * 2, used_bytes, fast, fast + slow, fast + slow, fast + slow, fast + slow, fast + slow,
      fast + slow);
}

std::string text_of(const std::vector<Line>& lines) {
  std::string out;
  for (const auto& line : lines) {
    for (const auto& piece : line) out += piece.text;
    out += '\n';
  }
  return out;
}

TEST(TopFigures, RatesNeedTwoScrapes) {
  Tracker t;
  t.add(scrape(node(100, 10, 0)), 0);
  const auto one = t.figures();
  EXPECT_FALSE(one.gateway);
  EXPECT_FALSE(one.output_tokens_per_s);  // unknown yet, not 0
  EXPECT_FALSE(one.ttft_p99_s);
  EXPECT_EQ(*one.slots_busy, 2);
  EXPECT_EQ(*one.slots_total, 4);
  EXPECT_EQ(*one.waiting, 1);
  t.add(scrape(node(300, 10, 0)), 2);
  const auto two = t.figures();
  EXPECT_DOUBLE_EQ(*two.output_tokens_per_s, 100);
  EXPECT_DOUBLE_EQ(*two.prompt_tokens_per_s, 200);
  EXPECT_DOUBLE_EQ(*two.requests_per_s, 0);
  EXPECT_FALSE(two.ttft_p99_s);  // no request finished its first token in the window
  Tracker idle;                  // a node that has answered nothing yet has no latency histogram
  idle.add(scrape("clawbot_generation_tokens_total 0\n"), 0);
  idle.add(scrape("clawbot_generation_tokens_total 0\n"), 1);
  EXPECT_DOUBLE_EQ(*idle.figures().requests_per_s, 0);
}

TEST(TopFigures, PercentilesOverTheWindowOfBucketDeltas) {
  Tracker t(60);
  t.add(scrape(node(0, 1000, 0)), 0);  // what happened before top started does not count
  t.add(scrape(node(10, 1090, 10)), 1);
  const auto f = t.figures();
  // 100 new observations: 90 at or below 0.1 s, 10 in (0.1, 0.2].
  EXPECT_NEAR(*f.ttft_p50_s, 0.1 * 50 / 90, 1e-9);
  EXPECT_NEAR(*f.ttft_p99_s, 0.1 + 0.1 * 9 / 10, 1e-9);
  EXPECT_DOUBLE_EQ(f.percentile_span_s, 1);
  // Later scrapes inside the window still count the first delta; past the window it is let go.
  t.add(scrape(node(20, 1090, 10)), 30);
  EXPECT_NEAR(*t.figures().ttft_p99_s, 0.19, 1e-9);
  t.add(scrape(node(30, 1090, 10)), 62);
  EXPECT_FALSE(t.figures().ttft_p99_s);
}

TEST(TopFigures, ACounterThatGoesDownWasReset) {
  Tracker t;
  t.add(scrape(node(5000, 10, 0)), 0);
  t.add(scrape(node(40, 12, 0)), 2);  // the server restarted
  const auto f = t.figures();
  EXPECT_DOUBLE_EQ(*f.output_tokens_per_s, 20);
  EXPECT_NEAR(*f.ttft_p50_s, 0.05, 1e-9);  // the new counts alone: 12 at or below 0.1
}

TEST(TopScreen, MemoryBarWithTheNinetyPercentMark) {
  EXPECT_EQ(memory_bar(0.5, 20), "[##########........|.]");
  EXPECT_EQ(memory_bar(0.95, 20), "[##################|.]");
  EXPECT_EQ(memory_bar(1, 20), "[##################|#]");
  EXPECT_EQ(memory_bar(-1, 10), "[.........|]");
  Tracker t;
  t.add(scrape(node(0, 0, 0)), 0);
  t.add(scrape(node(100, 0, 0)), 1);
  const std::string screen = text_of(
      render(t.figures(), {.url = "http://127.0.0.1:5000", .interval_s = 1, .clock = "12:00:00"}, 120));
  EXPECT_NE(screen.find("out 100.0"), std::string::npos) << screen;
  EXPECT_NE(screen.find("2/4 busy"), std::string::npos) << screen;
  EXPECT_NE(screen.find("queue 1"), std::string::npos) << screen;
  EXPECT_NE(screen.find("KV cache 25%"), std::string::npos) << screen;
  // 120 columns: a bar of 48 cells, its mark at cell 43.
  EXPECT_NE(screen.find("memory      [" + std::string(24, '#') + std::string(19, '.') +
                        "|....] 50% of 93.1 GiB used"),
            std::string::npos)
      << screen;
  EXPECT_NE(screen.find("process 2.0 GiB"), std::string::npos) << screen;
  EXPECT_NE(screen.find("no GPU"), std::string::npos) << screen;
  EXPECT_EQ(screen.find("unreachable"), std::string::npos) << screen;
  const std::string down = text_of(render(t.figures(), {.url = "u", .problem = "unreachable: refused"}, 120));
  EXPECT_NE(down.find("unreachable: refused  (trying again every 2 s)"), std::string::npos) << down;
}

TEST(TopScreen, GpuRows) {
  Tracker t;
  t.add(scrape(
            "clawbot_gpus 1\n"
            "clawbot_gpu_utilization_ratio{gpu=\"0\",name=\"AMD Radeon 8060S\",driver=\"amdgpu\"} 0.37\n"
            "clawbot_gpu_gtt_used_bytes{gpu=\"0\",name=\"AMD Radeon 8060S\",driver=\"amdgpu\"} 10737418240\n"
            "clawbot_gpu_gtt_total_bytes{gpu=\"0\",name=\"AMD Radeon 8060S\",driver=\"amdgpu\"} 68719476736\n"
            "clawbot_gpu_temperature_celsius{gpu=\"0\",name=\"AMD Radeon 8060S\",driver=\"amdgpu\"} 51\n"),
        0);
  const auto f = t.figures();
  ASSERT_EQ(f.gpus.size(), 1u);
  const std::string screen = text_of(render(f, {.url = "u"}, 120));
  EXPECT_NE(screen.find("GPU 0       AMD Radeon 8060S (amdgpu)  busy 37%  GTT 10.0 GiB / 64.0 GiB  51 C"),
            std::string::npos)
      << screen;
  EXPECT_EQ(screen.find("no GPU"), std::string::npos) << screen;
}

std::string gateway(double a_ok, double a_5xx, double a_errors, double b_ok, int a_fast) {
  return fmt::format(
      "clawbot_gateway_requests_in_flight 3\nclawbot_gateway_queue_length 0\n"
      "clawbot_gateway_generation_tokens_total {}\n"
      "clawbot_gateway_upstream_in_flight{{upstream=\"node-a\"}} 2\n"
      "clawbot_gateway_upstream_in_flight{{upstream=\"node-b\"}} 0\n"
      "clawbot_gateway_upstream_up{{upstream=\"node-a\"}} "
      "1\nclawbot_gateway_upstream_up{{upstream=\"node-b\"}} 0\n"
      "clawbot_gateway_upstream_state{{upstream=\"node-a\",state=\"up\"}} 1\n"
      "clawbot_gateway_upstream_state{{upstream=\"node-a\",state=\"open\"}} 0\n"
      "clawbot_gateway_upstream_state{{upstream=\"node-b\",state=\"up\"}} 0\n"
      "clawbot_gateway_upstream_state{{upstream=\"node-b\",state=\"open\"}} 1\n"
      "clawbot_gateway_upstream_requests_total{{upstream=\"node-a\",status=\"200\"}} {}\n"
      "clawbot_gateway_upstream_requests_total{{upstream=\"node-a\",status=\"502\"}} {}\n"
      "clawbot_gateway_upstream_requests_total{{upstream=\"node-b\",status=\"200\"}} {}\n"
      "clawbot_gateway_upstream_errors_total{{upstream=\"node-a\",kind=\"connect_or_send\"}} {}\n"
      "# TYPE clawbot_gateway_upstream_request_duration_seconds histogram\n"
      "clawbot_gateway_upstream_request_duration_seconds_bucket{{upstream=\"node-a\",le=\"0.1\"}} {}\n"
      "clawbot_gateway_upstream_request_duration_seconds_bucket{{upstream=\"node-a\",le=\"+Inf\"}} {}\n"
      "clawbot_gateway_upstream_request_duration_seconds_bucket{{upstream=\"node-b\",le=\"0.1\"}} 0\n"
      "clawbot_gateway_upstream_request_duration_seconds_bucket{{upstream=\"node-b\",le=\"+Inf\"}} 0\n",
      (a_ok + b_ok) * 10, a_ok, a_5xx, b_ok, a_errors, a_fast, a_fast);
}

TEST(TopFigures, GatewayUpstreamTable) {
  Tracker t;
  t.add(scrape(gateway(10, 0, 0, 5, 10)), 0);
  t.add(scrape(gateway(20, 2, 4, 5, 30)), 2);
  const auto f = t.figures();
  ASSERT_TRUE(f.gateway);
  EXPECT_DOUBLE_EQ(*f.output_tokens_per_s, 50);
  EXPECT_DOUBLE_EQ(*f.requests_per_s, 6);
  EXPECT_EQ(*f.slots_busy, 3);
  ASSERT_EQ(f.upstreams.size(), 2u);
  const auto& a = f.upstreams[0];
  EXPECT_EQ(a.name, "node-a");
  EXPECT_EQ(a.state, "up");
  EXPECT_EQ(*a.in_flight, 2);
  EXPECT_DOUBLE_EQ(*a.requests_per_s, 6);
  EXPECT_DOUBLE_EQ(*a.errors_per_s, 3);  // 4 failures and 2 answers of 502 in 2 s
  EXPECT_NEAR(*a.latency_p50_s, 0.05, 1e-9);
  EXPECT_EQ(f.upstreams[1].state, "open");
  EXPECT_DOUBLE_EQ(*f.upstreams[1].requests_per_s, 0);
  EXPECT_FALSE(f.upstreams[1].latency_p99_s);
  const std::string screen = text_of(render(f, {.url = "u"}, 120));
  EXPECT_NE(
      screen.find("upstream                 state      in flight    req/s  errors/s       P50       P99"),
      std::string::npos)
      << screen;
  EXPECT_NE(
      screen.find("node-a                   up                 2     6.00      3.00     50 ms     99 ms"),
      std::string::npos)
      << screen;
  EXPECT_NE(
      screen.find("node-b                   open               0     0.00      0.00         -         -"),
      std::string::npos)
      << screen;
  EXPECT_NE(screen.find("3 in flight   queue 0"), std::string::npos) << screen;
}

}  // namespace
}  // namespace clawbot::monitor::top
