// Drives the workload: C clients on one thread, each with its own keep-alive connection, streaming chat
// completions and measuring each one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/stats.h"
#include "bench/workload.h"
#include "common/http_client.h"

namespace clawbot::bench {

// How many tokens one of make_prompt's words is on this endpoint, and the prompt lengths in words that
// follow.
struct PromptCalibration {
  double tokens_per_word = 1;
  bool measured = false;  // else assumed (the endpoint reported no usage)
  int prompt_words = 0;
  int system_prompt_words = 0;
};

struct RunPlan {
  http::Url url;  // the base, without /v1
  std::string api_key;
  RequestSettings request;
  bool conversations = false;
  int concurrency = 1;
  int requests = 0;       // 0: no cap
  double duration_s = 0;  // 0: no time limit
  int conversation_count = 1;
  int turns = 1;
  PromptCalibration prompt;  // lengths of the user messages and the system prompt
  std::uint64_t seed = 42;
  double timeout_s = 300;
};

struct RunResult {
  std::vector<RequestRecord> records;  // in order of completion
  double duration_s = 0;               // from the first request to the end of the last
  bool interrupted = false;            // Ctrl-C: requests cut short are left out
  int skipped_turns = 0;               // conversation turns not sent because an earlier turn failed
  PromptCalibration prompt;            // as planned
};

// Shows how far the run is, on stderr when it is a terminal.
class Progress {
 public:
  // total: requests expected (0 when only the duration bounds the run).
  Progress(bool enabled, std::size_t total, double duration_s);
  void update(std::size_t done, std::size_t failed, double elapsed_s);
  void finish();
  bool enabled() const noexcept { return enabled_; }

 private:
  bool enabled_;
  std::size_t total_;
  double duration_s_;
  bool drawn_ = false;
  double last_draw_s_ = 0;
};

// Runs the plan to the end (or until Ctrl-C).
RunResult run_workload(const RunPlan& plan, Progress& progress);

// The error text of a non-streamed answer: OpenAI's error.message when the body has one.
std::string describe_answer(int status, const std::string& content_type, const std::string& body);

}  // namespace clawbot::bench
