// What one streamed request measured, and the figures over all of them.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace clawbot::bench {

struct RequestRecord {
  int index = 0;          // order of sending
  int conversation = -1;  // conversations workload: which one (0-based); -1 otherwise
  int turn = 0;           // conversations workload: 1-based turn; 0 otherwise
  bool ok = false;
  int status = 0;  // HTTP status; 0 when no response came
  std::string error;
  double start_s = 0;  // since the start of the run
  double ttft_s = -1;  // to the first content; -1 when none came
  double e2e_s = 0;    // to the end of the stream
  int output_tokens = 0;
  bool usage_reported = false;  // output_tokens from usage.completion_tokens, else counted chunks
  int prompt_tokens = -1;       // from usage; -1 when not reported
  int cached_tokens = -1;       // usage.prompt_tokens_details.cached_tokens; -1 when not reported
  // The server's own time from taking the request to its first token (timings.prompt_ms, as llama-server and
  // clawbot report it); -1 when not reported. Unlike TTFT it does not wait for visible text.
  double server_prompt_s = -1;
  std::vector<double> itl_s;  // gaps between successive content chunks
  std::string content;        // the answer (the next turn of a conversation sends it back)

  // (e2e - ttft) / (output_tokens - 1): the mean time per token after the first. Empty below two tokens.
  std::optional<double> tpot_s() const;
  std::optional<double> max_itl_s() const;
};

// Follows one streamed chat completion, event by event, and turns it into a RequestRecord.
class StreamMeter {
 public:
  explicit StreamMeter(double start_s) { record_.start_s = start_s; }

  // One `data:` payload that arrived at `now_s` (seconds since the start of the run).
  void on_data(std::string_view data, double now_s);
  // The request failed: no response, an error status, or a broken stream.
  void fail(int status, std::string message);
  // The stream is over (its end, or a failure) at `now_s`.
  RequestRecord finish(double now_s);

  bool failed() const noexcept { return failed_; }

 private:
  RequestRecord record_;
  bool failed_ = false;
  bool done_ = false;      // [DONE] came
  bool finished_ = false;  // a finish_reason came
  double end_s_ = -1;      // when [DONE] came
  double last_token_s_ = -1;
  int chunks_ = 0;
};

// Linear interpolation between the closest ranks (numpy's default): `sorted` ascending, p in [0, 100].
double percentile(const std::vector<double>& sorted, double p);

struct Distribution {
  std::size_t count = 0;  // the other fields mean nothing when 0
  double mean = 0;
  double min = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double max = 0;
};

// The values are multiplied by `scale` (1000 turns seconds into milliseconds).
Distribution distribution(std::vector<double> values, double scale = 1.0);

struct ErrorCount {
  int status = 0;
  std::string message;
  std::size_t count = 0;
};

struct Summary {
  std::size_t requests = 0;
  std::size_t ok = 0;
  std::size_t failed = 0;
  double duration_s = 0;  // from the start to the end of the last request
  long long output_tokens = 0;
  long long prompt_tokens = 0;
  bool all_usage_reported = true;  // else some output counts are counted chunks
  double output_tokens_per_s = 0;
  double requests_per_s = 0;
  std::size_t without_text = 0;  // successful requests that streamed no text: no TTFT, no ITL
  Distribution ttft_ms;
  Distribution server_prompt_ms;  // timings.prompt_ms, where the server reports it
  Distribution tpot_ms;
  Distribution itl_ms;
  Distribution e2e_ms;
  Distribution max_itl_ms;  // each request's longest gap
  Distribution output_tokens_per_request;
  Distribution prompt_tokens_per_request;
  bool conversations = false;
  Distribution ttft_first_turn_ms;
  Distribution ttft_later_turns_ms;
  Distribution new_prompt_tokens_later_turns;  // prompt minus cached tokens, where the server reports both
  Distribution server_prompt_later_turns_ms;
  std::vector<ErrorCount> errors;  // most frequent first; messages differing only in numbers are one kind
};

// Latency figures use the successful requests; the error list the failed ones.
Summary summarize(const std::vector<RequestRecord>& records, double duration_s, bool conversations);

}  // namespace clawbot::bench
