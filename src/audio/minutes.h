// `clawbot transcribe --minutes`: a transcript sent to the chat model for minutes (a summary, the decisions,
// the action items). A transcript longer than the model's context is split at segment boundaries into parts
// that fit (measured with the server's /tokenize, else estimated), each part is summarised, and the parts'
// notes are combined (again in parts while they do not fit) into one set of minutes.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "client/api_client.h"

namespace clawbot::audio {

// The chat model could not write the minutes: what happened and what to check.
class MinutesError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct MinutesPlan {
  std::int64_t context = 0;        // tokens per request
  std::int64_t answer_tokens = 0;  // kept for each answer
  std::int64_t part_tokens = 0;    // transcript tokens per request
  std::size_t parts = 0;           // requests for the transcript (1: it fits)
};

struct MinutesResult {
  std::string text;
  MinutesPlan plan;
  int requests = 0;  // chat requests sent in all
};

// `lines`: the transcript, one segment a line ("[00:01:02] text"). Throws MinutesError.
MinutesResult write_minutes(client::ApiClient& chat, const std::vector<std::string>& lines,
                            const std::function<void(std::string_view)>& progress = {});

// Cuts `lines` into parts (lines joined, each ending in a newline) whose `tokens` (each line's count) sum to
// at most `budget`; a line over the budget alone is cut by bytes into pieces of about `budget` tokens.
std::vector<std::string> split_to_fit(const std::vector<std::string>& lines,
                                      const std::vector<std::int64_t>& tokens, std::int64_t budget);

}  // namespace clawbot::audio
