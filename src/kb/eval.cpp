// `kb eval`: hit@1, hit@5 and MRR on questions with an expected section; the precision and recall of "not in
// the knowledge base" on questions the documents do not answer; and the threshold that separates them.
#include <algorithm>
#include <cctype>

#include "common/json_read.h"
#include "kb/kb.h"

namespace clawbot::kb {

namespace {

bool digit(char c) {
  return std::isdigit(static_cast<unsigned char>(c)) != 0;
}

// `expected` in `text` with no digit (or number dot) just before and no digit just after: "7.1" is in
// "7.1. What is a Debian package?" but not in "7.12. How do I ..." nor in "17.1.".
bool found_at_boundary(std::string_view text, std::string_view expected) {
  for (std::size_t at = text.find(expected); at != std::string_view::npos; at = text.find(expected, at + 1)) {
    const bool before_ok = at == 0 || (!digit(text[at - 1]) && text[at - 1] != '.');
    const std::size_t end = at + expected.size();
    const bool after_ok = end == text.size() || !digit(text[end]);
    if (before_ok && after_ok) return true;
  }
  return false;
}

}  // namespace

bool hit_matches(const SearchHit& hit, std::string_view expected) {
  if (found_at_boundary(hit.heading_path, expected)) return true;
  const std::size_t slash = hit.source.rfind('/');
  const std::string_view file =
      std::string_view(hit.source).substr(slash == std::string::npos ? 0 : slash + 1);
  return file == expected || hit.source == expected;
}

std::vector<EvalQuestion> parse_eval_set(std::string_view text, std::string_view origin) {
  std::vector<EvalQuestion> out;
  std::size_t line_number = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    const auto where = std::string(origin) + ":" + std::to_string(line_number);
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const nlohmann::json item = json_read::parse_or_throw(line, where);
    if (!item.is_object()) throw_invalid(where + ": each line must be a JSON object");
    const auto q = item.find("question");
    if (q == item.end() || !q->is_string() || q->get<std::string>().empty())
      throw_invalid(where + ": \"question\" must be a non-empty string");
    EvalQuestion question{q->get<std::string>(), std::nullopt};
    const auto e = item.find("expected");
    if (e == item.end())
      throw_invalid(where + ": \"expected\" is missing (a section or file; null when unanswerable)");
    if (e->is_string()) {
      question.expected = e->get<std::string>();
    } else if (!e->is_null()) {
      throw_invalid(where + ": \"expected\" must be a string or null, got " + json_read::describe(*e));
    }
    out.push_back(std::move(question));
  }
  return out;
}

EvalFigures score_eval(std::span<const EvalQuestion> questions, const EvalRun& run, double threshold) {
  EvalFigures f;
  f.threshold = threshold;
  std::size_t refused = 0, refused_right = 0, hit1 = 0, hit5 = 0;
  double reciprocal = 0;
  for (std::size_t i = 0; i < questions.size(); ++i) {
    const bool refuse = run.coverage[i] < threshold;
    if (refuse) ++refused;
    if (!questions[i].expected) {
      ++f.unanswerable;
      if (refuse) ++refused_right;
      continue;
    }
    ++f.answerable;
    if (refuse) ++f.wrongly_refused;
    const auto& hits = run.hits[i];
    std::optional<std::size_t> rank;
    for (std::size_t r = 0; r < hits.size() && !rank; ++r)
      if (hit_matches(hits[r], *questions[i].expected)) rank = r + 1;
    if (rank == 1) ++hit1;
    if (rank && *rank <= 5) {
      ++hit5;
    } else {
      f.misses.push_back(questions[i].question + " (expected " + *questions[i].expected + ")");
    }
    if (rank) reciprocal += 1.0 / static_cast<double>(*rank);
  }
  if (f.answerable > 0) {
    const auto n = static_cast<double>(f.answerable);
    f.hit_at_1 = static_cast<double>(hit1) / n;
    f.hit_at_5 = static_cast<double>(hit5) / n;
    f.mrr = reciprocal / n;
  }
  f.refusal_precision =
      refused == 0 ? 1.0 : static_cast<double>(refused_right) / static_cast<double>(refused);
  f.refusal_recall =
      f.unanswerable == 0 ? 1.0 : static_cast<double>(refused_right) / static_cast<double>(f.unanswerable);
  return f;
}

std::optional<double> calibrate_threshold(std::span<const EvalQuestion> questions, const EvalRun& run,
                                          double min_precision) {
  // Candidate thresholds: just above each coverage seen (refusing it and everything below).
  std::vector<double> candidates;
  for (const double c : run.coverage) candidates.push_back(c + 1e-6);
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  std::optional<double> best;
  EvalFigures best_figures;
  for (const double t : candidates) {
    const EvalFigures f = score_eval(questions, run, t);
    if (f.refusal_precision < min_precision) continue;
    const bool better =
        !best || f.refusal_recall > best_figures.refusal_recall ||
        (f.refusal_recall == best_figures.refusal_recall && f.wrongly_refused < best_figures.wrongly_refused);
    if (better) {
      best = t;
      best_figures = f;
    }
  }
  return best;
}

}  // namespace clawbot::kb
