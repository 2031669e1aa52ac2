#include "monitor/history.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "monitor/metrics.h"
#include "monitor/series.h"

namespace clawbot::monitor {
namespace {

using nlohmann::json;

// A manual clock: the history reads the time from here, and no test sleeps.
struct ManualClock {
  double now = 1000;
  std::function<double()> fn() {
    return [this] { return now; };
  }
};

History::Options serve_options(ManualClock& clock, double interval = 5, double retention = 3600) {
  History::Options options;
  options.role = "serve";
  options.interval_s = interval;
  options.retention_s = retention;
  options.clock = clock.fn();
  return options;
}

TEST(RegistrySnapshot, CopiesCountersGaugesAndHistogramsByLabels) {
  Registry registry;
  registry.counter_add("requests_total", "Requests", {{"route", "/v1/x"}, {"status", "200"}}, 3);
  registry.counter_add("requests_total", "Requests", {{"route", "say \"hi\"\n"}, {"status", "500"}});
  double level = 7;
  registry.gauge_callback("level", "A gauge", [&level] { return level; });
  registry.histogram_observe("latency_seconds", "Latency", {0.1, 0.5}, 0.05);
  registry.histogram_observe("latency_seconds", "Latency", {0.1, 0.5}, 0.3);
  registry.histogram_observe("latency_seconds", "Latency", {0.1, 0.5}, 9);

  level = 8;  // read at snapshot time
  const MetricsSnapshot snap = registry.snapshot();
  const auto* requests = snap.find("requests_total");
  ASSERT_NE(requests, nullptr);
  EXPECT_EQ(requests->type, "counter");
  ASSERT_EQ(requests->values.size(), 2u);
  double total = 0;
  bool found_escaped = false;
  for (const auto& v : requests->values) {
    total += v.value;
    const std::string* route = label_value(v.labels, "route");
    ASSERT_NE(route, nullptr);
    if (*route == "say \"hi\"\n") {
      found_escaped = true;
      EXPECT_EQ(*label_value(v.labels, "status"), "500");
    }
  }
  EXPECT_EQ(total, 4);
  EXPECT_TRUE(found_escaped) << "labels are read back as they were given, escapes undone";

  const auto* gauge = snap.find("level");
  ASSERT_NE(gauge, nullptr);
  ASSERT_EQ(gauge->values.size(), 1u);
  EXPECT_EQ(gauge->values[0].value, 8);

  const auto* latency = snap.find("latency_seconds");
  ASSERT_NE(latency, nullptr);
  ASSERT_EQ(latency->histograms.size(), 1u);
  const auto& h = latency->histograms[0];
  EXPECT_EQ(h.upper_bounds, (std::vector<double>{0.1, 0.5}));
  EXPECT_EQ(h.cumulative, (std::vector<double>{1, 2}));  // cumulative, as the text format writes it
  EXPECT_EQ(h.count, 3);
  EXPECT_DOUBLE_EQ(h.sum, 9.35);
  EXPECT_EQ(snap.find("missing"), nullptr);
}

TEST(History, RatesFromTwoSuccessiveSamples) {
  ManualClock clock;
  Registry registry;
  double generated = 0;
  registry.counter_callback("clawbot_generation_tokens_total", "Tokens", [&generated] { return generated; });
  History history(registry, serve_options(clock));
  generated = 40;
  clock.now += 5;
  const Sample first = history.sample_now();
  EXPECT_DOUBLE_EQ(first.values.at(std::string(series::output_tokens_per_s)), 8.0);  // since construction
  generated = 140;
  clock.now += 10;  // a late sample: the rate is over the time that really passed
  const Sample second = history.sample_now();
  EXPECT_DOUBLE_EQ(second.values.at(std::string(series::output_tokens_per_s)), 10.0);
  // Requests: answered ones, the monitoring routes and clients that left aside.
  registry.counter_add("clawbot_http_requests_total", "",
                       {{"route", "/v1/chat/completions"}, {"status", "200"}}, 8);
  registry.counter_add("clawbot_http_requests_total", "",
                       {{"route", "/v1/chat/completions"}, {"status", "503"}}, 2);
  registry.counter_add("clawbot_http_requests_total", "",
                       {{"route", "/v1/chat/completions"}, {"status", "499"}}, 5);
  registry.counter_add("clawbot_http_requests_total", "", {{"route", "/metrics"}, {"status", "200"}}, 100);
  registry.counter_add("clawbot_http_requests_total", "",
                       {{"route", "/api/metrics/history"}, {"status", "200"}}, 100);
  clock.now += 5;
  const Sample third = history.sample_now();
  EXPECT_DOUBLE_EQ(third.values.at(std::string(series::requests_per_s)), 2.0);
  EXPECT_DOUBLE_EQ(third.values.at(std::string(series::errors_per_s)), 0.4);
  EXPECT_DOUBLE_EQ(third.values.at(std::string(series::error_ratio)), 0.2);
  EXPECT_DOUBLE_EQ(third.values.at(std::string(series::output_tokens_per_s)),
                   0.0);  // known: nothing generated
}

TEST(History, PercentilesOverTheLastWindowOnly) {
  ManualClock clock;
  clock.now = 0;
  Registry registry;
  History history(registry, serve_options(clock));
  const auto ttft = [&](double seconds, int times) {
    for (int i = 0; i < times; ++i)
      registry.histogram_observe("clawbot_time_to_first_token_seconds", "", ttft_buckets(), seconds);
  };
  ttft(0.05, 100);  // between t=0 and t=5: all in the bucket (0.04, 0.06]
  std::map<double, Sample> at;
  for (int t = 5; t <= 130; t += 5) {
    if (t == 40) ttft(0.9, 100);  // between t=35 and t=40: all in (0.75, 1.0]
    clock.now = t;
    at[t] = history.sample_now();
  }
  const std::string p50(series::ttft_p50_s), p99(series::ttft_p99_s);
  ASSERT_TRUE(at[5].values.contains(p99));
  EXPECT_GT(at[5].values.at(p99), 0.04);
  EXPECT_LE(at[5].values.at(p99), 0.06);
  // At t=50 the window (t=-10..50) holds both: the median is between them, P99 in the slow bucket.
  EXPECT_GT(at[50].values.at(p99), 0.75);
  EXPECT_LE(at[50].values.at(p50), 0.06);
  // At t=70 the window (t=10..70) holds only the slow ones.
  EXPECT_GT(at[70].values.at(p50), 0.75);
  EXPECT_LE(at[70].values.at(p50), 1.0);
  // At t=100 (window t=40..100) nothing was observed: unknown, absent, not 0.
  EXPECT_FALSE(at[100].values.contains(p50));
  EXPECT_FALSE(at[100].values.contains(p99));
  EXPECT_FALSE(at[130].values.contains(p99));
}

TEST(History, RatiosOverTheWindowAndGauges) {
  ManualClock clock;
  Registry registry;
  double queries = 0, hits = 0, waiting = 0;
  registry.counter_callback("clawbot_prefix_cache_queries_total", "", [&queries] { return queries; });
  registry.counter_callback("clawbot_prefix_cache_hits_total", "", [&hits] { return hits; });
  registry.gauge_callback("clawbot_num_requests_waiting", "", [&waiting] { return waiting; });
  registry.gauge_callback("clawbot_slots", "", [] { return 4.0; });
  History::Options options = serve_options(clock);
  options.queue_capacity = 8;
  options.tls_not_after = clock.now + 10 * 86'400 + 5;
  History history(registry, options);
  queries = 10;
  hits = 4;
  waiting = 6;
  clock.now += 5;
  const Sample sample = history.sample_now();
  EXPECT_DOUBLE_EQ(sample.values.at("prefix_cache_hit_ratio"), 0.4);
  EXPECT_DOUBLE_EQ(sample.values.at("queue_full_ratio"), 0.75);
  EXPECT_DOUBLE_EQ(sample.values.at("requests_waiting"), 6);
  EXPECT_DOUBLE_EQ(sample.values.at("slots_total"), 4);
  EXPECT_DOUBLE_EQ(sample.values.at("tls_cert_days_left"), 10);
  // A minute later with no lookup in it: the hit ratio is unknown.
  for (int i = 0; i < 13; ++i) {
    clock.now += 5;
    history.sample_now();
  }
  EXPECT_FALSE(history.latest()->values.contains("prefix_cache_hit_ratio"));
}

TEST(History, WhatCannotBeKnownIsAbsentNotZero) {
  ManualClock clock;
  Registry registry;
  History history(registry, serve_options(clock));
  clock.now += 5;
  const Sample sample = history.sample_now();
  for (const auto name :
       {series::ttft_p99_s, series::itl_p50_s, series::e2e_p99_s, series::error_ratio,
        series::prefix_cache_hit_ratio, series::gpu_utilization_ratio, series::gpu_memory_used_bytes,
        series::tls_cert_days_left, series::queue_full_ratio, series::output_tokens_per_s})
    EXPECT_FALSE(sample.values.contains(name)) << name;
  // Memory is always known.
  EXPECT_TRUE(sample.values.contains(series::memory_used_ratio));
  EXPECT_TRUE(sample.values.contains(series::process_rss_bytes));
  // In the JSON: every series of the role, null where absent.
  const json body = json::parse(history.json());
  EXPECT_EQ(body["role"], "serve");
  ASSERT_EQ(body["t"].size(), 1u);
  ASSERT_TRUE(body["series"].contains("ttft_p99_s"));
  EXPECT_TRUE(body["series"]["ttft_p99_s"][0].is_null());
  EXPECT_TRUE(body["series"]["memory_used_ratio"][0].is_number());
  EXPECT_EQ(body["series"].size(), role_series("serve").size());
  EXPECT_FALSE(body.contains("upstreams"));
}

TEST(History, GpuSeriesFromTheGpuFamiliesWhenPresent) {
  ManualClock clock;
  Registry registry;
  for (const auto* gpu : {"1", "0"}) {
    const Labels labels{{"gpu", gpu}, {"name", "card"}, {"driver", "amdgpu"}};
    const double n = gpu[0] == '0' ? 1 : 2;
    registry.gauge_callback(
        "clawbot_gpu_utilization_ratio", "", [n] { return n / 4; }, labels);
    registry.gauge_callback(
        "clawbot_gpu_memory_used_bytes", "", [n] { return n * 100; }, labels);
    registry.gauge_callback(
        "clawbot_gpu_temperature_celsius", "", [n] { return 40 + n; }, labels);
  }
  History history(registry, serve_options(clock));
  clock.now += 5;
  const Sample sample = history.sample_now();
  EXPECT_DOUBLE_EQ(sample.values.at("gpu_utilization_ratio"), 0.25);  // the first GPU
  EXPECT_DOUBLE_EQ(sample.values.at("gpu_memory_used_bytes"), 300);   // all GPUs
  EXPECT_DOUBLE_EQ(sample.values.at("gpu_temperature_c"), 42);        // the hottest
  EXPECT_FALSE(sample.values.contains("gpu_power_w"));                // not given: absent
}

TEST(History, RingWrapsAtCapacityAndKeepsTheNewest) {
  ManualClock clock;
  Registry registry;
  History history(registry, serve_options(clock, 5, 20));
  ASSERT_EQ(history.capacity(), 4u);
  for (int i = 1; i <= 6; ++i) {
    clock.now = 1000 + 5 * i;
    history.sample_now();
  }
  EXPECT_EQ(history.size(), 4u);
  const auto kept = history.samples();
  ASSERT_EQ(kept.size(), 4u);
  EXPECT_EQ(kept.front().time, 1015);
  EXPECT_EQ(kept.back().time, 1030);
  const json body = json::parse(history.json());
  EXPECT_EQ(body["t"], json::array({1015, 1020, 1025, 1030}));
  EXPECT_EQ(body["series"]["memory_used_ratio"].size(), 4u);
  EXPECT_EQ(body["interval_s"], 5);
  EXPECT_EQ(body["retention_s"], 20);
  EXPECT_EQ(history.latest()->time, 1030);
}

// The ring is allocated (and touched) when the history is made: an idle node's memory stays flat as it fills.
#if defined(__SANITIZE_ADDRESS__)
#define CLAWBOT_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CLAWBOT_TEST_ASAN 1
#endif
#endif

TEST(History, MemoryDoesNotGrowAsTheRingFills) {
#ifdef CLAWBOT_TEST_ASAN
  // ASan keeps freed blocks in its quarantine (up to 256 MB), so resident memory says nothing about the ring here.
  GTEST_SKIP() << "RSS is not the ring's memory under AddressSanitizer";
#endif
  ManualClock clock;
  Registry registry;
  History::Options options;
  options.role = "gateway";
  options.interval_s = 1;
  options.retention_s = 3600;
  for (int i = 0; i < 20; ++i) options.upstreams.push_back("node-" + std::to_string(i));
  options.clock = clock.fn();
  History history(registry, options);
  // 3600 rows of 16 + 20 x 4 numbers: 2.7 MB, all of it resident from the start.
  const double before = process_rss_bytes();
  for (int i = 0; i < 3600; ++i) {
    clock.now += 1;
    history.sample_now();
  }
  EXPECT_EQ(history.size(), 3600u);
  const double after = process_rss_bytes();
  EXPECT_LT(after - before, 1 << 20) << "RSS " << before << " -> " << after;
}

TEST(History, SinceKeepsOnlyLaterSamples) {
  ManualClock clock;
  Registry registry;
  History history(registry, serve_options(clock));
  for (int i = 1; i <= 5; ++i) {
    clock.now = 1000 + i;
    history.sample_now();
  }
  const json body = json::parse(history.json(1003));
  EXPECT_EQ(body["t"], json::array({1004, 1005}));
  EXPECT_EQ(body["now"], 1005);
  for (const auto& [name, values] : body["series"].items()) EXPECT_EQ(values.size(), 2u) << name;
  EXPECT_EQ(json::parse(history.json(2000))["t"].size(), 0u);
  EXPECT_EQ(json::parse(history.json())["t"].size(), 5u);
  EXPECT_EQ(history.samples(1004).size(), 1u);
}

TEST(History, SinceParameter) {
  EXPECT_EQ(history_since("/api/metrics/history"), std::nullopt);
  EXPECT_EQ(history_since("/api/metrics/history?since=1764763200.5"), 1764763200.5);
  EXPECT_EQ(history_since("/api/metrics/history?x=1&since=12"), 12);
  EXPECT_EQ(history_since("/api/metrics/history?sincere=x"), std::nullopt);
  for (const auto* bad :
       {"/api/metrics/history?since=", "/api/metrics/history?since=yesterday",
        "/api/metrics/history?since=12abc", "/api/metrics/history?since=nan", "/api/metrics/history?since"}) {
    try {
      history_since(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const ClawbotError& e) {
      EXPECT_EQ(e.error().kind, ErrorKind::invalid_request) << bad;
      EXPECT_EQ(e.error().param, "since") << bad;
    }
  }
}

TEST(History, ListenersAndThresholds) {
  ManualClock clock;
  Registry registry;
  History history(registry, serve_options(clock));
  std::vector<double> seen;
  history.add_listener([&seen](const Sample& s) { seen.push_back(s.time); });
  history.set_thresholds({{"memory_used_ratio", 0.9}, {"ttft_p99_s", 0.2}});
  clock.now = 1005;
  history.sample_now();
  clock.now = 1010;
  history.sample_now();
  EXPECT_EQ(seen, (std::vector<double>{1005, 1010}));
  const json body = json::parse(history.json());
  EXPECT_EQ(body["thresholds"]["memory_used_ratio"], 0.9);
  EXPECT_EQ(body["thresholds"]["ttft_p99_s"], 0.2);
}

TEST(History, StartAndStopTheSampler) {
  Registry registry;
  History::Options options;
  options.interval_s = 3600;
  History history(registry, options);
  history.start();
  history.stop();  // at once: no sample waited for
  history.start();
}  // the destructor stops it

class MemorySeam : public ::testing::Test {
 protected:
  void TearDown() override { unsetenv("CLAWBOT_MEMORY_AVAILABLE"); }
};

TEST_F(MemorySeam, ANumberOrAFileStandsForMemAvailable) {
  ManualClock clock;
  Registry registry;
  History history(registry, serve_options(clock));
  const double total = system_memory_total_bytes();
  ASSERT_GT(total, 0);
  setenv("CLAWBOT_MEMORY_AVAILABLE", std::to_string(static_cast<long long>(total / 2)).c_str(), 1);
  EXPECT_NEAR(system_memory_available_bytes(), total / 2, 1);
  clock.now += 5;
  EXPECT_NEAR(history.sample_now().values.at("memory_used_ratio"), 0.5, 1e-6);

  const auto file = std::filesystem::temp_directory_path() / ("clawbot_mem_" + std::to_string(getpid()));
  std::ofstream(file) << static_cast<long long>(total * 0.05) << "\n";
  setenv("CLAWBOT_MEMORY_AVAILABLE", file.c_str(), 1);
  clock.now += 5;
  EXPECT_NEAR(history.sample_now().values.at("memory_used_ratio"), 0.95, 1e-6);
  std::ofstream(file) << static_cast<long long>(total * 0.2);  // re-read on every call
  clock.now += 5;
  EXPECT_NEAR(history.sample_now().values.at("memory_used_ratio"), 0.8, 1e-6);
  std::filesystem::remove(file);
}

TEST(History, GatewayUpstreamsAndKeys) {
  ManualClock clock;
  Registry registry;
  struct Up {
    const char* name;
    const char* state;
    bool serving;
  };
  const std::vector<Up> ups = {
      {"a", "up", true}, {"b", "open", false}, {"c", "up", false}, {"d", "down", false}};
  for (const auto& u : ups) {
    const Labels labels{{"upstream", u.name}};
    registry.gauge_callback(
        "clawbot_gateway_upstream_up", "", [s = u.serving] { return s ? 1.0 : 0.0; }, labels);
    registry.gauge_callback(
        "clawbot_gateway_upstream_in_flight", "", [] { return 2.0; }, labels);
    for (const auto* state : {"up", "down", "open", "half_open"}) {
      Labels with_state = labels;
      with_state.emplace_back("state", state);
      const double on = std::string(state) == u.state ? 1 : 0;
      registry.gauge_callback(
          "clawbot_gateway_upstream_state", "", [on] { return on; }, with_state);
    }
  }
  History::Options options;
  options.role = "gateway";
  options.upstreams = {"a", "b", "c", "d"};
  options.clock = clock.fn();
  History history(registry, options);
  registry.histogram_observe("clawbot_gateway_upstream_request_duration_seconds", "", {0.1, 1, 10}, 0.5,
                             {{"upstream", "a"}});
  registry.counter_add("clawbot_gateway_upstream_requests_total", "", {{"upstream", "a"}, {"status", "200"}},
                       20);
  registry.counter_add("clawbot_gateway_upstream_requests_total", "", {{"upstream", "a"}, {"status", "502"}},
                       5);
  registry.counter_add("clawbot_gateway_upstream_errors_total", "",
                       {{"upstream", "a"}, {"kind", "status_503"}}, 9);
  registry.counter_add("clawbot_gateway_upstream_errors_total", "",
                       {{"upstream", "a"}, {"kind", "connect_or_send"}}, 5);
  registry.counter_add("clawbot_gateway_key_requests_total", "", {{"key", "0123456789ab"}, {"name", "alice"}},
                       3);
  registry.counter_add("clawbot_gateway_key_prompt_tokens_total", "",
                       {{"key", "0123456789ab"}, {"name", "alice"}}, 12);
  clock.now += 5;
  const Sample sample = history.sample_now();
  ASSERT_EQ(sample.upstreams.size(), 4u);
  EXPECT_EQ(sample.upstreams.at("a").state, "healthy");
  EXPECT_EQ(sample.upstreams.at("b").state, "open");
  EXPECT_EQ(sample.upstreams.at("c").state, "standby");
  EXPECT_EQ(sample.upstreams.at("d").state, "down");
  EXPECT_DOUBLE_EQ(sample.values.at("upstreams_down"), 2);
  EXPECT_DOUBLE_EQ(sample.upstreams.at("a").values.at("requests_per_s"), 5);
  EXPECT_DOUBLE_EQ(sample.upstreams.at("a").values.at("errors_per_s"), 2);  // 5 answered 502, 5 unreachable
  EXPECT_DOUBLE_EQ(sample.upstreams.at("a").values.at("in_flight"), 2);
  EXPECT_GT(sample.upstreams.at("a").values.at("e2e_p99_s"), 0.1);
  EXPECT_FALSE(sample.values.contains("ttft_p99_s"));  // not a gateway series

  const json body = json::parse(history.json());
  EXPECT_EQ(body["role"], "gateway");
  EXPECT_EQ(body["upstreams"]["d"]["state"], json::array({"down"}));
  EXPECT_EQ(body["upstreams"]["a"]["series"]["requests_per_s"], json::array({5}));
  ASSERT_EQ(body["keys"].size(), 1u);
  EXPECT_EQ(body["keys"][0]["id"], "0123456789ab");
  EXPECT_EQ(body["keys"][0]["name"], "alice");
  EXPECT_EQ(body["keys"][0]["requests"], 3);
  EXPECT_EQ(body["keys"][0]["prompt_tokens"], 12);
  EXPECT_EQ(body["keys"][0]["completion_tokens"], 0);
  EXPECT_EQ(body["series"].size(), role_series("gateway").size());
}

}  // namespace
}  // namespace clawbot::monitor
