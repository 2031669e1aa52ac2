// Grounded answers: the prompt that holds the numbered passages, the citations printed under an answer, the
// refusal with the nearest topics, and follow-up questions made to stand alone for retrieval.
#include <algorithm>
#include <cctype>
#include <set>

#include "common/text.h"
#include "kb/kb_internal.h"

namespace clawbot::kb {

namespace {

// Words that point back at an earlier question.
bool refers_back(const std::string& word) {
  static const std::set<std::string> words = {
      "it",  "its", "that", "this", "they",   "them",   "those",   "these", "there", "one",  "he",
      "she", "him", "her",  "same", "former", "latter", "instead", "also",  "too",   "else", "again"};
  return words.contains(word);
}

}  // namespace

std::string cited_source(const SearchHit& hit) {
  std::string out = hit.source;
  if (!hit.heading_path.empty()) out += " \xc2\xa7 " + hit.heading_path;
  if (!hit.location.empty()) out += " (" + hit.location + ")";
  return out;
}

std::string standalone_question(std::span<const std::string> previous_questions, std::string_view question) {
  if (previous_questions.empty()) return std::string(question);
  // The plain words, stop words kept: does it refer back, and how much does it say on its own?
  std::vector<std::string> plain;
  std::string word;
  for (const char c : question) {
    if (std::isalnum(static_cast<unsigned char>(c)) != 0) {
      word += text::lower(c);
    } else if (!word.empty()) {
      plain.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) plain.push_back(word);
  bool back = false;
  for (const auto& w : plain) back = back || refers_back(w);
  const std::size_t own = content_words(question).size();
  if (!back && own >= 3) return std::string(question);
  // The last earlier question that had content words of its own.
  for (auto it = previous_questions.rbegin(); it != previous_questions.rend(); ++it) {
    const auto earlier = content_words(*it);
    if (earlier.empty()) continue;
    std::string context;
    for (const auto& w : earlier) context += " " + w;
    return std::string(question) + " (about:" + context + ")";
  }
  return std::string(question);
}

std::string grounded_system_prompt(std::span<const SearchHit> passages) {
  std::string out =
      "You answer questions from the passages of a knowledge base below, and from nothing else.\n"
      "Rules:\n"
      "- Use only facts stated in the passages. Cite each fact with the passage's number in brackets, like "
      "[1] or [2][3].\n"
      "- If the passages do not contain the answer, say: \"The knowledge base does not say.\" Do not guess.\n"
      "- Answer briefly, in the language of the question.\n\nPassages:\n";
  for (std::size_t i = 0; i < passages.size(); ++i) {
    out += "\n[" + std::to_string(i + 1) + "] ";
    if (!passages[i].heading_path.empty()) out += passages[i].heading_path + "\n";
    out += passages[i].text + "\n";
  }
  return out;
}

std::string refusal_text(std::span<const SearchHit> nearest) {
  std::string out = "Not in the knowledge base: no passage answers this question.";
  std::vector<std::string> topics;
  for (const auto& hit : nearest) {
    const std::string topic = hit.heading_path.empty() ? hit.title : hit.heading_path;
    if (!topic.empty() && std::find(topics.begin(), topics.end(), topic) == topics.end())
      topics.push_back(topic);
  }
  if (!topics.empty()) {
    out += "\nThe nearest topics it has:";
    for (const auto& t : topics) out += "\n- " + t;
  }
  return out;
}

std::string citation_lines(std::span<const SearchHit> passages) {
  std::string out;
  for (std::size_t i = 0; i < passages.size(); ++i)
    out += "[" + std::to_string(i + 1) + "] " + cited_source(passages[i]) + "\n";
  return out;
}

nlohmann::json hit_json(const SearchHit& h, std::size_t rank) {
  using nlohmann::json;
  const auto number = [](const std::optional<double>& v) { return v ? json(*v) : json(nullptr); };
  const auto count = [](const std::optional<std::size_t>& v) { return v ? json(*v) : json(nullptr); };
  return {{"rank", rank},
          {"score", h.score},
          {"bm25", number(h.bm25)},
          {"cosine", number(h.cosine)},
          {"rerank", number(h.rerank)},
          {"bm25_rank", count(h.bm25_rank)},
          {"vector_rank", count(h.vector_rank)},
          {"chunk_id", h.chunk_id},
          {"source", h.source},
          {"title", h.title},
          {"heading_path", h.heading_path},
          {"location", h.location},
          {"text", h.text}};
}

nlohmann::json citations_json(std::span<const SearchHit> passages, bool with_text) {
  nlohmann::json out = nlohmann::json::array();
  for (std::size_t i = 0; i < passages.size(); ++i) {
    const auto& h = passages[i];
    nlohmann::json c = {{"index", i + 1},         {"source", h.source},
                        {"title", h.title},       {"heading_path", h.heading_path},
                        {"location", h.location}, {"chunk_id", h.chunk_id},
                        {"score", h.score}};
    if (with_text) c["text"] = h.text;
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace clawbot::kb
