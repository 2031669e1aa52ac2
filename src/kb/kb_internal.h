// What the knowledge base's files share: the open database and the vectors held in memory for search.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/sqlite_db.h"
#include "kb/kb.h"

namespace clawbot::kb {

struct KnowledgeBase::Impl {
  explicit Impl(const std::filesystem::path& p) : path(p), db(p) {}
  std::filesystem::path path;
  sqlite::Database db;

  // The embeddings, unit length, one row each, loaded at the first vector search and again when the file
  // changed (PRAGMA data_version: another connection's commit; `vectors_stale`: this one's).
  std::vector<std::int64_t> vector_ids;
  std::vector<float> vectors;
  std::int64_t dimension = 0;
  std::int64_t vectors_version = -1;
  bool vectors_stale = true;

  std::string meta(std::string_view key);
  void set_meta(std::string_view key, std::string_view value);
  void load_vectors();
};

// The name a knowledge base is known by: its file name without ".kb".
std::string kb_name(const std::filesystem::path& path);

// Words of a query for coverage: lower case, letters and digits, stop words left out; CJK runs apart.
std::vector<std::string> content_words(std::string_view text);
// Whether the byte at `at` starts a CJK character (Han, kana, Hangul, CJK punctuation excluded).
bool has_cjk(std::string_view text);

}  // namespace clawbot::kb
