// What search reads besides the ranked lists: the index's own tokenizer, document frequencies from FTS5's
// vocabulary, the CJK gram index, the counts and the vectors, each kept until the file changes.
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "kb/kb_internal.h"

namespace clawbot::kb {

namespace {

// Chinese question words and particles (what, how, which, please, me, you, ...): like stop words, they
// say nothing about where the answer is, and they break a query's runs.
bool cjk_stop(char32_t cp) {
  static constexpr std::u32string_view stops = U"的了吗呢吧啊呀么怎样什如何哪谁请问我你您";
  return stops.find(cp) != std::u32string_view::npos;
}

// Passed through xTokenize to the callback.
struct TokenSink {
  std::vector<std::string> terms;
};

int collect_token(void* context, int flags, const char* token, int bytes, int, int) {
  if ((flags & FTS5_TOKEN_COLOCATED) == 0)
    static_cast<TokenSink*>(context)->terms.emplace_back(token, static_cast<std::size_t>(bytes));
  return SQLITE_OK;
}

}  // namespace

std::pair<char32_t, std::size_t> utf8_code_point(std::string_view s, std::size_t at) {
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

WordTokenizer::WordTokenizer(sqlite::Database& db) : api_(std::make_unique<fts5_tokenizer>()) {
  // SQLite hands out its FTS5 interface through a pointer bound to "SELECT fts5(?1)".
  fts5_api* fts5 = nullptr;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db.handle(), "SELECT fts5(?1)", -1, &st, nullptr) == SQLITE_OK) {
    sqlite3_bind_pointer(st, 1, static_cast<void*>(&fts5), "fts5_api_ptr", nullptr);
    sqlite3_step(st);
  }
  sqlite3_finalize(st);
  if (fts5 == nullptr) db.fail(SQLITE_ERROR, "finding SQLite's FTS5 (this SQLite was built without it)");
  void* user = nullptr;
  int rc = fts5->xFindTokenizer(fts5, "porter", &user, api_.get());
  if (rc != SQLITE_OK) db.fail(rc, "finding FTS5's porter tokenizer");
  // As chunks_fts's tokenize= says: porter over unicode61 remove_diacritics 2.
  const char* args[] = {"unicode61", "remove_diacritics", "2"};
  rc = api_->xCreate(user, args, 3, &tokenizer_);
  if (rc != SQLITE_OK) db.fail(rc, "creating FTS5's porter tokenizer");
}

WordTokenizer::~WordTokenizer() {
  if (tokenizer_ != nullptr) api_->xDelete(tokenizer_);
}

std::vector<std::string> WordTokenizer::terms(std::string_view text) const {
  TokenSink sink;
  api_->xTokenize(tokenizer_, &sink, FTS5_TOKENIZE_DOCUMENT, text.data(), static_cast<int>(text.size()),
                  collect_token);
  return std::move(sink.terms);
}

bool has_cjk(std::string_view text) {
  for (std::size_t at = 0; at < text.size();) {
    const auto [cp, len] = utf8_code_point(text, at);
    if (is_cjk(cp)) return true;
    at += len;
  }
  return false;
}

std::vector<std::vector<std::string>> cjk_runs(std::string_view text) {
  std::vector<std::vector<std::string>> runs;
  std::vector<std::string> run;
  for (std::size_t at = 0; at < text.size();) {
    const auto [cp, len] = utf8_code_point(text, at);
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

std::string cjk_grams(std::string_view heading_path, std::string_view text) {
  std::set<std::string> grams;
  for (const std::string_view part : {heading_path, text}) {
    for (const auto& run : cjk_runs(part)) {
      for (std::size_t i = 0; i < run.size(); ++i) {
        grams.insert(run[i]);
        if (i + 1 < run.size()) grams.insert(run[i] + run[i + 1]);
      }
    }
  }
  std::string out;
  for (const auto& g : grams) out += (out.empty() ? "" : " ") + g;
  return out;
}

std::string match_any(const std::vector<std::string>& terms) {
  std::string query;
  for (const auto& t : terms) {
    std::string quoted = "\"";
    for (const char c : t) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    query += (query.empty() ? "" : " OR ") + quoted + "\"";
  }
  return query;
}

KnowledgeBase::Impl::Impl(const std::filesystem::path& p) : path(p), db(p) {}

void KnowledgeBase::Impl::prepare() {
  db.exec("CREATE VIRTUAL TABLE IF NOT EXISTS temp.kb_fts_vocab USING fts5vocab(main, chunks_fts, row)");
  sqlite::Statement grams(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'chunks_cjk_grams'");
  grams.step();
  if (grams.int64_at(0) == 0) add_gram_index();
}

const WordTokenizer& KnowledgeBase::Impl::tokenizer() {
  if (!word_tokenizer) word_tokenizer = std::make_unique<WordTokenizer>(db);
  return *word_tokenizer;
}

void KnowledgeBase::Impl::refresh() {
  sqlite::Statement version(db, "PRAGMA data_version");
  version.step();
  const std::int64_t now = version.int64_at(0);
  if (!changed_here && now == seen_version) return;
  counts.reset();
  term_df.clear();
  gram_df.clear();
  vectors_loaded = false;
  vector_ids.clear();
  vector_codes.clear();
  vector_scales.clear();
  seen_version = now;
  changed_here = false;
}

const KbCounts& KnowledgeBase::Impl::kb_counts() {
  if (!counts) {
    // count(*) of the embeddings reads every page of their table (tens of megabytes at 100,000 chunks):
    // once per change, not once per request.
    sqlite::Statement st(db,
                         "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks), "
                         "(SELECT count(*) FROM embeddings), (SELECT count(*) FROM chunks WHERE cjk = 1)");
    st.step();
    counts = KbCounts{st.int64_at(0), st.int64_at(1), st.int64_at(2), st.int64_at(3)};
  }
  return *counts;
}

std::vector<QueryWord> KnowledgeBase::Impl::query_words(std::string_view query) {
  std::vector<QueryWord> out;
  sqlite::Statement vocab(db, "SELECT doc FROM temp.kb_fts_vocab WHERE term = ?");
  for (auto& word : content_words(query)) {
    QueryWord w{std::move(word), {}, 0};
    w.terms = tokenizer().terms(w.word);
    if (w.terms.empty()) continue;  // nothing the index holds (a symbol unicode61 does not index)
    std::int64_t df = -1;
    for (const auto& term : w.terms) {
      auto it = term_df.find(term);
      if (it == term_df.end()) {
        if (term_df.size() > 100000) term_df.clear();  // a bound on what arbitrary queries leave behind
        vocab.bind(1, term);
        const std::int64_t n = vocab.step() ? vocab.int64_at(0) : 0;
        vocab.reset();
        it = term_df.emplace(term, n).first;
      }
      df = df < 0 ? it->second : std::min(df, it->second);
    }
    w.df = df;
    out.push_back(std::move(w));
  }
  return out;
}

std::int64_t KnowledgeBase::Impl::gram_frequency(const std::string& gram) {
  if (auto it = gram_df.find(gram); it != gram_df.end()) return it->second;
  sqlite::Statement st(db, "SELECT count(*) FROM chunks_cjk_grams WHERE chunks_cjk_grams MATCH ?");
  st.bind(1, match_any({gram}));
  st.step();
  if (gram_df.size() > 100000) gram_df.clear();
  return gram_df.emplace(gram, st.int64_at(0)).first->second;
}

void KnowledgeBase::Impl::add_gram_index() {
  sqlite::Transaction tx(db);
  db.exec(
      "CREATE VIRTUAL TABLE chunks_cjk_grams USING fts5(grams, content='', detail='none', tokenize='ascii')");
  sqlite::Statement insert(db, "INSERT INTO chunks_cjk_grams(rowid, grams) VALUES(?, ?)");
  sqlite::Statement st(db, "SELECT id, heading_path, text FROM chunks WHERE cjk = 1");
  while (st.step()) {
    insert.bind(1, st.int64_at(0)).bind(2, cjk_grams(st.text_at(1), st.text_at(2)));
    insert.run();
    insert.reset();
  }
  tx.commit();
  changed_here = true;
}

void KnowledgeBase::Impl::load_vectors() {
  if (vectors_loaded) return;
  const std::string dim = meta("embedding_dimension");
  dimension = dim.empty() ? 0 : std::stoll(dim);
  const auto d = static_cast<std::size_t>(dimension);
  std::vector<float> row(d);
  sqlite::Statement st(db, "SELECT chunk_id, vector FROM embeddings ORDER BY chunk_id");
  while (st.step()) {
    const auto blob = st.blob_at(1);
    if (blob.size() != d * sizeof(float))
      throw ClawbotError(ErrorKind::invalid_request,
                         path.string() + ": chunk " + std::to_string(st.int64_at(0)) +
                             " has an embedding of " + std::to_string(blob.size()) + " bytes, not " +
                             std::to_string(dimension) + " floats");
    std::memcpy(row.data(), blob.data(), blob.size());
    vector_ids.push_back(st.int64_at(0));
    vector_codes.resize(vector_codes.size() + d);
    vector_scales.push_back(quantize(row, vector_codes.data() + vector_codes.size() - d));
  }
  vectors_loaded = true;
}

float quantize(std::span<const float> vector, std::int8_t* codes) {
  float largest = 0;
  for (const float x : vector) largest = std::max(largest, std::abs(x));
  const float scale = largest > 0 ? largest / 127.0f : 1.0f;
  for (std::size_t i = 0; i < vector.size(); ++i)
    codes[i] = static_cast<std::int8_t>(std::lround(vector[i] / scale));
  return scale;
}

// One pass over all rows, compiled twice on x86-64 (AVX2, and the baseline SSE2) and chosen when the program
// starts: AVX2 widens and multiplies 16 codes an instruction, about four times SSE2's rate.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
void score_codes(std::span<const std::int8_t> codes, std::span<const float> scales, std::span<const std::int8_t> query,
                 std::span<float> scores) {
  const std::size_t dim = query.size();
  const std::int8_t* q = query.data();
  for (std::size_t r = 0; r < scales.size(); ++r) {
    const std::int8_t* row = codes.data() + r * dim;
    // 32 independent sums over blocks of 32: a loop of known length, which GCC at -O2 vectorizes (a plain
    // loop over `dim` stays scalar there, six times slower).
    std::int32_t sums[32] = {};
    std::size_t i = 0;
    for (; i + 32 <= dim; i += 32)
      for (std::size_t k = 0; k < 32; ++k)
        sums[k] += static_cast<std::int16_t>(row[i + k]) * static_cast<std::int16_t>(q[i + k]);
    std::int32_t sum = 0;
    for (; i < dim; ++i) sum += static_cast<std::int16_t>(row[i]) * static_cast<std::int16_t>(q[i]);
    for (const std::int32_t s : sums) sum += s;
    scores[r] = static_cast<float>(sum) * scales[r];
  }
}

}  // namespace clawbot::kb
