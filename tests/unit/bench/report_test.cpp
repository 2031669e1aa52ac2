#include "bench/report.h"

#include <gtest/gtest.h>

namespace clawbot::bench {
namespace {

TEST(ReportTest, ShellQuote) {
  EXPECT_EQ(shell_quote("http://127.0.0.1:5000"), "http://127.0.0.1:5000");
  EXPECT_EQ(shell_quote("my model"), "'my model'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote(""), "''");
}

TEST(ReportTest, ReproduceSpellsOutTheRun) {
  BenchOptions used;
  used.url = "http://10.0.0.2:5000";
  used.model = "qwen3";
  used.concurrency = 8;
  used.requests = 200;
  used.max_tokens = 64;
  used.api_key = "secret";
  const auto cmd = reproduce_command(used);
  EXPECT_EQ(cmd.rfind("clawbot bench --url http://10.0.0.2:5000 --model qwen3 --workload independent", 0), 0u)
      << cmd;
  for (const char* part : {"--concurrency 8", "--requests 200", "--max-tokens 64", "--prompt-tokens 128",
                           "--temperature 0", "--seed 42"}) {
    EXPECT_NE(cmd.find(part), std::string::npos) << part << " in " << cmd;
  }
  EXPECT_EQ(cmd.find("secret"), std::string::npos);  // never the key itself
  EXPECT_EQ(cmd.find("--turns"), std::string::npos);

  used.workload = "conversations";
  used.requests = 0;
  const auto conv = reproduce_command(used);
  EXPECT_NE(conv.find("--conversations 8 --turns 3 --system-prompt-tokens 128"), std::string::npos) << conv;
  EXPECT_EQ(conv.find("--requests"), std::string::npos);
}

TEST(ReportTest, JsonHasTheFiguresAndNullsForNone) {
  BenchOptions used;
  used.model = "m";
  used.requests = 2;
  RunResult run;
  RequestRecord ok;
  ok.ok = true;
  ok.status = 200;
  ok.ttft_s = 0.01;
  ok.e2e_s = 0.05;
  ok.output_tokens = 5;
  ok.itl_s = {0.01, 0.01, 0.01, 0.01};
  RequestRecord bad;
  bad.index = 1;
  bad.status = 503;
  bad.error = "busy";
  run.records = {ok, bad};
  run.duration_s = 0.1;
  run.prompt.tokens_per_word = 2.5;
  run.prompt.measured = true;
  run.prompt.prompt_words = 51;
  const auto summary = summarize(run.records, run.duration_s, false);
  const auto j = report_json(used, summary, run);
  EXPECT_EQ(j["requests"]["total"], 2);
  EXPECT_EQ(j["requests"]["ok"], 1);
  EXPECT_EQ(j["requests"]["failed"], 1);
  EXPECT_EQ(j["parameters"]["model"], "m");
  EXPECT_NEAR(j["ttft_ms"]["p50"].get<double>(), 10, 1e-9);
  EXPECT_NEAR(j["tpot_ms"]["mean"].get<double>(), 10, 1e-9);
  EXPECT_EQ(j["itl_ms"]["count"], 4);
  EXPECT_FALSE(j.contains("ttft_first_turn_ms"));
  EXPECT_EQ(j["errors"][0]["status"], 503);
  EXPECT_EQ(j["per_request"][1]["error"], "busy");
  EXPECT_TRUE(j["per_request"][1]["ttft_ms"].is_null());
  EXPECT_EQ(j["command"], reproduce_command(used));
  EXPECT_EQ(j["prompt_calibration"]["tokens_per_word"], 2.5);
  EXPECT_EQ(j["prompt_calibration"]["prompt_words"], 51);

  const auto text = report_text(used, summary, run);
  EXPECT_NE(text.find("TTFT (ms)"), std::string::npos);
  EXPECT_NE(text.find("1 x HTTP 503: busy"), std::string::npos) << text;
  EXPECT_NE(text.find("reproduce: clawbot bench"), std::string::npos);
  EXPECT_NE(text.find("prompts of 51 words at 2.50 tokens per word (measured"), std::string::npos) << text;
}

}  // namespace
}  // namespace clawbot::bench
