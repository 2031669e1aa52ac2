// The knowledge base without a model: extraction, chunking, the SQLite file (refusals, incremental ingest,
// sync), full-text and vector search, coverage, evaluation figures and follow-up questions. Embeddings here
// come from a fake function (a bag of hashed words), so vector search has meaning the tests can predict.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <zip.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "kb/kb.h"
#include "kb/kb_internal.h"

namespace clawbot::kb {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("clawbot-kb-test-" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path write(const std::string& name, const std::string& text) const {
    const fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }

 private:
  fs::path path_;
};

std::size_t words(std::string_view text) {
  return approximate_tokens(text);
}

// A deterministic "embedding": each content word adds 1 to a dimension chosen by its hash.
Embeddings fake_embed(std::span<const std::string> inputs, const std::string& model = "fake-embed") {
  Embeddings out;
  out.model = model;
  for (const auto& text : inputs) {
    std::vector<float> v(64, 0.0f);
    std::string word;
    for (const char c : text + " ") {
      if (std::isalnum(static_cast<unsigned char>(c))) {
        word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      } else if (!word.empty()) {
        v[std::hash<std::string>{}(word) % 64] += 1.0f;
        word.clear();
      }
    }
    v[63] += 0.01f;
    out.vectors.push_back(std::move(v));
  }
  return out;
}

const char* const markdown_doc = R"(# Returns

Our shop accepts returns within thirty days of delivery.

## Refunds

Refunds go back to the card used for the purchase, within five working days.

- Gift cards are refunded as store credit.
- Shipping costs are not refunded.

# Shipping

We ship to every country in the European Union. Parcels travel with a tracking number.
)";

TEST(KbExtract, MarkdownHeadingsParagraphsAndListItems) {
  const Document doc = extract(markdown_doc, DocKind::markdown, "shop.md");
  ASSERT_EQ(doc.sections.size(), 3u);
  EXPECT_EQ(doc.title, "Returns");
  EXPECT_EQ(doc.sections[1].heading_path, (std::vector<std::string>{"Returns", "Refunds"}));
  ASSERT_EQ(doc.sections[1].paragraphs.size(), 3u);
  EXPECT_EQ(doc.sections[1].paragraphs[1], "- Gift cards are refunded as store credit.");
  EXPECT_EQ(doc.sections[2].heading_path, (std::vector<std::string>{"Shipping"}));
  EXPECT_EQ(doc.sections[0].location, "line 1");
}

TEST(KbExtract, HtmlLeavesOutNavigationAndTablesOfContentsAndKeepsAnchors) {
  const std::string html = R"(<html><head><title>FAQ</title><style>p{}</style></head><body>
    <div class="navheader"><a href="x">Next</a> Navigation words</div>
    <div class="toc"><dl><dt>7.1. What is a package?</dt></dl></div>
    <h1><a id="pkg"></a>Chapter 7. Packages</h1>
    <p>Intro text&nbsp;here.</p>
    <h2 class="title"><a id="hold"></a>7.12. How do I put a package on hold?</h2>
    <p>Use <code>apt-mark hold</code>.</p><ul><li>first item</li><li>second item</li></ul>
    <script>var hidden = 1;</script></body></html>)";
  const Document doc = extract(html, DocKind::html, "faq.html");
  EXPECT_EQ(doc.title, "FAQ");
  ASSERT_EQ(doc.sections.size(), 2u);
  EXPECT_EQ(doc.sections[0].heading_path, (std::vector<std::string>{"Chapter 7. Packages"}));
  EXPECT_EQ(doc.sections[0].paragraphs, (std::vector<std::string>{"Intro text here."}));
  EXPECT_EQ(doc.sections[1].heading_path.back(), "7.12. How do I put a package on hold?");
  EXPECT_EQ(doc.sections[1].location, "#hold");
  EXPECT_EQ(doc.sections[1].paragraphs,
            (std::vector<std::string>{"Use apt-mark hold.", "first item", "second item"}));
  for (const auto& s : doc.sections)
    for (const auto& p : s.paragraphs) {
      EXPECT_EQ(p.find("Navigation"), std::string::npos) << p;
      EXPECT_EQ(p.find("hidden"), std::string::npos) << p;
    }
}

TEST(KbExtract, PlainTextNumberedHeadingsWrappedAtTheMarginAndNoTableOfContents) {
  const std::string text =
      "Table of Contents\n\n    1.1. What is this FAQ?\n    1.2. What is Debian?\n\n"
      "Chapter\xc2\xa0"
      "1.\xc2\xa0"
      "Definitions\n\n"
      "1.1.\xc2\xa0What is this FAQ? It is a long heading that\ngoes on to a second line\n\n"
      "    This document answers questions.\n\n      * a list item\n      * another\n\n"
      "1.2. What is Debian?\n\n    Debian is an operating system.\n";
  const Document doc = extract(text, DocKind::text, "faq.txt");
  ASSERT_EQ(doc.sections.size(), 3u) << doc.sections.front().paragraphs.front();
  EXPECT_TRUE(doc.sections[0].heading_path.empty());
  EXPECT_EQ(doc.sections[0].paragraphs, (std::vector<std::string>{"Table of Contents"}));
  const Section& faq = doc.sections[1];
  EXPECT_EQ(faq.heading_path,
            (std::vector<std::string>{
                "Chapter 1. Definitions",
                "1.1. What is this FAQ? It is a long heading that goes on to a second line"}));
  EXPECT_EQ(faq.paragraphs,
            (std::vector<std::string>{"This document answers questions.", "* a list item", "* another"}));
  EXPECT_EQ(doc.sections[2].heading_path.back(), "1.2. What is Debian?");
  EXPECT_EQ(faq.location, "line 8");
  EXPECT_EQ(doc.sections[2].location, "line 16");
}

// A DOCX as Word writes it, reduced to what kb reads: word/document.xml in a zip archive.
std::string docx_bytes(const fs::path& where, const std::string& body_xml) {
  const std::string xml =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?><w:document "
      "xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>" +
      body_xml + "</w:body></w:document>";
  int error = 0;
  zip_t* archive = zip_open(where.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  EXPECT_NE(archive, nullptr);
  zip_source_t* source = zip_source_buffer(archive, xml.data(), xml.size(), 0);
  EXPECT_GE(zip_file_add(archive, "word/document.xml", source, ZIP_FL_OVERWRITE), 0);
  EXPECT_EQ(zip_close(archive), 0);
  std::ifstream in(where, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string docx_paragraph(const std::string& style, const std::string& text) {
  const std::string props = style.empty() ? "" : "<w:pPr><w:pStyle w:val=\"" + style + "\"/></w:pPr>";
  return "<w:p>" + props + "<w:r><w:t>" + text + "</w:t></w:r></w:p>";
}

TEST(KbExtract, DocxHeadingStylesParagraphsAndTables) {
  TempDir dir;
  const std::string bytes =
      docx_bytes(dir.path() / "policy.docx",
                 docx_paragraph("Title", "Shop policy") + docx_paragraph("Heading1", "Returns") +
                     docx_paragraph("", "Returns are accepted for thirty days.") + "<w:tbl><w:tr><w:tc>" +
                     docx_paragraph("", "Item") + "</w:tc><w:tc>" + docx_paragraph("", "Days") +
                     "</w:tc></w:tr></w:tbl>" + docx_paragraph("Heading2", "Gift cards") +
                     docx_paragraph("", "Store credit only."));
  const Document doc = extract(bytes, DocKind::docx, "policy.docx");
  EXPECT_EQ(doc.title, "Shop policy");
  ASSERT_EQ(doc.sections.size(), 2u);
  EXPECT_EQ(doc.sections[0].heading_path, (std::vector<std::string>{"Shop policy", "Returns"}));
  EXPECT_EQ(doc.sections[0].paragraphs,
            (std::vector<std::string>{"Returns are accepted for thirty days.", "Item | Days"}));
  EXPECT_EQ(doc.sections[1].heading_path.back(), "Gift cards");
  EXPECT_EQ(doc.sections[1].location, "paragraph 5");
}

// A few hundred kilobytes of DOCX that inflate past the limit: refused before inflating (the probe that found
// it: a 204 KB upload inflating to 200 MB took a node to 2.7 GB and half an hour of chunking).
TEST(KbExtract, ADocxWhoseXmlInflatesPastTheLimitIsRefused) {
  TempDir dir;
  const std::string bytes =
      docx_bytes(dir.path() / "bomb.docx", docx_paragraph("", std::string(max_docx_entry_bytes, 'a')));
  ASSERT_LT(bytes.size(), max_docx_entry_bytes / 100);
  try {
    extract(bytes, DocKind::docx, "bomb.docx");
    FAIL() << "no error";
  } catch (const ClawbotError& e) {
    EXPECT_NE(std::string(e.what()).find("bomb.docx"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("limit of 64 MiB"), std::string::npos) << e.what();
  }
}

TEST(KbExtract, ADocumentWithMoreTextThanTheLimitIsRefused) {
  std::string text(max_document_text_bytes + 2, 'a');
  text[text.size() / 2] = '\n';
  try {
    extract(text, DocKind::text, "huge.txt");
    FAIL() << "no error";
  } catch (const ClawbotError& e) {
    EXPECT_EQ(e.error().code, "document_too_large");
    EXPECT_NE(std::string(e.what()).find("huge.txt"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(extract(std::string(max_document_text_bytes, 'a'), DocKind::text, "fits.txt"));
}

TEST(KbExtract, BytesThatAreNotUtf8BecomeReplacementCharacters) {
  const Document doc = extract("Caf\xe9 au lait, \xe4\xb8\xad ok", DocKind::text, "latin1.txt");
  ASSERT_EQ(doc.sections.size(), 1u);
  EXPECT_EQ(doc.sections[0].paragraphs[0], "Caf\xef\xbf\xbd au lait, \xe4\xb8\xad ok");
}

TEST(KbExtract, BrokenPdfAndDocxAreRefusedWithTheirName) {
  for (const auto kind : {DocKind::pdf, DocKind::docx}) {
    try {
      extract("not really", kind, "/tmp/broken.file");
      FAIL() << "no error";
    } catch (const ClawbotError& e) {
      EXPECT_NE(std::string(e.what()).find("/tmp/broken.file"), std::string::npos) << e.what();
    }
  }
}

// A run without blanks (what a crafted DOCX or a base64 blob gives) is cut before its tokens are counted:
// the tokenizer only ever sees pieces of bounded size, and the pieces still hold all of the text.
TEST(KbChunk, ALongRunWithoutBlanksIsCutBeforeItIsCounted) {
  Document doc;
  Section s;
  s.paragraphs = {std::string(4u << 20, 'x')};
  doc.sections.push_back(s);
  std::size_t largest = 0, counted = 0;
  const TokenCounter counting = [&](std::string_view text) {
    largest = std::max(largest, text.size());
    counted += text.size();
    return approximate_tokens(text);
  };
  const auto chunks = chunk_document(doc, {256, 0}, counting);
  std::size_t total = 0;
  for (const auto& c : chunks) total += c.text.size();
  EXPECT_EQ(total, 4u << 20);
  EXPECT_LE(largest, 256u * 64u);
  EXPECT_LT(
      counted,
      12u * (4u << 20));  // a few passes (halvings under the cap, packing), not one per level over it all
}

TEST(KbChunk, BudgetOverlapAndHeadingsRespected) {
  Document doc;
  Section s;
  s.heading_path = {"Guide", "Long section"};
  for (int i = 0; i < 30; ++i)
    s.paragraphs.push_back("Paragraph " + std::to_string(i) + " says something about topic " +
                           std::to_string(i) + ". It has a second sentence too.");
  doc.sections.push_back(s);
  Section other;
  other.heading_path = {"Guide", "Short"};
  other.paragraphs = {"Only this."};
  doc.sections.push_back(other);
  const auto chunks = chunk_document(doc, {60, 12}, words);
  ASSERT_GT(chunks.size(), 3u);
  for (const auto& c : chunks) EXPECT_LE(c.tokens, 60u) << c.text;
  EXPECT_EQ(chunks.back().heading_path, "Guide > Short");
  EXPECT_EQ(chunks.back().text, "Only this.");
  // The second chunk starts with the end of the first.
  const std::string& first = chunks[0].text;
  const std::string tail = first.substr(first.rfind('\n') + 1);
  EXPECT_NE(chunks[1].text.find(tail.substr(tail.size() - 20)), std::string::npos);
  EXPECT_EQ(chunks[0].embedding_input().rfind("Guide > Long section\n\n", 0), 0u);
}

TEST(KbChunk, AParagraphLongerThanTheBudgetIsCutAtSentencesThenWords) {
  Document doc;
  Section s;
  std::string long_paragraph;
  for (int i = 0; i < 40; ++i) long_paragraph += "Sentence number " + std::to_string(i) + " is here. ";
  long_paragraph += std::string(600, 'x');  // one "word" of 200 tokens: cut anywhere
  s.paragraphs = {long_paragraph};
  doc.sections.push_back(s);
  const auto chunks = chunk_document(doc, {50, 0}, approximate_tokens);
  ASSERT_GT(chunks.size(), 4u);
  for (const auto& c : chunks) EXPECT_LE(c.tokens, 50u);
}

class KbStoreTest : public ::testing::Test {
 protected:
  TempDir dir;
  fs::path kb_file = dir.path() / "shop.kb";
  IngestOptions options;
  std::size_t embedded_calls = 0;
  EmbedFunction embed = [this](std::span<const std::string> inputs) {
    embedded_calls += inputs.size();
    return fake_embed(inputs);
  };

  IngestReport add(KnowledgeBase& kb, const std::vector<std::string>& paths) {
    const auto docs = collect_files(paths, {}, {});
    return kb.ingest(docs, options, words, embed, {});
  }
};

TEST_F(KbStoreTest, CreateRefusesAnExistingFileAndOpenRefusesMissingForeignAndGarbageFilesByName) {
  KnowledgeBase::create(kb_file);
  EXPECT_THROW(KnowledgeBase::create(kb_file), ClawbotError);
  EXPECT_NO_THROW(KnowledgeBase::open(kb_file));
  const auto expect_refused = [](const fs::path& p, std::string_view words_in_message) {
    try {
      KnowledgeBase::open(p);
      ADD_FAILURE() << p << " opened";
    } catch (const ClawbotError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(p.string()), std::string::npos) << message;
      EXPECT_NE(message.find(words_in_message), std::string::npos) << message;
    }
  };
  expect_refused(dir.path() / "missing.kb", "no such knowledge base");
  // Another program's SQLite database.
  const fs::path foreign = dir.path() / "foreign.kb";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(foreign.c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  expect_refused(foreign, "not a clawbot knowledge base");
  // Not SQLite at all.
  expect_refused(dir.write("garbage.kb", std::string(8192, 'z')), "not a usable knowledge base");
}

TEST_F(KbStoreTest, ReAddEmbedsOnlyChangedDocumentsAndSyncRemovesWhatDisappeared) {
  dir.write("docs/shop.md", markdown_doc);
  dir.write("docs/hours.txt", "Opening hours\n=============\n\nThe shop opens at nine and closes at six.\n");
  dir.write("docs/ignored.bin", "binary");
  KnowledgeBase kb = KnowledgeBase::create(kb_file);
  auto r = add(kb, {(dir.path() / "docs").string()});
  EXPECT_EQ(r.added, 2u);
  EXPECT_EQ(r.failed, 0u);
  const std::size_t first_calls = embedded_calls;
  EXPECT_EQ(r.chunks_embedded, first_calls);
  EXPECT_EQ(kb.info().embedding_model, "fake-embed");
  EXPECT_EQ(kb.info().dimension, 64);

  r = add(kb, {(dir.path() / "docs").string()});
  EXPECT_EQ(r.unchanged, 2u);
  EXPECT_EQ(embedded_calls, first_calls) << "nothing changed, nothing embedded";

  dir.write("docs/hours.txt", "Opening hours\n=============\n\nThe shop opens at ten and closes at six.\n");
  r = add(kb, {(dir.path() / "docs").string()});
  EXPECT_EQ(r.updated, 1u);
  EXPECT_EQ(r.unchanged, 1u);
  EXPECT_EQ(embedded_calls - first_calls, r.chunks_embedded);
  EXPECT_EQ(r.chunks_embedded, 1u);

  fs::remove(dir.path() / "docs/hours.txt");
  options.sync = true;
  r = add(kb, {(dir.path() / "docs").string()});
  EXPECT_EQ(r.removed, 1u);
  EXPECT_EQ(kb.sources().size(), 1u);
  const auto hits = kb.search("opens at ten", nullptr, {SearchMode::bm25, 5, 50});
  for (const auto& h : hits) EXPECT_EQ(h.source.find("hours"), std::string::npos) << "removed document found";
}

TEST_F(KbStoreTest, DocumentsAreListedByIdRemovedByIdAndAnotherConnectionsCommitsCounted) {
  dir.write("docs/shop.md", markdown_doc);
  dir.write("docs/hours.txt", "Opening hours\n=============\n\nThe shop opens at nine and closes at six.\n");
  KnowledgeBase kb = KnowledgeBase::create(kb_file);
  KnowledgeBase reader = KnowledgeBase::open(kb_file);
  const std::int64_t version = reader.change_version();
  add(kb, {(dir.path() / "docs").string()});
  EXPECT_NE(reader.change_version(), version) << "the writer's commits are seen by the other connection";
  const auto docs = reader.documents();
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_LT(docs[0].id, docs[1].id);
  for (const auto& d : docs) {
    EXPECT_GT(d.chunks, 0);
    EXPECT_TRUE(d.embedded);
    EXPECT_EQ(d.content_hash.size(), 64u);
  }
  const auto hours = reader.document((dir.path() / "docs/hours.txt").string());
  ASSERT_TRUE(hours.has_value());
  EXPECT_EQ(hours->kind, "text");
  const std::int64_t before_remove = reader.change_version();
  const auto removed = kb.remove_document(hours->id);
  ASSERT_TRUE(removed.has_value());
  EXPECT_EQ(removed->source, hours->source);
  EXPECT_FALSE(kb.remove_document(hours->id).has_value()) << "removed once";
  EXPECT_NE(reader.change_version(), before_remove);
  EXPECT_EQ(reader.documents().size(), 1u);
  EXPECT_TRUE(reader.search("opens at nine", nullptr, {SearchMode::bm25, 5, 50}).empty() ||
              reader.search("opens at nine", nullptr, {SearchMode::bm25, 5, 50})[0].source != hours->source);
}

TEST_F(KbStoreTest, AnotherEmbeddingModelIsRefusedNamingBoth) {
  dir.write("a.md", markdown_doc);
  KnowledgeBase kb = KnowledgeBase::create(kb_file);
  add(kb, {(dir.path() / "a.md").string()});
  try {
    kb.check_embedding_model("other-model");
    FAIL() << "accepted";
  } catch (const ClawbotError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("fake-embed"), std::string::npos) << m;
    EXPECT_NE(m.find("other-model"), std::string::npos) << m;
  }
  dir.write("b.md", "# Other\n\nSomething else entirely.\n");
  embed = [](std::span<const std::string> inputs) { return fake_embed(inputs, "other-model"); };
  EXPECT_THROW(add(kb, {(dir.path() / "b.md").string()}), ClawbotError);
  EXPECT_EQ(kb.sources().size(), 1u) << "the refused document was not stored";
}

TEST_F(KbStoreTest, Bm25VectorAndHybridSearchWithCitationsFields) {
  dir.write("shop.md", markdown_doc);
  KnowledgeBase kb = KnowledgeBase::create(kb_file);
  add(kb, {(dir.path() / "shop.md").string()});

  auto hits = kb.search("when is my refund paid back to the card?", nullptr, {SearchMode::bm25, 3, 50});
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].heading_path, "Returns > Refunds");
  EXPECT_EQ(hits[0].location, "line 5");
  EXPECT_NE(hits[0].source.find("shop.md"), std::string::npos);
  ASSERT_TRUE(hits[0].bm25.has_value());

  const std::string query = "tracking number parcels";
  const auto qv = fake_embed(std::span(&query, 1)).vectors[0];
  hits = kb.search(query, &qv, {SearchMode::vector, 3, 50});
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].heading_path, "Shipping");
  ASSERT_TRUE(hits[0].cosine.has_value());
  hits = kb.search(query, &qv, {SearchMode::hybrid, 3, 50});
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].heading_path, "Shipping");
  EXPECT_TRUE(hits[0].bm25_rank && hits[0].vector_rank);
  EXPECT_THROW(kb.search(query, nullptr, {SearchMode::hybrid, 3, 50}), ClawbotError);
}

TEST_F(KbStoreTest, CoverageIsHighForAnAnsweredQuestionAndLowForAnotherTopic) {
  dir.write("shop.md", markdown_doc);
  KnowledgeBase kb = KnowledgeBase::create(kb_file);
  add(kb, {(dir.path() / "shop.md").string()});
  const std::string answered = "Are shipping costs refunded?";
  const std::string other = "How do I reset my router password?";
  const auto a = kb.search(answered, nullptr, {SearchMode::bm25, 5, 50});
  const auto b = kb.search(other, nullptr, {SearchMode::bm25, 5, 50});
  EXPECT_GT(kb.coverage(answered, a), 0.9);
  EXPECT_LT(kb.coverage(other, b), 0.2);
}

TEST_F(KbStoreTest, ChineseTextIsFoundByTwoCharacterAndLongerQueries) {
  dir.write("zh.md",
            "# 退货政策\n\n本店接受收货后三十天内的退货。退款将退回原支付卡。\n\n# "
            "配送\n\n我们向欧盟所有国家发货，包裹附有追踪号码。\n");
  KnowledgeBase kb = KnowledgeBase::create(kb_file);
  add(kb, {(dir.path() / "zh.md").string()});
  for (const std::string q : {"退款", "追踪号码", "怎样退货呢"}) {
    const auto hits = kb.search(q, nullptr, {SearchMode::bm25, 3, 50});
    ASSERT_FALSE(hits.empty()) << q;
    EXPECT_EQ(hits[0].heading_path, q == "追踪号码" ? "配送" : "退货政策") << q;
    EXPECT_GT(kb.coverage(q, hits), 0.5) << q;
  }
  EXPECT_TRUE(kb.search("天气", nullptr, {SearchMode::bm25, 3, 50}).empty());
}

TEST(KbTerms, TheRarestWordsAreMatchedAndNearStopWordsLeftOut) {
  const auto word = [](std::string w, std::int64_t df) { return QueryWord{w, {w}, df}; };
  // In a base of 1,000 chunks: "printer" is in 900 (an idf of about zero), "duplex" in 3, "toner" in 40.
  auto chosen =
      match_words({word("printer", 900), word("duplex", 3), word("missing", 0), word("toner", 40)}, 1000);
  EXPECT_EQ(chosen, (std::vector<std::string>{"duplex", "toner"}));
  // A question of near stop words alone keeps them (their near-zero scores are all the ranking has), within
  // the postings budget, the rarest first.
  chosen = match_words({word("printer", 900), word("paper", 800)}, 1000);
  EXPECT_EQ(chosen, (std::vector<std::string>{"paper", "printer"}));
  chosen = match_words({word("printer", 900000), word("paper", 800000)}, 1000000);
  EXPECT_EQ(chosen, (std::vector<std::string>{"paper"}));
  // At most max_match_words, the rarest; none beyond the postings budget once a rarer one is in.
  std::vector<QueryWord> many;
  for (std::int64_t i = 0; i < 12; ++i) many.push_back(word("w" + std::to_string(i), 100 - i));
  chosen = match_words(many, 1000000);
  ASSERT_EQ(chosen.size(), max_match_words);
  EXPECT_EQ(chosen.front(), "w11");
  chosen = match_words({word("rare", 5), word("common", match_postings_budget)}, 1000000);
  EXPECT_EQ(chosen, (std::vector<std::string>{"rare"}));
}

TEST_F(KbStoreTest, ARareWordFindsItsChunkAmongManyThatHoldTheFrequentOnes) {
  std::string doc = "# Printers\n\n";
  for (int i = 0; i < 40; ++i)
    doc += "## Printer model " + std::to_string(i) + "\n\nThe printer prints pages of paper, model " +
           std::to_string(i) + ".\n\n";
  doc += "## Two-sided\n\nThe printer prints both sides of the paper with the duplex unit.\n";
  dir.write("printers.md", doc);
  KnowledgeBase kb = KnowledgeBase::create(kb_file);
  add(kb, {(dir.path() / "printers.md").string()});
  const std::string q = "does the printer do duplex printing on paper?";
  const auto hits = kb.search(q, nullptr, {SearchMode::bm25, 3, 50});
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].heading_path, "Printers > Two-sided");
  EXPECT_GT(kb.coverage(q, hits), 0.9);
  // Words that every chunk holds still find chunks when they are all the question has.
  EXPECT_FALSE(kb.search("printer paper", nullptr, {SearchMode::bm25, 3, 50}).empty());
}

// The stored embeddings, read back with SQLite's own API: the reference for exact search.
std::vector<std::pair<std::int64_t, std::vector<float>>> stored_vectors(const fs::path& file) {
  std::vector<std::pair<std::int64_t, std::vector<float>>> out;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT chunk_id, vector FROM embeddings", -1, &st, nullptr), SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW) {
    std::vector<float> v(static_cast<std::size_t>(sqlite3_column_bytes(st, 1)) / sizeof(float));
    std::memcpy(v.data(), sqlite3_column_blob(st, 1), v.size() * sizeof(float));
    out.emplace_back(sqlite3_column_int64(st, 0), std::move(v));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

TEST_F(KbStoreTest, VectorSearchGivesTheTopKOfAnExactScanOverTheStoredEmbeddings) {
  std::string doc;
  // More rows than the pool scored again exactly: the 8-bit codes choose which.
  for (int i = 0; i < 600; ++i)
    doc += "# Topic " + std::to_string(i) + "\n\nword" + std::to_string(i % 7) + " term" +
           std::to_string(i % 11) + " thing" + std::to_string(i % 13) + " shared\n\n";
  dir.write("topics.md", doc);
  KnowledgeBase kb = KnowledgeBase::create(kb_file);
  add(kb, {(dir.path() / "topics.md").string()});
  const auto stored = stored_vectors(kb_file);
  ASSERT_EQ(stored.size(), 600u);
  for (const std::string query : {"word3 term5", "thing12 shared word1", "term0"}) {
    const auto qv = fake_embed(std::span(&query, 1)).vectors[0];
    std::vector<std::pair<double, std::int64_t>> exact;
    double qn = 0;
    for (const float x : qv) qn += double(x) * x;
    for (const auto& [id, v] : stored) {
      double dot = 0;
      for (std::size_t i = 0; i < v.size(); ++i) dot += double(v[i]) * qv[i];
      exact.emplace_back(dot / std::sqrt(qn), id);
    }
    std::sort(exact.begin(), exact.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    const auto hits = kb.search(query, &qv, {SearchMode::vector, 10, 50});
    ASSERT_EQ(hits.size(), 10u) << query;
    for (std::size_t i = 0; i < hits.size(); ++i) {
      EXPECT_NEAR(*hits[i].cosine, exact[i].first, 1e-5) << query << " rank " << i;
      // Equal scores may come in either order; a different score at a rank is a different chunk.
      if (i + 1 < hits.size() && exact[i].first - exact[i + 1].first > 1e-5 &&
          (i == 0 || exact[i - 1].first - exact[i].first > 1e-5)) {
        EXPECT_EQ(hits[i].chunk_id, exact[i].second) << query << " rank " << i;
      }
    }
  }
}

TEST_F(KbStoreTest, AKnowledgeBaseChangedThroughAnotherConnectionIsSeenByALongLivedSearcher) {
  dir.write("docs/shop.md", markdown_doc);
  KnowledgeBase::create(kb_file);
  KnowledgeBase searcher = KnowledgeBase::open(kb_file);
  {
    KnowledgeBase writer = KnowledgeBase::open(kb_file);
    add(writer, {(dir.path() / "docs").string()});
  }
  const std::string query = "xylophone quartet rehearsal";
  const auto qv = fake_embed(std::span(&query, 1)).vectors[0];
  // Counts, document frequencies and vectors are read and kept...
  const auto before = searcher.info();
  EXPECT_GT(before.chunks, 0);
  EXPECT_TRUE(searcher.search(query, nullptr, {SearchMode::bm25, 3, 50}).empty());
  EXPECT_NE(searcher.search(query, &qv, {SearchMode::vector, 1, 50})[0].heading_path, "Music");
  // ... until another connection (another process's `kb add`) commits.
  dir.write("docs/music.md", "# Music\n\nThe xylophone quartet rehearsal is on Friday.\n");
  {
    KnowledgeBase writer = KnowledgeBase::open(kb_file);
    add(writer, {(dir.path() / "docs").string()});
  }
  EXPECT_EQ(searcher.info().chunks, before.chunks + 1);
  EXPECT_EQ(searcher.info().documents, before.documents + 1);
  auto hits = searcher.search(query, nullptr, {SearchMode::bm25, 3, 50});
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].heading_path, "Music");
  EXPECT_GT(searcher.coverage(query, hits), 0.9);
  hits = searcher.search(query, &qv, {SearchMode::vector, 1, 50});
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].heading_path, "Music");
}

TEST_F(KbStoreTest, AKnowledgeBaseWithoutTheCjkGramIndexGetsItWhenOpened) {
  dir.write("zh.md", "# 配送\n\n我们向欧盟所有国家发货，包裹附有追踪号码。\n");
  KnowledgeBase::create(kb_file);
  {
    KnowledgeBase kb = KnowledgeBase::open(kb_file);
    add(kb, {(dir.path() / "zh.md").string()});
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(kb_file.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DROP TABLE chunks_cjk_grams", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  KnowledgeBase kb = KnowledgeBase::open(kb_file);
  const auto hits = kb.search("号码", nullptr, {SearchMode::bm25, 3, 50});
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].heading_path, "配送");
}

TEST(KbEval, HitsMatchSectionNumbersAtBoundariesAndFiguresAddUp) {
  SearchHit h;
  h.heading_path = "Chapter 7 > 7.12. How do I put a package on hold?";
  h.source = "/usr/share/doc/debian/FAQ/pkg-basics.en.html";
  EXPECT_TRUE(hit_matches(h, "7.12"));
  EXPECT_FALSE(hit_matches(h, "7.1"));
  EXPECT_FALSE(hit_matches(h, "2"));
  EXPECT_TRUE(hit_matches(h, "pkg-basics.en.html"));

  const auto questions = parse_eval_set(
      "{\"question\":\"a\",\"expected\":\"7.12\"}\n\n{\"question\":\"b\",\"expected\":\"7.1\"}\n"
      "{\"question\":\"c\",\"expected\":null}\n",
      "set.jsonl");
  ASSERT_EQ(questions.size(), 3u);
  SearchHit other = h;
  other.heading_path = "7.1. What is a package?";
  EvalRun run;
  run.hits = {{h}, {h, other}, {h}};
  run.coverage = {0.9, 0.5, 0.2};
  const EvalFigures f = score_eval(questions, run, 0.6);
  EXPECT_DOUBLE_EQ(f.hit_at_1, 0.5);
  EXPECT_DOUBLE_EQ(f.hit_at_5, 1.0);
  EXPECT_DOUBLE_EQ(f.mrr, 0.75);
  EXPECT_DOUBLE_EQ(f.refusal_precision, 0.5);  // b wrongly refused, c rightly
  EXPECT_DOUBLE_EQ(f.refusal_recall, 1.0);
  EXPECT_EQ(f.wrongly_refused, 1u);
  const auto t = calibrate_threshold(questions, run, 0.9);
  ASSERT_TRUE(t.has_value());
  EXPECT_GT(*t, 0.2);
  EXPECT_LE(*t, 0.5);
  try {
    parse_eval_set("{\"question\":\"a\"}\n", "set.jsonl");
    FAIL();
  } catch (const ClawbotError& e) {
    EXPECT_NE(std::string(e.what()).find("set.jsonl:1"), std::string::npos) << e.what();
  }
}

TEST(KbAnswer, FollowUpsAreMadeToStandAloneAndPromptsNumberThePassages) {
  const std::vector<std::string> before = {"How do I put a package on hold?"};
  EXPECT_EQ(standalone_question(before, "What does dpkg do with configuration files?"),
            "What does dpkg do with configuration files?");
  const std::string follow = standalone_question(before, "and how do I undo it?");
  EXPECT_NE(follow.find("package"), std::string::npos) << follow;
  EXPECT_NE(follow.find("hold"), std::string::npos) << follow;
  EXPECT_EQ(standalone_question({}, "and how do I undo it?"), "and how do I undo it?");

  SearchHit a, b;
  a.source = "/docs/a.md", a.heading_path = "Returns", a.text = "Thirty days.", a.location = "line 1";
  b.source = "/docs/b.md", b.text = "Five days.";
  const std::vector<SearchHit> passages = {a, b};
  const std::string prompt = grounded_system_prompt(passages);
  EXPECT_NE(prompt.find("[1] Returns\nThirty days."), std::string::npos) << prompt;
  EXPECT_NE(prompt.find("[2] Five days."), std::string::npos) << prompt;
  EXPECT_EQ(citation_lines(passages), "[1] /docs/a.md \xc2\xa7 Returns (line 1)\n[2] /docs/b.md\n");
  const std::string refusal = refusal_text(passages);
  EXPECT_EQ(refusal.rfind("Not in the knowledge base", 0), 0u);
  EXPECT_NE(refusal.find("- Returns"), std::string::npos) << refusal;
}

}  // namespace
}  // namespace clawbot::kb
