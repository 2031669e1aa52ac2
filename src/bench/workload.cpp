#include "bench/workload.h"

#include <random>

namespace clawbot::bench {
namespace {

using json = nlohmann::json;

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

const std::vector<std::string>& word_list() {
  static const std::vector<std::string> words{
      "the",    "a",      "little",  "big",      "old",    "new",     "good",   "happy",  "sad",     "small",
      "red",    "blue",   "green",   "warm",     "cold",   "bright",  "dark",   "quiet",  "loud",    "fast",
      "slow",   "kind",   "brave",   "funny",    "tall",   "long",    "short",  "soft",   "hard",    "sweet",
      "dog",    "cat",    "bird",    "fish",     "tree",   "house",   "park",   "river",  "sun",     "moon",
      "star",   "sky",    "rain",    "snow",     "wind",   "road",    "car",    "boat",   "train",   "ball",
      "book",   "box",    "door",    "window",   "table",  "chair",   "bed",    "cup",    "bread",   "apple",
      "cake",   "water",  "milk",    "garden",   "flower", "friend",  "mother", "father", "girl",    "boy",
      "man",    "woman",  "child",   "teacher",  "school", "town",    "city",   "forest", "hill",    "sea",
      "day",    "night",  "morning", "time",     "year",   "week",    "game",   "song",   "story",   "name",
      "hand",   "head",   "eye",     "face",     "heart",  "idea",    "world",  "home",   "room",    "light",
      "went",   "saw",    "found",   "made",     "said",   "took",    "gave",   "came",   "ran",     "jumped",
      "played", "looked", "wanted",  "liked",    "helped", "asked",   "told",   "knew",   "thought", "felt",
      "opened", "closed", "walked",  "talked",   "smiled", "laughed", "cried",  "sang",   "read",    "wrote",
      "is",     "was",    "are",     "were",     "has",    "had",     "can",    "will",   "would",   "could",
      "and",    "but",    "so",      "then",     "when",   "because", "if",     "while",  "after",   "before",
      "in",     "on",     "at",      "to",       "from",   "with",    "under",  "over",   "near",    "into",
      "he",     "she",    "they",    "we",       "you",    "it",      "his",    "her",    "their",   "our",
      "very",   "all",    "some",    "every",    "one",    "two",     "three",  "many",   "more",    "most",
      "again",  "away",   "back",    "down",     "up",     "out",     "there",  "here",   "now",     "soon",
      "always", "never",  "often",   "together", "alone",  "first",   "last",   "next",   "other",   "same"};
  return words;
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  return splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ index);
}

std::string make_prompt(std::uint64_t seed, int words) {
  const auto& list = word_list();
  std::mt19937_64 rng(seed);  // mt19937_64's sequence is fixed by the standard; `% n` keeps the choice so too
  std::string text;
  int left = words;
  while (left > 0) {
    const int length = left <= 2 ? left : std::min(6 + static_cast<int>(rng() % 7), left - 1);
    for (int i = 0; i < length; ++i) {
      std::string word = list[rng() % list.size()];
      if (i == 0) {
        word[0] = static_cast<char>(word[0] - 'a' + 'A');
        if (!text.empty()) text += ' ';
      } else {
        text += ' ';
      }
      text += word;
    }
    left -= length;
    if (left > 0) {
      text += '.';
      --left;
    }
  }
  return text;
}

json chat_request(const RequestSettings& settings, const json& messages) {
  json body = {
      {"model", settings.model},
      {"messages", messages},
      {"max_tokens", settings.max_tokens},
      {"temperature", settings.temperature},
      {"seed", settings.seed},
      {"stream", true},
      {"stream_options", {{"include_usage", true}}},
  };
  if (settings.ignore_eos) {
    // Honoured by vLLM and llama-server (each answer is max_tokens long); others ignore them.
    body["ignore_eos"] = true;
    body["min_tokens"] = settings.max_tokens;
  }
  return body;
}

// ---------------------------------------------------------------- Conversation

Conversation::Conversation(std::uint64_t seed, int index, const std::string& system_prompt, int prompt_words)
    : seed_(seed), index_(index), prompt_words_(prompt_words), history_(json::array()) {
  if (!system_prompt.empty()) history_.push_back({{"role", "system"}, {"content", system_prompt}});
}

json Conversation::next_messages() const {
  json messages = history_;
  const auto turn_seed = derive_seed(seed_, stream_conversation + static_cast<std::uint64_t>(index_),
                                     static_cast<std::uint64_t>(turns_done_));
  messages.push_back({{"role", "user"}, {"content", make_prompt(turn_seed, prompt_words_)}});
  return messages;
}

void Conversation::answered(const std::string& answer) {
  history_ = next_messages();
  history_.push_back({{"role", "assistant"}, {"content", answer}});
  ++turns_done_;
}

}  // namespace clawbot::bench
