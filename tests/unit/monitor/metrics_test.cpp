#include "monitor/metrics.h"

#include <algorithm>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

namespace clawbot::monitor {
namespace {

TEST(FormatValue, ShortestRoundTrip) {
  EXPECT_EQ(format_value(0.3), "0.3");
  EXPECT_EQ(format_value(0.1 + 0.2), "0.30000000000000004");  // a different double: all its digits
  EXPECT_EQ(format_value(5.0), "5");
  EXPECT_EQ(format_value(0.025), "0.025");
  EXPECT_EQ(format_value(1234567.0), "1234567");
  EXPECT_EQ(format_value(-2.5), "-2.5");
  EXPECT_EQ(format_value(1e300), "1e+300");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(HistogramQuantile, InterpolatesInsideTheBucketAsPrometheus) {
  const std::vector<double> bounds{0.1, 0.2, 0.5};
  // 100 observations: 50 at or below 0.1, 90 at or below 0.2, 98 at or below 0.5, 2 above.
  const std::vector<double> cumulative{50, 90, 98};
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.5, bounds, cumulative, 100), 0.1);
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.25, bounds, cumulative, 100), 0.05);  // the first bucket starts at 0
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.7, bounds, cumulative, 100), 0.15);
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.94, bounds, cumulative, 100), 0.35);
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.99, bounds, cumulative, 100), 0.5);  // in +Inf: the highest bound
  EXPECT_FALSE(histogram_quantile(0.99, bounds, std::vector<double>{0, 0, 0}, 0).has_value());
  EXPECT_FALSE(histogram_quantile(0.99, bounds, std::vector<double>{1, 2}, 2).has_value());  // sizes differ
}

TEST(Registry, BucketBoundsPrintShortest) {
  Registry registry;
  registry.histogram_observe("latency_seconds", "Latency", {0.3, 0.8, 2.5}, 0.5, {{"route", "/x"}});
  const std::string text = registry.render();
  EXPECT_NE(text.find("latency_seconds_bucket{route=\"/x\",le=\"0.3\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("latency_seconds_bucket{route=\"/x\",le=\"0.8\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("latency_seconds_sum{route=\"/x\"} 0.5\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("0.29999999999999999"), std::string::npos) << text;
  EXPECT_EQ(text.find("0.80000000000000004"), std::string::npos) << text;
}

TEST(Registry, CountersAndGauges) {
  Registry registry;
  registry.counter_add("requests_total", "Requests", {{"status", "404"}});
  registry.counter_add("requests_total", "Requests", {{"status", "404"}});
  registry.gauge_callback("temperature", "A gauge", [] { return 21.7; });
  const std::string text = registry.render();
  EXPECT_NE(text.find("# TYPE requests_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("requests_total{status=\"404\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("temperature 21.7\n"), std::string::npos) << text;
}

// The text format (exposition_formats.md): HELP escapes a backslash and a line break, label values also a
// quote. An unescaped line break in HELP would start a line that Prometheus rejects the whole scrape for.
TEST(Registry, HelpAndLabelTextAreEscaped) {
  Registry registry;
  registry.counter_add("odd_total", "Lines\nand a \\ and \"quotes\"", {{"path", "a\"b\\c\nd"}});
  const std::string text = registry.render();
  EXPECT_NE(text.find("# HELP odd_total Lines\\nand a \\\\ and \"quotes\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("odd_total{path=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;
}

}  // namespace
}  // namespace clawbot::monitor
