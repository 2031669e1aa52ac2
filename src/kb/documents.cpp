// The documents of a knowledge base one by one: listed, looked up and removed by id (the node's
// /v1/kb/NAME/documents), and the file's change counter.
#include "kb/kb_internal.h"

namespace clawbot::kb {

namespace {

constexpr const char* document_columns =
    "SELECT id, source, kind, title, content_hash, bytes, chunks, embedded, added_at FROM documents ";

DocumentInfo document_at(const sqlite::Statement& st) {
  DocumentInfo d;
  d.id = st.int64_at(0);
  d.source = st.text_at(1);
  d.kind = st.text_at(2);
  d.title = st.text_at(3);
  d.content_hash = st.text_at(4);
  d.bytes = st.int64_at(5);
  d.chunks = st.int64_at(6);
  d.embedded = st.int64_at(7) != 0;
  d.added_at = st.int64_at(8);
  return d;
}

}  // namespace

std::vector<DocumentInfo> KnowledgeBase::documents() {
  std::vector<DocumentInfo> out;
  sqlite::Statement st(impl_->db, std::string(document_columns) + "ORDER BY id");
  while (st.step()) out.push_back(document_at(st));
  return out;
}

std::optional<DocumentInfo> KnowledgeBase::document(std::string_view source) {
  sqlite::Statement st(impl_->db, std::string(document_columns) + "WHERE source = ?");
  st.bind(1, source);
  if (!st.step()) return std::nullopt;
  return document_at(st);
}

std::optional<DocumentInfo> KnowledgeBase::remove_document(std::int64_t id) {
  std::string source;
  {
    sqlite::Statement st(impl_->db, "SELECT source FROM documents WHERE id = ?");
    st.bind(1, id);
    if (!st.step()) return std::nullopt;
    source = st.text_at(0);
  }
  auto record = document(source);
  if (!record || !remove(source)) return std::nullopt;  // removed by another writer meanwhile
  return record;
}

std::int64_t KnowledgeBase::change_version() {
  sqlite::Statement st(impl_->db, "PRAGMA data_version");
  st.step();
  return st.int64_at(0);
}

}  // namespace clawbot::kb
