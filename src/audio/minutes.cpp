#include "audio/minutes.h"

#include <algorithm>
#include <optional>
#include <utility>

namespace clawbot::audio {
namespace {

// Short prompts: on a small model's context every token of them is a token less of transcript.
constexpr std::string_view kSystem =
    "You write meeting minutes from a transcript of speech: only what was said, in its language.";
constexpr std::string_view kWhole =
    "Write the minutes of this meeting transcript: Summary, Decisions, Action items (who does what; None "
    "when there are none).\n\nTranscript:\n";
constexpr std::string_view kPart =
    "Part {i} of {n} of a meeting transcript: note its points, decisions and action items, briefly.\n\n";
constexpr std::string_view kCombine =
    "Notes on consecutive parts of one meeting. Combine them into its minutes: Summary, Decisions, Action "
    "items (who does what; None when there are none).\n\nNotes:\n";
// What a chat template adds around the messages (role markers): measured on none, so kept free.
constexpr std::int64_t kTemplateTokens = 64;

std::string fill(std::string_view text, std::size_t i, std::size_t n) {
  std::string out(text);
  for (const auto& [key, value] :
       {std::pair{std::string("{i}"), std::to_string(i)}, std::pair{std::string("{n}"), std::to_string(n)}})
    for (auto at = out.find(key); at != std::string::npos; at = out.find(key, at))
      out.replace(at, key.size(), value);
  return out;
}

// Token counts from the server's /tokenize (llama-server's and ours), else an estimate from bytes.
class TokenCounter {
 public:
  explicit TokenCounter(client::ApiClient& chat) : chat_(chat) {}

  std::int64_t count(std::string_view text) {
    if (use_server_) {
      const auto answer = chat_.request_json("/tokenize", {{"content", std::string(text)}});
      if (!answer.failure && answer.body.is_object() && answer.body.contains("tokens") &&
          answer.body["tokens"].is_array())
        return static_cast<std::int64_t>(answer.body["tokens"].size());
      use_server_ = false;  // not a llama.cpp-style server: estimate from here on
    }
    // about 3 bytes a token for English with the usual BPE vocabularies; rounded up to stay on the safe side
    return static_cast<std::int64_t>(text.size() / 3) + 1;
  }

 private:
  client::ApiClient& chat_;
  bool use_server_ = true;
};

std::string ask(client::ApiClient& chat, const std::string& user, std::int64_t answer_tokens, int& requests) {
  client::ChatRequest request;
  request.messages.push_back({"system", std::string(kSystem)});
  request.messages.push_back({"user", user});
  request.max_tokens = answer_tokens;
  ++requests;
  const client::ChatOutcome out = chat.chat(request, [](std::string_view) {});
  if (out.failure)
    throw MinutesError("the chat model at " + chat.endpoint() + " did not answer: " + out.failure->message);
  return std::string(out.text);
}

}  // namespace

std::vector<std::string> split_to_fit(const std::vector<std::string>& lines,
                                      const std::vector<std::int64_t>& tokens, std::int64_t budget) {
  budget = std::max<std::int64_t>(budget, 1);
  std::vector<std::string> parts;
  std::string part;
  std::int64_t used = 0;
  const auto close = [&] {
    if (!part.empty()) parts.push_back(std::move(part));
    part.clear();
    used = 0;
  };
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::int64_t n = std::max<std::int64_t>(tokens[i], 1);
    if (n > budget) {  // one line longer than a part: cut by bytes, in proportion
      close();
      const auto step = std::max<std::size_t>(
          1, static_cast<std::size_t>(static_cast<double>(lines[i].size()) * static_cast<double>(budget) /
                                      static_cast<double>(n)));
      for (std::size_t at = 0; at < lines[i].size(); at += step) parts.push_back(lines[i].substr(at, step));
      continue;
    }
    if (used + n > budget) close();
    part += lines[i];
    part += '\n';
    used += n;
  }
  close();
  return parts;
}

MinutesResult write_minutes(client::ApiClient& chat, const std::vector<std::string>& lines,
                            const std::function<void(std::string_view)>& progress) {
  MinutesResult result;
  std::optional<client::Failure> failure;
  chat.endpoint_model(&failure);
  if (failure)
    throw MinutesError("the chat model at " + chat.endpoint() + " did not answer: " + failure->message);
  TokenCounter counter(chat);
  MinutesPlan& plan = result.plan;
  plan.context = chat.context_tokens();
  if (plan.context <= 0) plan.context = 4096;  // the server does not say: a common size
  // A quarter of the context for the minutes (at most 1024 tokens); the longest prompt and the chat
  // template's tokens are measured and kept free too; the rest holds transcript. A part's notes get at most
  // a third of that, so that a combining request always takes three notes or more and the rounds converge.
  plan.answer_tokens = std::clamp<std::int64_t>(plan.context / 4, 16, 1024);
  const std::string system(kSystem);
  const std::int64_t overhead =
      std::max({counter.count(system + std::string(kWhole)), counter.count(system + fill(kPart, 99, 99)),
                counter.count(system + std::string(kCombine) + "Part 99:\n")}) +
      kTemplateTokens;
  plan.part_tokens = plan.context - plan.answer_tokens - overhead;
  const std::int64_t note_tokens = std::min(plan.answer_tokens, plan.part_tokens / 3);
  if (note_tokens < 8)
    throw MinutesError("the chat model's context (" + std::to_string(plan.context) +
                       " tokens) is too small for a part of the transcript beside the prompt and an answer");

  std::string whole;
  for (const auto& line : lines) whole += line + "\n";
  if (counter.count(whole) <= plan.part_tokens) {
    plan.parts = 1;
    result.text = ask(chat, std::string(kWhole) + whole, plan.answer_tokens, result.requests);
    return result;
  }
  // Counted a line at a time only when the whole does not fit: no part exceeds its budget.
  std::vector<std::int64_t> tokens;
  tokens.reserve(lines.size());
  for (const auto& line : lines) tokens.push_back(counter.count(line + "\n"));
  const std::vector<std::string> parts = split_to_fit(lines, tokens, plan.part_tokens);
  plan.parts = parts.size();
  std::vector<std::string> notes;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (progress)
      progress("minutes: transcript part " + std::to_string(i + 1) + " of " + std::to_string(parts.size()));
    notes.push_back(ask(chat, fill(kPart, i + 1, parts.size()) + parts[i], note_tokens, result.requests));
  }
  for (;;) {
    std::string joined;
    std::vector<std::int64_t> counts;
    for (std::size_t i = 0; i < notes.size(); ++i) {
      notes[i] = "Part " + std::to_string(i + 1) + ":\n" + notes[i];
      joined += notes[i] + "\n";
      counts.push_back(counter.count(notes[i] + "\n"));
    }
    if (counter.count(joined) <= plan.part_tokens) {
      if (progress) progress("minutes: combining the notes of " + std::to_string(notes.size()) + " parts");
      result.text = ask(chat, std::string(kCombine) + joined, plan.answer_tokens, result.requests);
      return result;
    }
    // The notes are too long for one request: combined a group at a time, then again.
    const std::vector<std::string> groups = split_to_fit(notes, counts, plan.part_tokens);
    if (groups.size() >= notes.size())
      throw MinutesError("the notes of the transcript's parts do not fit the chat model's context of " +
                         std::to_string(plan.context) + " tokens");
    notes.clear();
    for (std::size_t i = 0; i < groups.size(); ++i) {
      if (progress)
        progress("minutes: combining notes, group " + std::to_string(i + 1) + " of " +
                 std::to_string(groups.size()));
      notes.push_back(ask(chat, std::string(kCombine) + groups[i], note_tokens, result.requests));
    }
  }
}

}  // namespace clawbot::audio
