// The knowledge base (`clawbot kb`, `serve --kb`): documents cut into chunks that keep their source, heading
// path and location, indexed for full-text search (SQLite FTS5: BM25, and a trigram index for CJK text) and
// for vector search (embeddings of one recorded model), in one SQLite file per knowledge base.
//
// This part knows no HTTP: whoever holds a connection (the CLI's API client, serve's scheduler) passes the
// token counter and the embedding function in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"

namespace clawbot::kb {

// ---------------------------------------------------------------- documents and chunks

enum class DocKind { text, markdown, html, pdf, docx };
std::string_view doc_kind_name(DocKind kind);
// By the file name's extension (.txt .text .md .markdown .html .htm .xhtml .pdf .docx); nullopt otherwise.
std::optional<DocKind> kind_for_path(std::string_view path);

// A run of a document under one heading: its heading path (outermost first), its paragraphs and list items,
// and where it starts ("page 3", "line 120", "#anchor", "paragraph 12").
struct Section {
  std::vector<std::string> heading_path;
  std::vector<std::string> paragraphs;
  std::string location;
};

struct Document {
  std::string title;
  std::vector<Section> sections;
};

// What one document may hold: its text (a document of more is refused, naming the limit: its chunks would
// take the embedding node minutes to hours), and a DOCX's XML once inflated (a zip bomb is refused before it
// is inflated).
inline constexpr std::size_t max_document_text_bytes = std::size_t{32} << 20;
inline constexpr std::size_t max_docx_entry_bytes = std::size_t{64} << 20;

// The document's structure from its bytes. Throws ClawbotError (invalid_request) naming `source` for a
// file that cannot be read as `kind` (a broken PDF or DOCX) or holds more than max_document_text_bytes.
Document extract(std::string_view bytes, DocKind kind, std::string_view source);

// Counts tokens as the embedding model does (the node's /tokenize), or approximate_tokens.
using TokenCounter = std::function<std::size_t(std::string_view)>;
// A conservative estimate when the model's tokenizer cannot be asked: one token per 3 bytes of text, at
// least one per word (WordPiece and BPE vocabularies average 4 bytes a token on English prose; CJK
// characters are 3 bytes and about one token each).
std::size_t approximate_tokens(std::string_view text);

struct ChunkOptions {
  std::size_t max_tokens = 256;     // a chunk's text with its heading path, as the embedding model counts
  std::size_t overlap_tokens = 32;  // repeated from the previous chunk of the same section
};

struct Chunk {
  std::string heading_path;  // headings joined by " > "
  std::string location;
  std::string text;
  std::size_t tokens = 0;

  // What is embedded: the heading path, then the text.
  std::string embedding_input() const;
};

// Chunks that follow the document's own structure: never across a heading, whole paragraphs and list
// items where they fit, a long paragraph cut at sentence ends.
std::vector<Chunk> chunk_document(const Document& document, const ChunkOptions& options,
                                  const TokenCounter& count_tokens);

// ---------------------------------------------------------------- the knowledge base file

struct KbInfo {
  std::string name;
  std::filesystem::path path;
  std::string embedding_model;  // empty until the first embeddings are stored
  std::int64_t dimension = 0;
  std::int64_t documents = 0;
  std::int64_t chunks = 0;
  std::int64_t embedded_chunks = 0;
  std::optional<double> refusal_threshold;  // calibrated by `kb eval --save-threshold`
  std::int64_t file_bytes = 0;
};

enum class SearchMode { bm25, vector, hybrid };
std::string_view search_mode_name(SearchMode mode);
std::optional<SearchMode> search_mode_from(std::string_view name);

struct SearchOptions {
  SearchMode mode = SearchMode::hybrid;
  std::size_t top_k = 5;
  std::size_t candidates = 50;  // from each retriever, before fusion
};

struct SearchHit {
  std::int64_t chunk_id = 0;
  std::string source;
  std::string title;
  std::string heading_path;
  std::string location;
  std::string text;
  double score = 0;                                   // fused (reciprocal rank fusion) or the one retriever's
  std::optional<double> bm25;                         // higher is better (FTS5's bm25() negated)
  std::optional<double> cosine;                       // with the query's embedding
  std::optional<double> rerank;                       // the reranking model's score
  std::optional<std::size_t> bm25_rank, vector_rank;  // 1-based
};

// An embedding model's answer for several texts.
struct Embeddings {
  std::string model;
  std::vector<std::vector<float>> vectors;
};
using EmbedFunction = std::function<Embeddings(std::span<const std::string>)>;

// What one document brings: its source (an absolute path or URL, the key), and its bytes when read.
struct SourceDocument {
  std::string source;
  DocKind kind = DocKind::text;
  std::function<std::string()> read;
};

struct IngestProgress {
  std::size_t documents_done = 0, documents_total = 0;
  std::size_t chunks_done = 0;
  std::string current;  // the source being worked on
  double elapsed_s = 0;
};

struct IngestReport {
  std::size_t added = 0, updated = 0, unchanged = 0, removed = 0, failed = 0;
  std::size_t chunks_embedded = 0, chunks_stored = 0;
  double seconds = 0;
  std::vector<std::string> failures;  // "source: why"
};

// A stored document, as GET /v1/kb/NAME/documents lists it.
struct DocumentInfo {
  std::int64_t id = 0;
  std::string source;
  std::string kind;
  std::string title;
  std::string content_hash;  // SHA-256 of the bytes, the kind and the chunking parameters
  std::int64_t bytes = 0;
  std::int64_t chunks = 0;
  bool embedded = false;
  std::int64_t added_at = 0;  // unix seconds
};

struct IngestOptions {
  ChunkOptions chunking;
  bool sync = false;  // remove the documents that are not among the sources
  std::size_t embed_batch = 32;
};

class KnowledgeBase {
 public:
  // A new, empty knowledge base; refuses a file that exists. Throws ClawbotError.
  static KnowledgeBase create(const std::filesystem::path& path);
  // An existing one; refuses a missing file, a file that is not SQLite or is damaged, and a SQLite file
  // that is not a knowledge base, each with the file's name. Throws ClawbotError.
  static KnowledgeBase open(const std::filesystem::path& path);

  KnowledgeBase(KnowledgeBase&&) noexcept;
  KnowledgeBase& operator=(KnowledgeBase&&) noexcept;
  ~KnowledgeBase();

  const std::filesystem::path& path() const noexcept;
  KbInfo info();
  void set_refusal_threshold(double threshold);

  // Throws ClawbotError naming both models when `model` is not the one the knowledge base was embedded
  // with (nothing is refused while no embeddings are stored).
  void check_embedding_model(std::string_view model);

  // Adds, replaces or skips (same content hash) each document, one transaction per document, so an
  // interrupted ingest leaves every document either as it was or complete. `embed` empty: no embeddings
  // (full-text search only).
  IngestReport ingest(std::span<const SourceDocument> documents, const IngestOptions& options,
                      const TokenCounter& count_tokens, const EmbedFunction& embed,
                      const std::function<void(const IngestProgress&)>& progress);
  // Removes one document by source; false when it is not there.
  bool remove(std::string_view source);
  std::vector<std::string> sources();
  // The stored documents by id; one of them by source; removing one by id (its record, or nullopt when
  // there is none).
  std::vector<DocumentInfo> documents();
  std::optional<DocumentInfo> document(std::string_view source);
  std::optional<DocumentInfo> remove_document(std::int64_t id);
  // Changes whenever another connection (of this process or another) committed a change to the file (SQLite's
  // data_version): what a cache of info() kept beside a writing connection is keyed on.
  std::int64_t change_version();

  // The best chunks for `query`. vector and hybrid need `query_vector` (from the recorded model).
  std::vector<SearchHit> search(std::string_view query, const std::vector<float>* query_vector,
                                const SearchOptions& options);
  // How much of the query the best hits cover, 0..1: the share of the query's words (stop words left out),
  // weighted by how rare each is in the knowledge base, found in the best of `hits` (CJK: the share of the
  // query's character pairs). The refusal threshold is on this.
  double coverage(std::string_view query, std::span<const SearchHit> hits);

 private:
  struct Impl;
  explicit KnowledgeBase(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The default threshold under which answers are refused (calibrated on the debian-faq evaluation set).
inline constexpr double default_refusal_threshold = 0.3;

// Where a knowledge base named NAME lives: NAME itself when it is a path (has a '/' or ends in .kb), else
// ${XDG_DATA_HOME:-~/.local/share}/clawbot/kb/NAME.kb.
std::filesystem::path kb_path(std::string_view name);
// The knowledge bases (*.kb) in a directory, by name.
std::vector<std::pair<std::string, std::filesystem::path>> kb_files(const std::filesystem::path& dir);

// Files under `paths` (recursively for directories) of a kind we read, filtered by shell globs on the path
// relative to the directory given (include: any of them; exclude: none of them). Sorted.
std::vector<SourceDocument> collect_files(std::span<const std::string> paths,
                                          std::span<const std::string> include,
                                          std::span<const std::string> exclude);

// ---------------------------------------------------------------- answers

// A follow-up ("and how do I remove it?") made to stand alone for retrieval: when the question is short or
// refers back (it, that, this, they, ...), the content words of the previous user question are added.
std::string standalone_question(std::span<const std::string> previous_questions, std::string_view question);

// The system prompt of a grounded answer: the numbered passages and the rules (answer from them only, cite
// [n], say when they do not hold the answer).
std::string grounded_system_prompt(std::span<const SearchHit> passages);
// "Not in the knowledge base", with the nearest topics (the heading paths of the best hits).
std::string refusal_text(std::span<const SearchHit> nearest);
// Where a passage is: "source § heading path (location)".
std::string cited_source(const SearchHit& hit);
// One line per passage: "[n] source § heading path (location)".
std::string citation_lines(std::span<const SearchHit> passages);
// A hit as `kb search --json` and POST /v1/kb/NAME/search give it: rank, scores, source, heading path,
// location, text.
nlohmann::json hit_json(const SearchHit& hit, std::size_t rank);
// The numbered passages of an answer: [{"index": 1, "source", "title", "heading_path", "location",
// "chunk_id", "score"}, ...], with each one's "text" when `with_text`.
nlohmann::json citations_json(std::span<const SearchHit> passages, bool with_text);

// ---------------------------------------------------------------- evaluation

// One question of an evaluation set (JSONL): {"question", "expected"} where expected names the section
// ("7.12", matched in the heading path at a number boundary) or a source file; "expected": null for a
// question the documents do not answer.
struct EvalQuestion {
  std::string question;
  std::optional<std::string> expected;
};
// Parses JSONL; throws ClawbotError naming the line.
std::vector<EvalQuestion> parse_eval_set(std::string_view text, std::string_view origin);
bool hit_matches(const SearchHit& hit, std::string_view expected);

struct EvalFigures {
  std::size_t answerable = 0, unanswerable = 0;
  double hit_at_1 = 0, hit_at_5 = 0, mrr = 0;
  // With the threshold: refused unanswerable / all refused, and refused unanswerable / all unanswerable;
  // answerable questions wrongly refused.
  double refusal_precision = 0, refusal_recall = 0;
  std::size_t wrongly_refused = 0;
  double threshold = 0;
  std::vector<std::string> misses;  // answerable questions whose expected section was not in the top 5
};
struct EvalRun {
  std::vector<std::vector<SearchHit>> hits;  // per question
  std::vector<double> coverage;              // per question
};
EvalFigures score_eval(std::span<const EvalQuestion> questions, const EvalRun& run, double threshold);
// The threshold that refuses the most unanswerable questions with a refusal precision of at least
// `min_precision` (ties: the fewest wrongly refused); nullopt when none reaches it.
std::optional<double> calibrate_threshold(std::span<const EvalQuestion> questions, const EvalRun& run,
                                          double min_precision);

}  // namespace clawbot::kb
