// What the knowledge base's files share: the open database, the word tokenizer of its full-text index, and
// what is read from the file once and kept until the file changes (counts, document frequencies, vectors).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/sqlite_db.h"
#include "kb/kb.h"

struct fts5_tokenizer;
struct Fts5Tokenizer;

namespace clawbot::kb {

// The full-text index's own tokenizer (porter over unicode61, remove_diacritics 2), run outside a query: the
// terms a text is indexed under, as the index's vocabulary spells them.
class WordTokenizer {
 public:
  explicit WordTokenizer(sqlite::Database& db);
  ~WordTokenizer();
  WordTokenizer(const WordTokenizer&) = delete;
  WordTokenizer& operator=(const WordTokenizer&) = delete;
  std::vector<std::string> terms(std::string_view text) const;

 private:
  std::unique_ptr<fts5_tokenizer> api_;
  Fts5Tokenizer* tokenizer_ = nullptr;
};

// A content word of a query with the index terms it is made of and how many chunks hold it (the rarest of
// its terms' counts: a phrase is in no more chunks than its rarest term).
struct QueryWord {
  std::string word;
  std::vector<std::string> terms;
  std::int64_t df = 0;
};

struct KbCounts {
  std::int64_t documents = 0, chunks = 0, embedded = 0, cjk_chunks = 0;
};

struct KnowledgeBase::Impl {
  explicit Impl(const std::filesystem::path& p);
  std::filesystem::path path;
  sqlite::Database db;
  std::unique_ptr<WordTokenizer> word_tokenizer;  // made at the first use

  // Read from the file once and kept until it changes: PRAGMA data_version moves on another connection's
  // commit (another process's `kb add`); `changed_here` marks this connection's own.
  std::int64_t seen_version = -1;
  bool changed_here = true;
  std::optional<KbCounts> counts;
  std::unordered_map<std::string, std::int64_t> term_df, gram_df;  // by index term; by CJK character gram
  // The embeddings, loaded at the first vector search after a change, as 8-bit codes: each unit vector's
  // components divided by its `vector_scales` entry and rounded to -127..127. A scan reads a quarter of the
  // bytes float32 would (the scan is bound by memory bandwidth: 100,000 x 384 floats are 150 MB a query), and
  // holds a quarter of the memory; the best rows are then scored again exactly from the file.
  std::vector<std::int64_t> vector_ids;
  std::vector<std::int8_t> vector_codes;
  std::vector<float> vector_scales;
  std::int64_t dimension = 0;
  bool vectors_loaded = false;

  std::string meta(std::string_view key);
  void set_meta(std::string_view key, std::string_view value);
  // Once the file is known to be a knowledge base: the vocabulary table FTS5 reads document frequencies
  // from (temporary: nothing is written to the file), and the CJK gram index where an older file lacks it.
  void prepare();
  const WordTokenizer& tokenizer();
  // Drops what was kept when the file changed since. Each public entry (search, coverage, info) calls it
  // once, first: what it reads next stays consistent for the rest of the call.
  void refresh();
  const KbCounts& kb_counts();
  void load_vectors();
  // The query's content words with their terms and document frequencies (words that no term indexes left
  // out).
  std::vector<QueryWord> query_words(std::string_view query);
  // How many CJK chunks hold the gram (one character or two).
  std::int64_t gram_frequency(const std::string& gram);
  // Builds the CJK gram index of a knowledge base made before it existed.
  void add_gram_index();
};

// UTF-8: the code point at `at` and its length; a broken byte counts as one character.
std::pair<char32_t, std::size_t> utf8_code_point(std::string_view s, std::size_t at);
// Han, kana, Hangul (CJK punctuation excluded).
bool is_cjk(char32_t cp);

// A unit vector as 8-bit codes (written to `codes`) and the scale that multiplies them back.
float quantize(std::span<const float> vector, std::int8_t* codes);
// The approximate dot product of `query` (codes) with each of `rows` rows of codes, times the row's scale.
void score_codes(std::span<const std::int8_t> codes, std::span<const float> scales,
                 std::span<const std::int8_t> query, std::span<float> scores);

// The name a knowledge base is known by: its file name without ".kb".
std::string kb_name(const std::filesystem::path& path);

// Words of a query for coverage: lower case, letters and digits, stop words left out; CJK runs apart.
std::vector<std::string> content_words(std::string_view text);
// Whether the text holds a CJK character (Han, kana, Hangul; CJK punctuation excluded).
bool has_cjk(std::string_view text);
// The runs of CJK characters of a text, each as its characters' bytes; the question words and particles
// that say nothing about a topic (什么, 怎样, 吗, ...) end a run and are in none.
std::vector<std::vector<std::string>> cjk_runs(std::string_view text);
// The CJK index's grams of a chunk: each distinct character and pair of adjacent characters of its runs, in
// the heading path and in the text, separated by blanks (FTS5's ascii tokenizer reads each as one term).
std::string cjk_grams(std::string_view heading_path, std::string_view text);

// What the word query matches, of `words` in a knowledge base of `chunks` chunks: the rarest words first, at
// most `max_match_words` of them, and no word in more than half the chunks (FTS5's BM25 gives such a word an
// idf of about zero: it would only make FTS5 score most of the table) when a rarer word is there; then no
// more words once their chunks add up to `match_postings_budget`. Words in no chunk are left out (they match
// nothing). What FTS5 scores is then bounded by the rare words' chunks, not by the size of the knowledge
// base.
inline constexpr std::size_t max_match_words = 8;
inline constexpr std::int64_t match_postings_budget = 10000;
std::vector<std::string> match_words(std::vector<QueryWord> words, std::int64_t chunks);

// An FTS5 query that matches any of the terms, each quoted (so no word is read as an operator).
std::string match_any(const std::vector<std::string>& terms);

}  // namespace clawbot::kb
