#include "bench/stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace clawbot::bench {
namespace {

TEST(PercentileTest, InterpolatesBetweenClosestRanks) {
  const std::vector<double> v{1, 2, 3, 4, 5};
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(percentile(v, 50), 3);
  EXPECT_DOUBLE_EQ(percentile(v, 90), 4.6);
  EXPECT_DOUBLE_EQ(percentile(v, 99), 4.96);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 5);
  EXPECT_DOUBLE_EQ(percentile({10, 20}, 50), 15);
}

TEST(PercentileTest, OneValueAndNone) {
  EXPECT_DOUBLE_EQ(percentile({7}, 99), 7);
  EXPECT_TRUE(std::isnan(percentile({}, 50)));
}

TEST(DistributionTest, SortsScalesAndOrdersPercentiles) {
  const auto d = distribution({0.3, 0.1, 0.2, 0.4}, 1000);
  EXPECT_EQ(d.count, 4u);
  EXPECT_DOUBLE_EQ(d.min, 100);
  EXPECT_DOUBLE_EQ(d.max, 400);
  EXPECT_DOUBLE_EQ(d.mean, 250);
  EXPECT_DOUBLE_EQ(d.p50, 250);

  std::mt19937 rng(7);
  std::exponential_distribution<double> skewed(3.0);
  std::vector<double> values;
  for (int i = 0; i < 1000; ++i) values.push_back(skewed(rng));
  const auto s = distribution(values);
  EXPECT_LE(s.min, s.p50);
  EXPECT_LE(s.p50, s.p90);
  EXPECT_LE(s.p90, s.p99);
  EXPECT_LE(s.p99, s.max);
}

TEST(DistributionTest, EmptyHasNoCount) {
  EXPECT_EQ(distribution({}).count, 0u);
}

TEST(TpotTest, TimeAfterTheFirstTokenOverTheRest) {
  RequestRecord r;
  r.ok = true;
  r.ttft_s = 0.1;
  r.e2e_s = 1.1;
  r.output_tokens = 11;
  ASSERT_TRUE(r.tpot_s().has_value());
  EXPECT_DOUBLE_EQ(*r.tpot_s(), 0.1);
  r.output_tokens = 1;  // one token: nothing after the first
  EXPECT_FALSE(r.tpot_s().has_value());
  r.output_tokens = 11;
  r.ok = false;
  EXPECT_FALSE(r.tpot_s().has_value());
}

constexpr const char* role_chunk = R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]})";

std::string content_chunk(const std::string& text) {
  return R"({"choices":[{"index":0,"delta":{"content":")" + text + R"("},"finish_reason":null}]})";
}

TEST(StreamMeterTest, MeasuresTtftGapsAndUsage) {
  StreamMeter meter(1.0);
  meter.on_data(role_chunk, 1.05);  // no text yet: not the first token
  meter.on_data(content_chunk("Once"), 1.1);
  meter.on_data(content_chunk(" upon"), 1.15);
  meter.on_data(content_chunk(" a"), 1.25);
  meter.on_data(R"({"choices":[{"index":0,"delta":{},"finish_reason":"length"}]})", 1.26);
  meter.on_data(
      R"({"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10,)"
      R"("prompt_tokens_details":{"cached_tokens":4}}})",
      1.27);
  meter.on_data("[DONE]", 1.3);
  const auto r = meter.finish(1.31);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_NEAR(r.ttft_s, 0.1, 1e-9);
  EXPECT_NEAR(r.e2e_s, 0.3, 1e-9);  // at [DONE]
  ASSERT_EQ(r.itl_s.size(), 2u);
  EXPECT_NEAR(r.itl_s[0], 0.05, 1e-9);
  EXPECT_NEAR(r.itl_s[1], 0.1, 1e-9);
  EXPECT_NEAR(*r.max_itl_s(), 0.1, 1e-9);
  EXPECT_EQ(r.output_tokens, 3);
  EXPECT_TRUE(r.usage_reported);
  EXPECT_EQ(r.prompt_tokens, 7);
  EXPECT_EQ(r.cached_tokens, 4);
  EXPECT_EQ(r.content, "Once upon a");
  EXPECT_NEAR(*r.tpot_s(), 0.1, 1e-9);  // (0.3 - 0.1) / (3 - 1)
}

TEST(StreamMeterTest, ReadsTheServersPromptTimeEvenWithoutText) {
  StreamMeter meter(0);
  meter.on_data(role_chunk, 0.05);
  meter.on_data(
      R"({"choices":[{"index":0,"delta":{},"finish_reason":"length"}],)"
      R"("timings":{"cache_n":8,"prompt_n":2,"prompt_ms":12.5,"predicted_n":3}})",
      0.3);
  meter.on_data("[DONE]", 0.31);
  const auto r = meter.finish(0.31);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_LT(r.ttft_s, 0);  // no text came
  EXPECT_NEAR(r.server_prompt_s, 0.0125, 1e-12);

  StreamMeter plain(0);
  plain.on_data(content_chunk("a"), 0.1);
  plain.on_data("[DONE]", 0.2);
  EXPECT_LT(plain.finish(0.2).server_prompt_s, 0);  // not reported: -1, not 0
}

TEST(StreamMeterTest, CountsChunksWithoutUsage) {
  StreamMeter meter(0);
  meter.on_data(content_chunk("a"), 0.1);
  meter.on_data(content_chunk("b"), 0.2);
  meter.on_data("[DONE]", 0.3);
  const auto r = meter.finish(0.3);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.output_tokens, 2);
  EXPECT_FALSE(r.usage_reported);
  EXPECT_EQ(r.prompt_tokens, -1);
  EXPECT_EQ(r.cached_tokens, -1);
}

TEST(StreamMeterTest, CompletionsTextAndReasoningCountAsTokens) {
  StreamMeter meter(0);
  meter.on_data(R"({"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]})", 0.2);
  meter.on_data(R"({"choices":[{"index":0,"text":"x","finish_reason":"stop"}]})", 0.3);
  const auto r = meter.finish(0.4);  // a finish_reason without [DONE] is a whole answer
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_NEAR(r.ttft_s, 0.2, 1e-9);
  EXPECT_EQ(r.output_tokens, 2);
  EXPECT_EQ(r.content, "x");  // reasoning is not part of the answer sent back
}

TEST(StreamMeterTest, ErrorEventFailsTheRequest) {
  StreamMeter meter(0);
  meter.on_data(content_chunk("a"), 0.1);
  meter.on_data(R"({"error":{"message":"the server is shutting down","type":"x"}})", 0.2);
  meter.on_data("[DONE]", 0.3);
  const auto r = meter.finish(0.3);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("the server is shutting down"), std::string::npos);
}

TEST(StreamMeterTest, StreamCutShortFails) {
  StreamMeter meter(0);
  meter.on_data(content_chunk("a"), 0.1);
  const auto r = meter.finish(0.5);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("ended"), std::string::npos);
}

TEST(StreamMeterTest, NonJsonEventFails) {
  StreamMeter meter(0);
  meter.on_data("hello", 0.1);
  EXPECT_FALSE(meter.finish(0.2).ok);
}

RequestRecord ok_record(int turn, double ttft, double e2e, int tokens) {
  RequestRecord r;
  r.ok = true;
  r.status = 200;
  r.turn = turn;
  r.ttft_s = ttft;
  r.e2e_s = e2e;
  r.output_tokens = tokens;
  r.usage_reported = true;
  r.prompt_tokens = 10;
  r.itl_s.assign(static_cast<std::size_t>(tokens - 1), (e2e - ttft) / (tokens - 1));
  return r;
}

TEST(SummaryTest, CountsThroughputAndErrors) {
  std::vector<RequestRecord> records{ok_record(1, 0.5, 1.5, 11), ok_record(2, 0.1, 1.1, 11),
                                     ok_record(2, 0.2, 1.2, 11)};
  records[1].cached_tokens = 8;  // 2 new tokens; records[2] does not say, so it is left out
  records[0].server_prompt_s = 0.4;
  records[2].server_prompt_s = 0.05;
  records[2].ttft_s = -1;  // showed no text
  RequestRecord bad;
  bad.status = 400;
  bad.error = "too long";
  records.push_back(bad);
  records.push_back(bad);
  RequestRecord gone;
  gone.error = "cannot connect";
  records.push_back(gone);

  const auto s = summarize(records, 2.0, /*conversations=*/true);
  EXPECT_EQ(s.requests, 6u);
  EXPECT_EQ(s.ok, 3u);
  EXPECT_EQ(s.failed, 3u);
  EXPECT_EQ(s.output_tokens, 33);
  EXPECT_EQ(s.prompt_tokens, 30);
  EXPECT_DOUBLE_EQ(s.output_tokens_per_s, 16.5);
  EXPECT_DOUBLE_EQ(s.requests_per_s, 1.5);
  EXPECT_EQ(s.ttft_ms.count, 2u);
  EXPECT_EQ(s.without_text, 1u);
  EXPECT_NEAR(s.tpot_ms.mean, 100, 1e-9);
  EXPECT_EQ(s.itl_ms.count, 30u);
  EXPECT_EQ(s.ttft_first_turn_ms.count, 1u);
  EXPECT_NEAR(s.ttft_first_turn_ms.p50, 500, 1e-9);
  EXPECT_EQ(s.ttft_later_turns_ms.count, 1u);
  EXPECT_NEAR(s.ttft_later_turns_ms.mean, 100, 1e-9);
  EXPECT_EQ(s.server_prompt_ms.count, 2u);
  ASSERT_EQ(s.server_prompt_later_turns_ms.count, 1u);
  EXPECT_NEAR(s.server_prompt_later_turns_ms.p50, 50, 1e-9);
  EXPECT_EQ(s.new_prompt_tokens_later_turns.count, 1u);
  EXPECT_DOUBLE_EQ(s.new_prompt_tokens_later_turns.p50, 2);
  ASSERT_EQ(s.errors.size(), 2u);
  EXPECT_EQ(s.errors[0].count, 2u);  // most frequent first
  EXPECT_EQ(s.errors[0].status, 400);
  EXPECT_EQ(s.errors[1].message, "cannot connect");
}

TEST(SummaryTest, ErrorsDifferingInNumbersAreOneKind) {
  RequestRecord a;
  a.status = 400;
  a.error = "the prompt is 2618 tokens, but the context holds 512";
  RequestRecord b = a;
  b.error = "the prompt is 2705 tokens, but the context holds 512";
  RequestRecord c = a;
  c.error = "the prompt is too long";
  const auto s = summarize({a, b, c}, 1.0, false);
  ASSERT_EQ(s.errors.size(), 2u);
  EXPECT_EQ(s.errors[0].count, 2u);
  EXPECT_EQ(s.errors[0].message, a.error);  // the first one stands for its kind
  EXPECT_EQ(s.errors[1].message, c.error);
}

TEST(SummaryTest, NothingSucceeded) {
  RequestRecord bad;
  bad.error = "refused";
  const auto s = summarize({bad}, 1.0, false);
  EXPECT_EQ(s.ok, 0u);
  EXPECT_EQ(s.ttft_ms.count, 0u);
  EXPECT_DOUBLE_EQ(s.output_tokens_per_s, 0);
}

}  // namespace
}  // namespace clawbot::bench
