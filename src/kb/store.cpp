// The knowledge base file: schema, opening checks, and the ingest that writes one transaction per document.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <set>

#include "common/openssl_handles.h"
#include "common/user_dirs.h"
#include "kb/kb_internal.h"

namespace clawbot::kb {

namespace {

constexpr const char* kb_format = "clawbot-kb";
constexpr int kb_schema_version = 1;

constexpr const char* kb_schema = R"sql(
CREATE TABLE kb_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE documents(
  id INTEGER PRIMARY KEY, source TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, title TEXT NOT NULL,
  content_hash TEXT NOT NULL, bytes INTEGER NOT NULL, chunks INTEGER NOT NULL, embedded INTEGER NOT NULL,
  added_at INTEGER NOT NULL);
CREATE TABLE chunks(
  id INTEGER PRIMARY KEY, document_id INTEGER NOT NULL REFERENCES documents(id), ordinal INTEGER NOT NULL,
  heading_path TEXT NOT NULL, location TEXT NOT NULL, text TEXT NOT NULL, tokens INTEGER NOT NULL,
  cjk INTEGER NOT NULL);
CREATE INDEX chunks_document ON chunks(document_id);
CREATE TABLE embeddings(chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id), vector BLOB NOT NULL);
CREATE VIRTUAL TABLE chunks_fts USING fts5(heading_path, text, content='chunks', content_rowid='id',
  tokenize='porter unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE chunks_cjk USING fts5(text, content='chunks', content_rowid='id', tokenize='trigram');
CREATE VIRTUAL TABLE chunks_cjk_grams USING fts5(grams, content='', detail='none', tokenize='ascii');
)sql";

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void refuse(const std::filesystem::path& path, const std::string& why) {
  throw ClawbotError(ErrorKind::invalid_request, path.string() + ": " + why);
}

// The stored form of a vector: float32, little-endian as this machine is, scaled to unit length.
std::vector<float> unit_vector(const std::vector<float>& v) {
  double norm = 0;
  for (const float x : v) norm += static_cast<double>(x) * x;
  norm = std::sqrt(norm);
  std::vector<float> out(v);
  if (norm > 0)
    for (float& x : out) x = static_cast<float>(x / norm);
  return out;
}

std::string content_hash(std::string_view bytes, DocKind kind, const ChunkOptions& chunking) {
  openssl::Digest digest("SHA256");
  digest.update(std::as_bytes(std::span(bytes.data(), bytes.size())));
  const std::string params = std::string("\n") + std::string(doc_kind_name(kind)) + " " +
                             std::to_string(chunking.max_tokens) + " " +
                             std::to_string(chunking.overlap_tokens);
  digest.update(std::as_bytes(std::span(params.data(), params.size())));
  return digest.finish_hex();
}

void delete_document(sqlite::Database& db, std::int64_t id) {
  // External-content and contentless FTS tables are told what each row held; the trigram and gram indexes
  // hold only CJK chunks.
  sqlite::Statement(db,
                    "INSERT INTO chunks_fts(chunks_fts, rowid, heading_path, text) "
                    "SELECT 'delete', id, heading_path, text FROM chunks WHERE document_id = ?")
      .bind(1, id)
      .run();
  sqlite::Statement(db,
                    "INSERT INTO chunks_cjk(chunks_cjk, rowid, text) "
                    "SELECT 'delete', id, text FROM chunks WHERE document_id = ? AND cjk = 1")
      .bind(1, id)
      .run();
  {
    sqlite::Statement cjk(db, "SELECT id, heading_path, text FROM chunks WHERE document_id = ? AND cjk = 1");
    sqlite::Statement forget(
        db, "INSERT INTO chunks_cjk_grams(chunks_cjk_grams, rowid, grams) VALUES('delete', ?, ?)");
    cjk.bind(1, id);
    while (cjk.step()) {
      forget.bind(1, cjk.int64_at(0)).bind(2, cjk_grams(cjk.text_at(1), cjk.text_at(2)));
      forget.run();
      forget.reset();
    }
  }
  sqlite::Statement(db,
                    "DELETE FROM embeddings WHERE chunk_id IN (SELECT id FROM chunks WHERE document_id = ?)")
      .bind(1, id)
      .run();
  sqlite::Statement(db, "DELETE FROM chunks WHERE document_id = ?").bind(1, id).run();
  sqlite::Statement(db, "DELETE FROM documents WHERE id = ?").bind(1, id).run();
}

}  // namespace

std::string KnowledgeBase::Impl::meta(std::string_view key) {
  sqlite::Statement st(db, "SELECT value FROM kb_meta WHERE key = ?");
  st.bind(1, key);
  return st.step() ? st.text_at(0) : std::string();
}

void KnowledgeBase::Impl::set_meta(std::string_view key, std::string_view value) {
  sqlite::Statement(
      db,
      "INSERT INTO kb_meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
      .bind(1, key)
      .bind(2, value)
      .run();
}

std::string kb_name(const std::filesystem::path& path) {
  std::string name = path.filename().string();
  if (name.ends_with(".kb")) name.resize(name.size() - 3);
  return name;
}

std::filesystem::path kb_path(std::string_view name) {
  if (name.find('/') != std::string_view::npos || name.ends_with(".kb")) return std::filesystem::path(name);
  if (name.empty() || name.starts_with('.'))
    throw_invalid("a knowledge base name must not be empty or start with '.'");
  return user_dirs::require(user_dirs::Kind::data, "; give the knowledge base as a path (ending in .kb)") /
         "clawbot" / "kb" / (std::string(name) + ".kb");
}

std::vector<std::pair<std::string, std::filesystem::path>> kb_files(const std::filesystem::path& dir) {
  std::vector<std::pair<std::string, std::filesystem::path>> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".kb")
      out.emplace_back(kb_name(entry.path()), entry.path());
  }
  if (ec) throw ClawbotError(ErrorKind::invalid_request, dir.string() + ": cannot list: " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

KnowledgeBase::KnowledgeBase(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KnowledgeBase::KnowledgeBase(KnowledgeBase&&) noexcept = default;
KnowledgeBase& KnowledgeBase::operator=(KnowledgeBase&&) noexcept = default;
KnowledgeBase::~KnowledgeBase() = default;

KnowledgeBase KnowledgeBase::create(const std::filesystem::path& path) {
  if (std::filesystem::exists(path))
    refuse(path, "already exists (clawbot kb add adds documents to it; remove the file to start again)");
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  auto impl = std::make_unique<Impl>(path);
  impl->db.exec("PRAGMA journal_mode=WAL");
  sqlite::Transaction tx(impl->db);
  impl->db.exec(kb_schema);
  impl->set_meta("format", kb_format);
  impl->set_meta("schema_version", std::to_string(kb_schema_version));
  impl->set_meta("created_at", std::to_string(now_s()));
  tx.commit();
  impl->prepare();
  return KnowledgeBase(std::move(impl));
}

KnowledgeBase KnowledgeBase::open(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw ClawbotError(ErrorKind::not_found,
                       path.string() + ": no such knowledge base (clawbot kb create makes one)");
  try {
    auto impl = std::make_unique<Impl>(path);
    {
      sqlite::Statement tables(impl->db, "SELECT count(*) FROM sqlite_schema WHERE name = 'kb_meta'");
      tables.step();
      if (tables.int64_at(0) == 0)
        refuse(path, "a SQLite database, but not a clawbot knowledge base (it has no kb_meta table)");
    }
    if (impl->meta("format") != kb_format)
      refuse(path, "a SQLite database, but not a clawbot knowledge base (kb_meta has no format clawbot-kb)");
    const std::string version = impl->meta("schema_version");
    if (version != std::to_string(kb_schema_version))
      refuse(path, "knowledge base schema version " + version + "; this clawbot reads version " +
                       std::to_string(kb_schema_version));
    impl->prepare();
    return KnowledgeBase(std::move(impl));
  } catch (const StoreError& e) {
    // sqlite_db names the file; say what it was expected to be.
    throw ClawbotError(ErrorKind::invalid_request, std::string("not a usable knowledge base: ") + e.what());
  }
}

const std::filesystem::path& KnowledgeBase::path() const noexcept {
  return impl_->path;
}

KbInfo KnowledgeBase::info() {
  KbInfo info;
  info.name = kb_name(impl_->path);
  info.path = impl_->path;
  info.embedding_model = impl_->meta("embedding_model");
  const std::string dim = impl_->meta("embedding_dimension");
  info.dimension = dim.empty() ? 0 : std::stoll(dim);
  const std::string threshold = impl_->meta("refusal_threshold");
  if (!threshold.empty()) info.refusal_threshold = std::stod(threshold);
  impl_->refresh();
  const KbCounts& counts = impl_->kb_counts();
  info.documents = counts.documents;
  info.chunks = counts.chunks;
  info.embedded_chunks = counts.embedded;
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(impl_->path, ec);
  info.file_bytes = ec ? 0 : static_cast<std::int64_t>(bytes);
  return info;
}

void KnowledgeBase::set_refusal_threshold(double threshold) {
  impl_->set_meta("refusal_threshold", std::to_string(threshold));
  impl_->changed_here = true;
}

void KnowledgeBase::check_embedding_model(std::string_view model) {
  const std::string recorded = impl_->meta("embedding_model");
  if (!recorded.empty() && recorded != model) {
    throw ClawbotError(ErrorKind::invalid_request,
                       "knowledge base '" + kb_name(impl_->path) + "' was embedded with model '" + recorded +
                           "', but the embeddings now come from model '" + std::string(model) +
                           "': use the same model (or a new knowledge base for this one)");
  }
}

bool KnowledgeBase::remove(std::string_view source) {
  sqlite::Transaction tx(impl_->db);
  sqlite::Statement find(impl_->db, "SELECT id FROM documents WHERE source = ?");
  find.bind(1, source);
  if (!find.step()) return false;
  delete_document(impl_->db, find.int64_at(0));
  tx.commit();
  impl_->changed_here = true;
  return true;
}

std::vector<std::string> KnowledgeBase::sources() {
  std::vector<std::string> out;
  sqlite::Statement st(impl_->db, "SELECT source FROM documents ORDER BY source");
  while (st.step()) out.push_back(st.text_at(0));
  return out;
}

IngestReport KnowledgeBase::ingest(std::span<const SourceDocument> documents, const IngestOptions& options,
                                   const TokenCounter& count_tokens, const EmbedFunction& embed,
                                   const std::function<void(const IngestProgress&)>& progress) {
  const auto started = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  IngestReport report;
  IngestProgress state;
  state.documents_total = documents.size();
  auto& db = impl_->db;

  for (const SourceDocument& doc : documents) {
    state.current = doc.source;
    if (progress) progress(state);
    std::string bytes;
    Document extracted;
    try {
      bytes = doc.read();
      extracted = extract(bytes, doc.kind, doc.source);
    } catch (const ClawbotError& e) {
      ++report.failed;
      report.failures.push_back(e.what());
      ++state.documents_done;
      continue;
    }
    const std::string hash = content_hash(bytes, doc.kind, options.chunking);
    std::optional<std::int64_t> existing;
    {
      sqlite::Statement st(db, "SELECT id, content_hash, embedded FROM documents WHERE source = ?");
      st.bind(1, doc.source);
      if (st.step()) {
        existing = st.int64_at(0);
        const bool same = st.text_at(1) == hash && (st.int64_at(2) == 1 || !embed);
        if (same) {
          ++report.unchanged;
          ++state.documents_done;
          continue;
        }
      }
    }
    const std::vector<Chunk> chunks = chunk_document(extracted, options.chunking, count_tokens);

    std::vector<std::vector<float>> vectors;
    std::string model;
    if (embed) {
      for (std::size_t at = 0; at < chunks.size(); at += options.embed_batch) {
        std::vector<std::string> inputs;
        for (std::size_t i = at; i < std::min(chunks.size(), at + options.embed_batch); ++i)
          inputs.push_back(chunks[i].embedding_input());
        Embeddings got = embed(inputs);
        if (got.vectors.size() != inputs.size())
          throw ClawbotError(ErrorKind::bad_gateway,
                             "the embeddings endpoint answered " + std::to_string(got.vectors.size()) +
                                 " vectors for " + std::to_string(inputs.size()) + " inputs");
        if (model.empty()) {
          check_embedding_model(got.model);
          model = got.model;
        }
        for (auto& v : got.vectors) vectors.push_back(unit_vector(v));
        state.chunks_done += inputs.size();
        if (progress) progress(state);
      }
    }
    const std::int64_t dimension = vectors.empty() ? 0 : static_cast<std::int64_t>(vectors.front().size());
    for (const auto& v : vectors) {
      if (static_cast<std::int64_t>(v.size()) != dimension || dimension == 0)
        throw ClawbotError(ErrorKind::bad_gateway,
                           "the embeddings endpoint answered vectors of different sizes");
    }

    sqlite::Transaction tx(db);
    if (!vectors.empty()) {
      const std::string recorded = impl_->meta("embedding_dimension");
      if (recorded.empty()) {
        impl_->set_meta("embedding_model", model);
        impl_->set_meta("embedding_dimension", std::to_string(dimension));
      } else if (recorded != std::to_string(dimension)) {
        refuse(impl_->path, "its embeddings have " + recorded + " dimensions; model '" + model +
                                "' answered " + std::to_string(dimension));
      }
    }
    if (existing) delete_document(db, *existing);
    sqlite::Statement insert_doc(
        db,
        "INSERT INTO documents(source, kind, title, content_hash, bytes, chunks, embedded, "
        "added_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?)");
    insert_doc.bind(1, doc.source)
        .bind(2, doc_kind_name(doc.kind))
        .bind(3, extracted.title)
        .bind(4, hash)
        .bind(5, static_cast<std::int64_t>(bytes.size()))
        .bind(6, static_cast<std::int64_t>(chunks.size()))
        .bind(7, std::int64_t{embed ? 1 : 0})  // embedded (also when it has no chunks to embed)
        .bind(8, now_s())
        .run();
    const std::int64_t doc_id = db.last_insert_rowid();
    sqlite::Statement insert_chunk(
        db,
        "INSERT INTO chunks(document_id, ordinal, heading_path, location, text, tokens, cjk) "
        "VALUES(?, ?, ?, ?, ?, ?, ?)");
    sqlite::Statement insert_fts(db, "INSERT INTO chunks_fts(rowid, heading_path, text) VALUES(?, ?, ?)");
    sqlite::Statement insert_cjk(db, "INSERT INTO chunks_cjk(rowid, text) VALUES(?, ?)");
    sqlite::Statement insert_grams(db, "INSERT INTO chunks_cjk_grams(rowid, grams) VALUES(?, ?)");
    sqlite::Statement insert_vector(db, "INSERT INTO embeddings(chunk_id, vector) VALUES(?, ?)");
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      const Chunk& c = chunks[i];
      const bool cjk = has_cjk(c.text) || has_cjk(c.heading_path);
      insert_chunk.bind(1, doc_id)
          .bind(2, static_cast<std::int64_t>(i))
          .bind(3, c.heading_path)
          .bind(4, c.location)
          .bind(5, c.text)
          .bind(6, static_cast<std::int64_t>(c.tokens))
          .bind(7, std::int64_t{cjk ? 1 : 0});
      insert_chunk.run();
      const std::int64_t chunk_id = db.last_insert_rowid();
      insert_chunk.reset();
      insert_fts.bind(1, chunk_id).bind(2, c.heading_path).bind(3, c.text);
      insert_fts.run();
      insert_fts.reset();
      if (cjk) {
        insert_cjk.bind(1, chunk_id).bind(2, c.text);
        insert_cjk.run();
        insert_cjk.reset();
        insert_grams.bind(1, chunk_id).bind(2, cjk_grams(c.heading_path, c.text));
        insert_grams.run();
        insert_grams.reset();
      }
      if (!vectors.empty()) {
        insert_vector.bind(1, chunk_id).bind_blob(2, std::as_bytes(std::span(vectors[i])));
        insert_vector.run();
        insert_vector.reset();
      }
    }
    tx.commit();
    impl_->changed_here = true;
    ++(existing ? report.updated : report.added);
    report.chunks_stored += chunks.size();
    report.chunks_embedded += vectors.size();
    ++state.documents_done;
    state.elapsed_s = elapsed();
    if (progress) progress(state);
  }

  if (options.sync) {
    std::set<std::string> present;
    for (const auto& doc : documents) present.insert(doc.source);
    for (const std::string& source : sources()) {
      if (!present.contains(source) && remove(source)) ++report.removed;
    }
  }
  report.seconds = elapsed();
  return report;
}

}  // namespace clawbot::kb
