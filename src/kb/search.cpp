// Retrieval: full text (FTS5 BM25 over the query's rarest words; character pairs and the trigram index for
// CJK), vector search over the embeddings held in memory as 8-bit codes (the best rows scored again exactly),
// reciprocal rank fusion, and the query coverage that the refusal threshold reads.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <unordered_map>

#include "common/text.h"
#include "kb/kb_internal.h"

namespace clawbot::kb {

namespace {

constexpr double rrf_k = 60;              // Cormack et al.'s constant: ranks matter, scores do not
constexpr std::size_t coverage_hits = 3;  // coverage: the best of the first hits
// Vector search scores again exactly at least this many of the best rows by their 8-bit codes (and four
// times the candidates asked for).
constexpr std::size_t vector_rescore_pool = 256;

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

std::vector<std::string> match_words(std::vector<QueryWord> words, std::int64_t chunks) {
  std::erase_if(words, [](const QueryWord& w) { return w.df == 0; });
  std::stable_sort(words.begin(), words.end(), [](const auto& a, const auto& b) { return a.df < b.df; });
  // When every word is that frequent, their near-zero scores are all the ranking has: they stay.
  const bool informative = !words.empty() && words.front().df * 2 <= chunks;
  std::vector<std::string> out;
  std::int64_t postings = 0;
  for (const auto& w : words) {
    if (out.size() == max_match_words || (informative && w.df * 2 > chunks)) break;
    if (!out.empty() && postings + w.df > match_postings_budget) break;
    out.push_back(w.word);
    postings += w.df;
  }
  return out;
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
    const auto [cp, len] = utf8_code_point(text, at);
    // Letters of other scripts count; punctuation blocks (general, CJK, full-width) do not.
    const bool punctuation = cp < 0xc0 || (cp >= 0x2000 && cp <= 0x2bff) || (cp >= 0x3000 && cp <= 0x303f) ||
                             (cp >= 0xff00 && cp <= 0xffef);
    const bool letter = (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
                        (!punctuation && !is_cjk(cp));
    if (letter) {
      for (std::size_t i = 0; i < len; ++i) word += text::lower(text[at + i]);
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
  impl.refresh();
  const std::size_t limit = std::max(options.candidates, options.top_k);

  // Full text: words through FTS5 (porter stems), CJK through character pairs and trigrams.
  Ranked words_ranked, pairs_ranked, trigrams_ranked;
  std::unordered_map<std::int64_t, double> bm25_of;
  if (options.mode != SearchMode::vector) {
    const auto words = match_words(impl.query_words(query), impl.kb_counts().chunks);
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
      // Each pair's chunks from the gram index, weighted by how rare the pair is.
      const auto n = static_cast<double>(impl.kb_counts().cjk_chunks);
      std::unordered_map<std::int64_t, double> score;
      sqlite::Statement st(db, "SELECT rowid FROM chunks_cjk_grams WHERE chunks_cjk_grams MATCH ?");
      for (const auto& pair : pairs) {
        const double weight = idf(n, static_cast<double>(impl.gram_frequency(pair)));
        st.bind(1, match_any({pair}));
        while (st.step()) score[st.int64_at(0)] += weight;
        st.reset();
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

  // Vectors: dot products with the unit-length embeddings.
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
    // The best rows by their codes, then those scored again exactly with the stored floats: the codes'
    // rounding moves a score by about 0.001, far less than the gap between the first `limit` rows and the
    // rest of the pool, so the result is exact search's.
    const std::size_t rows = impl.vector_ids.size();
    std::vector<std::int8_t> q8(dim);
    quantize(q, q8.data());
    std::vector<float> approximate(rows);
    score_codes(impl.vector_codes, impl.vector_scales, q8, approximate);
    std::vector<std::uint32_t> order(rows);
    for (std::size_t r = 0; r < rows; ++r) order[r] = static_cast<std::uint32_t>(r);
    const std::size_t pool = std::min(rows, std::max(vector_rescore_pool, limit * 4));
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(pool), order.end(),
                      [&](std::uint32_t a, std::uint32_t b) { return approximate[a] > approximate[b]; });
    sqlite::Statement stored(db, "SELECT vector FROM embeddings WHERE chunk_id = ?");
    std::vector<float> v(dim);
    for (std::size_t i = 0; i < pool; ++i) {
      const std::int64_t id = impl.vector_ids[order[i]];
      stored.bind(1, id);
      if (stored.step() && stored.blob_at(0).size() == dim * sizeof(float)) {  // else removed since loaded
        std::memcpy(v.data(), stored.blob_at(0).data(), dim * sizeof(float));
        vector_ranked.emplace_back(id, dot_product(v.data(), q.data(), dim));
      }
      stored.reset();
    }
    std::sort(vector_ranked.begin(), vector_ranked.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    if (vector_ranked.size() > limit) vector_ranked.resize(limit);
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
  auto& impl = *impl_;
  impl.refresh();
  const auto words = impl.query_words(query);
  const auto pairs = cjk_pairs(query);
  if ((words.empty() && pairs.empty()) || hits.empty()) return 0;
  const std::size_t considered = std::min(hits.size(), coverage_hits);
  const KbCounts& counts = impl.kb_counts();

  // Which terms each hit holds, by the index's own tokenizer: no query per word and hit.
  std::vector<std::set<std::string, std::less<>>> terms_of(considered);
  for (std::size_t h = 0; h < considered; ++h)
    for (const auto& text : {hits[h].heading_path, hits[h].text})
      for (auto& term : impl.tokenizer().terms(text)) terms_of[h].insert(std::move(term));

  std::vector<double> covered(considered, 0);
  double all = 0;
  for (const auto& word : words) {
    const double weight = idf(static_cast<double>(counts.chunks), static_cast<double>(word.df));
    all += weight;
    for (std::size_t h = 0; h < considered; ++h)
      if (std::all_of(word.terms.begin(), word.terms.end(),
                      [&](const std::string& t) { return terms_of[h].contains(t); }))
        covered[h] += weight;
  }
  for (const auto& pair : pairs) {
    const double weight =
        idf(static_cast<double>(counts.cjk_chunks), static_cast<double>(impl.gram_frequency(pair)));
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
