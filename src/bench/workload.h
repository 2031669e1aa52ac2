// What the benchmark sends: seeded prompts of roughly a given number of tokens, and the request bodies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace clawbot::bench {

// Common short English words: in the tokenizers of today's models most are one token with their leading
// space, so n words make roughly n tokens (a small-vocabulary model reads more; `clawbot bench` measures the
// ratio on the endpoint before the run).
const std::vector<std::string>& word_list();

// A seed for the item `index` of the stream `stream` (independent prompts, one conversation's turns, ...):
// each prompt depends only on (seed, stream, index), not on the order in which requests run.
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream, std::uint64_t index);

// Sentences of words from word_list(), chosen by `seed`, `words` long with each period counted as a word.
std::string make_prompt(std::uint64_t seed, int words);

// Streams of derive_seed.
inline constexpr std::uint64_t stream_independent = 1;
inline constexpr std::uint64_t stream_system = 2;
inline constexpr std::uint64_t stream_conversation = 3;  // + conversation index

struct RequestSettings {
  std::string model;
  int max_tokens = 128;
  double temperature = 0;
  std::uint64_t seed = 42;
  bool ignore_eos = true;
};

// The streamed chat-completion body for `messages` ([{"role","content"}, ...]).
nlohmann::json chat_request(const RequestSettings& settings, const nlohmann::json& messages);

// A multi-turn conversation: the shared system prompt, then user turns answered by the server. Turn k sends
// the whole history: system, user 1, assistant 1 (the answer actually received), ..., user k.
class Conversation {
 public:
  // prompt_words: the length of each user turn, in make_prompt's words.
  Conversation(std::uint64_t seed, int index, const std::string& system_prompt, int prompt_words);

  int index() const noexcept { return index_; }
  int turns_done() const noexcept { return turns_done_; }
  // The messages for the next turn (its user message generated from the seed).
  nlohmann::json next_messages() const;
  // Records the answer to the turn next_messages() built.
  void answered(const std::string& answer);

 private:
  std::uint64_t seed_;
  int index_;
  int prompt_words_;
  int turns_done_ = 0;
  nlohmann::json history_;
};

}  // namespace clawbot::bench
