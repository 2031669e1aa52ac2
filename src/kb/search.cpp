// Retrieval: full text (FTS5 BM25 over words; character pairs and the trigram index for CJK), exact vector
// search over the embeddings held in memory, reciprocal rank fusion, and the query coverage that the
// refusal threshold reads.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>

#include "kb/kb_internal.h"

namespace clawbot::kb {

namespace {

constexpr double rrf_k = 60;              // Cormack et al.'s constant: ranks matter, scores do not
constexpr std::size_t coverage_hits = 3;  // coverage: the best of the first hits

// Function words and the words every question has: they say nothing about where the answer is.
const std::set<std::string, std::less<>>& stop_words() {
  static const std::set<std::string, std::less<>> words = {
      "a",       "about",   "above",    "after",     "again",   "against",  "all",      "am",     "an",
      "and",     "any",     "are",      "as",        "at",      "be",       "been",     "before", "being",
      "below",   "between", "both",     "but",       "by",      "can",      "could",    "did",    "do",
      "does",    "doing",   "down",     "during",    "each",    "few",      "for",      "from",   "further",
      "had",     "has",     "have",     "having",    "he",      "her",      "here",     "hers",   "him",
      "his",     "how",     "i",        "if",        "in",      "into",     "is",       "it",     "its",
      "itself",  "just",    "me",       "more",      "most",    "my",       "myself",   "no",     "nor",
      "not",     "now",     "of",       "off",       "on",      "once",     "only",     "or",     "other",
      "our",     "ours",    "out",      "over",      "own",     "same",     "she",      "should", "so",
      "some",    "such",    "than",     "that",      "the",     "their",    "theirs",   "them",   "then",
      "there",   "these",   "they",     "this",      "those",   "through",  "to",       "too",    "under",
      "until",   "up",      "very",     "was",       "we",      "were",     "what",     "when",   "where",
      "which",   "while",   "who",      "whom",      "why",     "will",     "with",     "would",  "you",
      "your",    "yours",   "yourself", "s",         "t",       "don",      "get",      "got",    "let",
      "lets",    "want",    "need",     "use",       "using",   "way",      "ways",     "thing",  "things",
      "tell",    "know",    "anything", "something", "there's", "whats",    "possible", "also",   "may",
      "might",   "must",    "one",      "ones",      "many",    "much",     "okay",     "ok",     "please",
      "someone", "anyone",  "kind",     "sort",      "really",  "actually", "able",     "else",   "go",
      "going",   "make",    "made",     "new",       "am",      "im",       "ive",      "id",     "youre",
      "doesnt",  "dont",    "cant",     "isnt",      "arent",   "wont",     "possible", "mean",   "means",
      "exactly", "via",     "without",  "within"};
  return words;
}

// UTF-8: the code point at `at` and its length; a broken byte counts as one character.
std::pair<char32_t, std::size_t> code_point(std::string_view s, std::size_t at) {
  const auto b = static_cast<unsigned char>(s[at]);
  std::size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 1;
  if (at + len > s.size()) return {b, 1};
  auto cp = static_cast<char32_t>(len == 1 ? b : len == 2 ? (b & 0x1f) : len == 3 ? (b & 0x0f) : (b & 0x07));
  for (std::size_t i = 1; i < len; ++i)
    cp = (cp << 6) | static_cast<char32_t>(static_cast<unsigned char>(s[at + i]) & 0x3f);
  return {cp, len};
}

bool is_cjk(char32_t cp) {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x3040 && cp <= 0x30ff) ||
         (cp >= 0xac00 && cp <= 0xd7af) || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x20000 && cp <= 0x2ffff);
}

// Chinese question words and particles (what, how, which, please, me, you, ...): like stop words, they
// say nothing about where the answer is, and they break a query's runs.
bool cjk_stop(char32_t cp) {
  static constexpr std::u32string_view stops = U"的了吗呢吧啊呀么怎样什如何哪谁请问我你您";
  return stops.find(cp) != std::u32string_view::npos;
}

// The runs of CJK characters in a query, each as its characters' bytes (stop characters end a run).
std::vector<std::vector<std::string>> cjk_runs(std::string_view text) {
  std::vector<std::vector<std::string>> runs;
  std::vector<std::string> run;
  for (std::size_t at = 0; at < text.size();) {
    const auto [cp, len] = code_point(text, at);
    if (is_cjk(cp) && !cjk_stop(cp)) {
      run.emplace_back(text.substr(at, len));
    } else if (!run.empty()) {
      runs.push_back(std::move(run));
      run.clear();
    }
    at += len;
  }
  if (!run.empty()) runs.push_back(std::move(run));
  return runs;
}

// The distinct character pairs of the query's CJK runs (a run of one character is itself).
std::vector<std::string> cjk_pairs(std::string_view text) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& run : cjk_runs(text)) {
    if (run.size() == 1 && seen.insert(run[0]).second) out.push_back(run[0]);
    for (std::size_t i = 0; i + 1 < run.size(); ++i) {
      std::string pair = run[i] + run[i + 1];
      if (seen.insert(pair).second) out.push_back(std::move(pair));
    }
  }
  if (out.size() > 64) out.resize(64);
  return out;
}

// An FTS5 query that matches any of the words, each quoted (so no word is read as an operator).
std::string match_any(const std::vector<std::string>& terms) {
  std::string query;
  for (const auto& t : terms) {
    std::string quoted = "\"";
    for (const char c : t) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    query += (query.empty() ? "" : " OR ") + quoted + "\"";
  }
  return query;
}

using Ranked = std::vector<std::pair<std::int64_t, double>>;  // chunk id, score; best first

Ranked fuse(const std::vector<const Ranked*>& lists) {
  std::unordered_map<std::int64_t, double> score;
  for (const Ranked* list : lists)
    for (std::size_t r = 0; r < list->size(); ++r) score[(*list)[r].first] += 1.0 / (rrf_k + double(r + 1));
  Ranked out(score.begin(), score.end());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  return out;
}

// Eight independent sums: no chain of additions waits on the one before, and the compiler may use one vector
// register for all eight (the order of additions differs from a plain loop's; the ranking does not care).
float dot_product(const float* a, const float* b, std::size_t n) {
  float sums[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (std::size_t k = 0; k < 8; ++k) sums[k] += a[i + k] * b[i + k];
  float dot = 0;
  for (; i < n; ++i) dot += a[i] * b[i];
  for (const float s : sums) dot += s;
  return dot;
}

double idf(double n, double df) {
  return std::log((n - df + 0.5) / (df + 0.5) + 1.0);
}

}  // namespace

bool has_cjk(std::string_view text) {
  for (std::size_t at = 0; at < text.size();) {
    const auto [cp, len] = code_point(text, at);
    if (is_cjk(cp)) return true;
    at += len;
  }
  return false;
}

std::vector<std::string> content_words(std::string_view text) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  std::string word;
  const auto flush = [&] {
    // "apt-get" and "don't" arrive in pieces; FTS5's tokenizer splits them the same way.
    if (!word.empty() && !stop_words().contains(word) && seen.insert(word).second) out.push_back(word);
    word.clear();
  };
  // As many words as a question has (the CJK pairs stop at 64 too): each costs queries, under the base's
  // lock.
  for (std::size_t at = 0; at < text.size() && out.size() < 64;) {
    const auto [cp, len] = code_point(text, at);
    // Letters of other scripts count; punctuation blocks (general, CJK, full-width) do not.
    const bool punctuation = cp < 0xc0 || (cp >= 0x2000 && cp <= 0x2bff) || (cp >= 0x3000 && cp <= 0x303f) ||
                             (cp >= 0xff00 && cp <= 0xffef);
    const bool letter =
        (cp < 0x80 && std::isalnum(static_cast<int>(cp)) != 0) || (!punctuation && !is_cjk(cp));
    if (letter) {
      for (std::size_t i = 0; i < len; ++i)
        word += static_cast<char>(std::tolower(static_cast<unsigned char>(text[at + i])));
    } else {
      flush();
    }
    at += len;
  }
  flush();
  return out;
}

std::string_view search_mode_name(SearchMode mode) {
  switch (mode) {
    case SearchMode::bm25:
      return "bm25";
    case SearchMode::vector:
      return "vector";
    case SearchMode::hybrid:
      return "hybrid";
  }
  return "hybrid";
}

std::optional<SearchMode> search_mode_from(std::string_view name) {
  for (const auto mode : {SearchMode::bm25, SearchMode::vector, SearchMode::hybrid})
    if (name == search_mode_name(mode)) return mode;
  return std::nullopt;
}

std::vector<SearchHit> KnowledgeBase::search(std::string_view query, const std::vector<float>* query_vector,
                                             const SearchOptions& options) {
  auto& impl = *impl_;
  auto& db = impl.db;
  const std::size_t limit = std::max(options.candidates, options.top_k);

  // Full text: words through FTS5 (porter stems), CJK through character pairs and trigrams.
  Ranked words_ranked, pairs_ranked, trigrams_ranked;
  std::unordered_map<std::int64_t, double> bm25_of;
  if (options.mode != SearchMode::vector) {
    const auto words = content_words(query);
    if (!words.empty()) {
      // bm25's column weights: a word in the heading path counts twice a word in the text.
      sqlite::Statement st(
          db,
          "SELECT rowid, bm25(chunks_fts, 2.0, 1.0) AS rank FROM chunks_fts WHERE chunks_fts MATCH ?1 "
          "ORDER BY rank LIMIT ?2");
      st.bind(1, match_any(words)).bind(2, static_cast<std::int64_t>(limit));
      while (st.step()) {
        words_ranked.emplace_back(st.int64_at(0), -st.double_at(1));
        bm25_of[st.int64_at(0)] = -st.double_at(1);
      }
    }
    const auto pairs = cjk_pairs(query);
    if (!pairs.empty()) {
      sqlite::Statement total(db, "SELECT count(*) FROM chunks WHERE cjk = 1");
      total.step();
      const double n = static_cast<double>(total.int64_at(0));
      std::unordered_map<std::int64_t, double> score;
      sqlite::Statement st(
          db, "SELECT id FROM chunks WHERE cjk = 1 AND (instr(text, ?1) > 0 OR instr(heading_path, ?1) > 0)");
      for (const auto& pair : pairs) {
        std::vector<std::int64_t> ids;
        st.bind(1, pair);
        while (st.step()) ids.push_back(st.int64_at(0));
        st.reset();
        const double weight = idf(n, static_cast<double>(ids.size()));
        for (const auto id : ids) score[id] += weight;
      }
      pairs_ranked.assign(score.begin(), score.end());
      std::sort(pairs_ranked.begin(), pairs_ranked.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
      });
      if (pairs_ranked.size() > limit) pairs_ranked.resize(limit);
      // Runs of three characters or more: the trigram index ranks the chunks that hold them by BM25.
      std::vector<std::string> trigrams;
      for (const auto& run : cjk_runs(query))
        for (std::size_t i = 0; i + 2 < run.size() && trigrams.size() < 64; ++i)
          trigrams.push_back(run[i] + run[i + 1] + run[i + 2]);
      if (!trigrams.empty()) {
        sqlite::Statement tri(
            db,
            "SELECT rowid, bm25(chunks_cjk) AS rank FROM chunks_cjk WHERE chunks_cjk MATCH ?1 "
            "ORDER BY rank LIMIT ?2");
        tri.bind(1, match_any(trigrams)).bind(2, static_cast<std::int64_t>(limit));
        while (tri.step()) trigrams_ranked.emplace_back(tri.int64_at(0), -tri.double_at(1));
      }
    }
  }
  Ranked text_ranked;
  {
    std::vector<const Ranked*> lists;
    for (const Ranked* r : {&words_ranked, &pairs_ranked, &trigrams_ranked})
      if (!r->empty()) lists.push_back(r);
    text_ranked = lists.size() == 1 ? *lists[0] : fuse(lists);
  }

  // Vectors: exact dot products with the unit-length embeddings.
  Ranked vector_ranked;
  if (options.mode != SearchMode::bm25) {
    if (query_vector == nullptr || query_vector->empty())
      throw_invalid(std::string(search_mode_name(options.mode)) + " search needs the query's embedding");
    impl.load_vectors();
    if (impl.vector_ids.empty())
      throw_invalid("knowledge base '" + kb_name(impl.path) +
                    "' holds no embeddings (added without an embeddings endpoint): search it in mode bm25 "
                    "(--mode bm25, "
                    "or \"mode\": \"bm25\"), or add its documents again with an embeddings endpoint");
    const auto dim = static_cast<std::size_t>(impl.dimension);
    if (query_vector->size() != dim)
      throw_invalid("the query's embedding has " + std::to_string(query_vector->size()) +
                    " dimensions; knowledge base '" + kb_name(impl.path) + "' has " + std::to_string(dim));
    double norm = 0;
    for (const float x : *query_vector) norm += static_cast<double>(x) * x;
    norm = norm > 0 ? std::sqrt(norm) : 1;
    std::vector<float> q(dim);
    for (std::size_t i = 0; i < dim; ++i) q[i] = static_cast<float>((*query_vector)[i] / norm);
    const std::size_t rows = impl.vector_ids.size();
    std::vector<std::pair<float, std::size_t>> scored(rows);
    for (std::size_t r = 0; r < rows; ++r)
      scored[r] = {dot_product(impl.vectors.data() + r * dim, q.data(), dim), r};
    const std::size_t keep = std::min(limit, rows);
    std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(keep), scored.end(),
                      [](const auto& a, const auto& b) { return a.first > b.first; });
    for (std::size_t i = 0; i < keep; ++i)
      vector_ranked.emplace_back(impl.vector_ids[scored[i].second], scored[i].first);
  }

  Ranked final_ranked = options.mode == SearchMode::bm25 ? text_ranked
                        : options.mode == SearchMode::vector
                            ? vector_ranked
                            : fuse(std::vector<const Ranked*>{&text_ranked, &vector_ranked});
  if (final_ranked.size() > options.top_k) final_ranked.resize(options.top_k);

  std::unordered_map<std::int64_t, std::size_t> text_rank, vector_rank;
  for (std::size_t i = 0; i < text_ranked.size(); ++i) text_rank.emplace(text_ranked[i].first, i + 1);
  std::unordered_map<std::int64_t, double> cosine_of;
  for (std::size_t i = 0; i < vector_ranked.size(); ++i) {
    vector_rank.emplace(vector_ranked[i].first, i + 1);
    cosine_of.emplace(vector_ranked[i].first, vector_ranked[i].second);
  }
  std::vector<SearchHit> hits;
  sqlite::Statement row(db,
                        "SELECT c.heading_path, c.location, c.text, d.source, d.title FROM chunks c "
                        "JOIN documents d ON d.id = c.document_id WHERE c.id = ?");
  for (const auto& [id, score] : final_ranked) {
    row.bind(1, id);
    if (!row.step()) {  // removed since the vectors were loaded
      row.reset();
      continue;
    }
    SearchHit hit;
    hit.chunk_id = id;
    hit.heading_path = row.text_at(0);
    hit.location = row.text_at(1);
    hit.text = row.text_at(2);
    hit.source = row.text_at(3);
    hit.title = row.text_at(4);
    row.reset();
    hit.score = score;
    if (auto it = bm25_of.find(id); it != bm25_of.end()) hit.bm25 = it->second;
    if (auto it = cosine_of.find(id); it != cosine_of.end()) hit.cosine = it->second;
    if (auto it = text_rank.find(id); it != text_rank.end()) hit.bm25_rank = it->second;
    if (auto it = vector_rank.find(id); it != vector_rank.end()) hit.vector_rank = it->second;
    hits.push_back(std::move(hit));
  }
  return hits;
}

double KnowledgeBase::coverage(std::string_view query, std::span<const SearchHit> hits) {
  auto& db = impl_->db;
  const auto words = content_words(query);
  const auto pairs = cjk_pairs(query);
  if ((words.empty() && pairs.empty()) || hits.empty()) return 0;
  const std::size_t considered = std::min(hits.size(), coverage_hits);

  sqlite::Statement total(db, "SELECT count(*), (SELECT count(*) FROM chunks WHERE cjk = 1) FROM chunks");
  total.step();
  const double n = static_cast<double>(total.int64_at(0));
  const double n_cjk = static_cast<double>(total.int64_at(1));

  std::vector<double> covered(considered, 0);
  double all = 0;
  sqlite::Statement df(db, "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?");
  sqlite::Statement in_hit(db, "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ? AND rowid = ?");
  for (const auto& word : words) {
    const std::string match = match_any({word});
    df.bind(1, match);
    df.step();
    const double weight = idf(n, static_cast<double>(df.int64_at(0)));
    df.reset();
    all += weight;
    for (std::size_t h = 0; h < considered; ++h) {
      in_hit.bind(1, match).bind(2, hits[h].chunk_id);
      in_hit.step();
      if (in_hit.int64_at(0) > 0) covered[h] += weight;
      in_hit.reset();
    }
  }
  sqlite::Statement pair_df(db, "SELECT count(*) FROM chunks WHERE cjk = 1 AND instr(text, ?) > 0");
  for (const auto& pair : pairs) {
    pair_df.bind(1, pair);
    pair_df.step();
    const double weight = idf(n_cjk, static_cast<double>(pair_df.int64_at(0)));
    pair_df.reset();
    all += weight;
    for (std::size_t h = 0; h < considered; ++h)
      if (hits[h].text.find(pair) != std::string::npos ||
          hits[h].heading_path.find(pair) != std::string::npos)
        covered[h] += weight;
  }
  if (all <= 0) return 0;
  return *std::max_element(covered.begin(), covered.end()) / all;
}

}  // namespace clawbot::kb
