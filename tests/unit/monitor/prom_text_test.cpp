// The Prometheus text reader of `clawbot top`: what our registry writes reads back, the format's corners
// (escapes, NaN/Inf, timestamps, histograms), and hostile input refused within its limits.
#include "monitor/prom_text.h"

#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "monitor/metrics.h"

namespace clawbot::monitor::prom {
namespace {

TEST(PromText, ReadsWhatOurRegistryWrites) {
  Registry registry;
  registry.counter_add("clawbot_http_requests_total", "HTTP requests by route and status",
                       {{"route", "/v1/chat/completions"}, {"status", "200"}}, 3);
  registry.gauge_callback("clawbot_slots", "Slots", [] { return 4.0; });
  for (double v : {0.003, 0.03, 0.03, 0.3, 3.0})
    registry.histogram_observe("lat_seconds", "Latency", {0.01, 0.1, 1}, v);
  registry.gauge_callback("odd", "Odd", [] { return 1.0; }, {{"name", "say \"hi\"\\\n"}});
  const auto parsed = parse(registry.render());
  ASSERT_TRUE(parsed.scrape) << parsed.error;
  const Scrape& s = *parsed.scrape;
  EXPECT_EQ(*s.value("clawbot_http_requests_total", {{"status", "200"}}), 3);
  EXPECT_EQ(s.family("clawbot_http_requests_total")->type, "counter");
  EXPECT_EQ(*s.value("clawbot_slots"), 4);
  EXPECT_EQ(s.family("clawbot_slots")->help, "Slots");
  const Family* odd = s.family("odd");
  ASSERT_NE(odd, nullptr);
  EXPECT_EQ(odd->help, "Odd");
  EXPECT_EQ(*odd->samples.at(0).label("name"), "say \"hi\"\\\n");

  const Family* lat = s.family("lat_seconds");
  ASSERT_NE(lat, nullptr);
  EXPECT_EQ(lat->type, "histogram");
  EXPECT_EQ(lat->samples.size(), 6u);  // 3 buckets, +Inf, _sum, _count
  const auto hs = histograms(*lat);
  ASSERT_EQ(hs.size(), 1u);
  EXPECT_EQ(hs[0].upper_bounds, (std::vector<double>{0.01, 0.1, 1}));
  EXPECT_EQ(hs[0].cumulative, (std::vector<double>{1, 3, 4}));
  EXPECT_EQ(hs[0].count, 5);
  EXPECT_DOUBLE_EQ(hs[0].sum, 3.363);
  EXPECT_EQ(*s.value("lat_seconds_count"), 5);
}

TEST(PromText, FormatCorners) {
  const auto parsed = parse(
      "# a comment\n"
      "# HELP up a \\\\ backslash\\nand a newline\n"
      "\n"
      "# TYPE up gauge\n"
      "up 1 1700000000000\n"
      "nan_value NaN\n"
      "pos +Inf\n"
      "neg{a=\"x\",} -Inf\r\n"  // a trailing comma, a CRLF line end
      "  spaced  {  a = \"1\" , b=\"2\"  }   2.5e3  \n"
      "huge 1e999\n"
      "no_type_sum 4\n");
  ASSERT_TRUE(parsed.scrape) << parsed.error;
  const Scrape& s = *parsed.scrape;
  EXPECT_EQ(s.family("up")->samples[0].timestamp_ms, 1700000000000);
  EXPECT_EQ(s.family("up")->help, "a \\ backslash\nand a newline");
  EXPECT_TRUE(std::isnan(*s.value("nan_value")));
  EXPECT_EQ(*s.value("pos"), INFINITY);
  EXPECT_EQ(*s.value("neg", {{"a", "x"}}), -INFINITY);
  EXPECT_EQ(*s.value("spaced", {{"b", "2"}}), 2500);
  EXPECT_EQ(*s.value("huge"), INFINITY);
  EXPECT_EQ(s.family("no_type_sum")->type, "untyped");  // no histogram named no_type: its own family
  EXPECT_FALSE(s.value("absent"));
  EXPECT_FALSE(s.value("up", {{"job", "x"}}));
  EXPECT_EQ(*s.sum("spaced"), 2500);
}

TEST(PromText, SumsLabelledSamples) {
  const auto parsed = parse(
      "r{upstream=\"a\",status=\"200\"} 3\n"
      "r{upstream=\"a\",status=\"500\"} 1\n"
      "r{upstream=\"b\",status=\"200\"} 10\n");
  ASSERT_TRUE(parsed.scrape) << parsed.error;
  EXPECT_EQ(*parsed.scrape->sum("r"), 14);
  EXPECT_EQ(*parsed.scrape->sum("r", {{"upstream", "a"}}), 4);
  EXPECT_FALSE(parsed.scrape->sum("r", {{"upstream", "c"}}));
}

TEST(PromText, HistogramsPerLabelSetWithBrokenBucketsMadeSane) {
  const auto parsed = parse(
      "# TYPE d histogram\n"
      "d_bucket{u=\"a\",le=\"0.5\"} 4\n"
      "d_bucket{u=\"a\",le=\"0.1\"} 2\n"  // out of order
      "d_bucket{u=\"a\",le=\"+Inf\"} 5\n"
      "d_count{u=\"a\"} 5\n"
      "d_bucket{u=\"b\",le=\"0.1\"} 3\n"
      "d_bucket{u=\"b\",le=\"0.5\"} 1\n"   // goes down: made monotonic
      "d_bucket{u=\"b\",le=\"soon\"} 9\n"  // not a bound: skipped
      "d_count{u=\"b\"} 3\n");
  ASSERT_TRUE(parsed.scrape) << parsed.error;
  const auto hs = histograms(*parsed.scrape->family("d"));
  ASSERT_EQ(hs.size(), 2u);
  EXPECT_EQ(hs[0].labels, (Labels{{"u", "a"}}));
  EXPECT_EQ(hs[0].upper_bounds, (std::vector<double>{0.1, 0.5}));
  EXPECT_EQ(hs[0].cumulative, (std::vector<double>{2, 4}));
  EXPECT_EQ(hs[0].count, 5);
  EXPECT_EQ(hs[1].cumulative, (std::vector<double>{3, 3}));
  EXPECT_EQ(hs[1].count, 3);
}

void expect_refused(const std::string& text, const std::string& why, const Limits& limits = {}) {
  const auto parsed = parse(text, limits);
  EXPECT_FALSE(parsed.scrape) << text;
  EXPECT_NE(parsed.error.find(why), std::string::npos) << parsed.error;
  EXPECT_LT(parsed.error.size(), 300u);
}

TEST(PromText, RefusesWhatIsNotTheFormatNamingTheLine) {
  expect_refused("ok 1\n9bad 1\n", "line 2: a sample that does not start with a metric name");
  expect_refused("a{b=\"c\" 1\n", "labels not separated by commas");
  expect_refused("a{b=\"c 1\n", "without its closing quote");
  expect_refused("a{b=c} 1\n", "a label value without quotes");
  expect_refused("a{b=\"\\t\"} 1\n", "an unknown escape");
  expect_refused("a{b=\"1\",b=\"2\"} 1\n", "the label b twice");
  expect_refused("a{1b=\"1\"} 1\n", "a label name that is not one");
  expect_refused("a one\n", "not a number");
  expect_refused("a\n", "not a number");
  expect_refused("a 1 soon\n", "a timestamp that is not an integer");
  expect_refused("a 1 2 3\n", "text after the timestamp");
  expect_refused("a-b 1\n", "a metric name that is not one");
  expect_refused("a 1\n# TYPE a gauge\n", "a TYPE line after the family's samples");
  expect_refused("# TYPE a thing\n", "an unknown metric type");
  expect_refused("a{b=\"\x1b[2J\"} x\n", "\\x1b[2J");  // the line is quoted without its control bytes
}

TEST(PromText, BoundedSizes) {
  Limits small{.max_bytes = 100, .max_line_bytes = 20, .max_samples = 3, .max_families = 2, .max_labels = 2};
  expect_refused(std::string(101, '\n'), "over the limit of 100", small);
  expect_refused("a_very_long_metric_name_indeed 1\n", "line 1 is over 20 bytes", small);
  expect_refused("a 1\na 2\na 3\na 4\n", "more than 3 samples", small);
  expect_refused("a 1\nb 2\nc 3\n", "more than 2 metric families", small);
  expect_refused("a{x=\"1\",y=\"2\",z=\"3\"} 1\n", "more than 2 labels", Limits{.max_labels = 2});
  EXPECT_TRUE(parse("a 1\na 2\na 3\n", small).scrape);
}

}  // namespace
}  // namespace clawbot::monitor::prom
