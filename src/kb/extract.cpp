// Documents to sections: the headings, paragraphs and list items of plain text, Markdown, HTML (gumbo), PDF
// (poppler-cpp, a section per numbered heading, located by page) and DOCX (libzip + pugixml).
#include <gumbo.h>
#include <poppler-document.h>
#include <poppler-global.h>
#include <poppler-page.h>
#include <zip.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <functional>
#include <memory>
#include <pugixml.hpp>
#include <regex>

#include "common/text.h"
#include "kb/kb.h"

namespace clawbot::kb {

namespace {

[[noreturn]] void unreadable(std::string_view source, std::string_view kind, const std::string& why) {
  throw ClawbotError(ErrorKind::invalid_request,
                     std::string(source) + ": cannot be read as " + std::string(kind) + ": " + why);
}

// `s` with each byte that is not part of valid UTF-8 replaced by U+FFFD: a Latin-1 text file or a PDF's odd
// bytes must not reach JSON answers (which are UTF-8) as they are.
std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size() && !(len == 2 && b < 0xc2) && !(len == 4 && b > 0xf4);
    for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (ok && len == 3) {  // no overlong forms, no surrogates
      const auto b1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(b == 0xe0 && b1 < 0xa0) && !(b == 0xed && b1 >= 0xa0);
    }
    if (ok && len == 4) {
      const auto b1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(b == 0xf0 && b1 < 0x90) && !(b == 0xf4 && b1 >= 0x90);
    }
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  return out;
}

// White space runs (blanks, tabs, line ends, no-break spaces) as one blank, trimmed; invalid UTF-8 replaced.
std::string collapse(std::string_view raw) {
  const std::string checked = valid_utf8(raw);
  const std::string_view s = checked;
  std::string out;
  bool space = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool nbsp = static_cast<unsigned char>(c) == 0xc2 && i + 1 < s.size() &&
                      static_cast<unsigned char>(s[i + 1]) == 0xa0;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || nbsp) {
      space = true;
      if (nbsp) ++i;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

// Builds sections while a document is walked: headings open sections, paragraphs fill them.
class SectionBuilder {
 public:
  void heading(std::size_t level, std::string title, std::string location) {
    title = collapse(title);
    if (title.empty()) return;
    level = std::max<std::size_t>(level, 1);
    while (!levels_.empty() && levels_.back() >= level) {
      levels_.pop_back();
      path_.pop_back();
    }
    levels_.push_back(level);
    path_.push_back(std::move(title));
    open(std::move(location));
  }
  void paragraph(std::string_view text, const std::string& location = {}) {
    std::string p = collapse(text);
    if (p.empty()) return;
    if (sections_.empty() || sections_.back().heading_path != path_) open(location);
    if (sections_.back().location.empty()) sections_.back().location = location;
    sections_.back().paragraphs.push_back(std::move(p));
  }
  // A paragraph that keeps its line breaks (code, preformatted text): blanks inside lines collapsed.
  void preformatted(std::string_view text, const std::string& location = {}) {
    std::string out;
    std::size_t start = 0;
    while (start <= text.size()) {
      const std::size_t end = std::min(text.find('\n', start), text.size());
      const std::string line = collapse(text.substr(start, end - start));
      if (!line.empty()) out += (out.empty() ? "" : "\n") + line;
      start = end + 1;
    }
    if (out.empty()) return;
    if (sections_.empty() || sections_.back().heading_path != path_) open(location);
    sections_.back().paragraphs.push_back(std::move(out));
  }
  Document finish(std::string title) {
    Document doc;
    doc.title = collapse(title);
    for (auto& s : sections_)
      if (!s.paragraphs.empty()) doc.sections.push_back(std::move(s));
    if (doc.title.empty() && !doc.sections.empty() && !doc.sections.front().heading_path.empty())
      doc.title = doc.sections.front().heading_path.front();
    return doc;
  }

 private:
  void open(std::string location) {
    Section s;
    s.heading_path = path_;
    s.location = std::move(location);
    sections_.push_back(std::move(s));
  }
  std::vector<std::size_t> levels_;
  std::vector<std::string> path_;
  std::vector<Section> sections_;
};

// ---------------------------------------------------------------- plain text and PDF text

// "7.12. How do I ..." or "7.12 How do I ...": a numbered heading; its level is the count of numbers.
std::optional<std::size_t> numbered_heading_level(std::string_view line) {
  static const std::regex numbered(R"(^(\d{1,3}(?:\.\d{1,3})+)\.?\s+(\S).*)");
  if (line.size() > 160 || line.empty() || !std::isdigit(static_cast<unsigned char>(line[0])))
    return std::nullopt;
  std::match_results<std::string_view::const_iterator> m;
  if (!std::regex_match(line.begin(), line.end(), m, numbered)) return std::nullopt;
  // A title starts with a capital or a quote, or is short ("8.1.1 dpkg"): "2.6.32 kernels are ..." at the
  // start of a wrapped line of a paragraph is no heading.
  const char first = *m[2].first;
  const bool capital = (first >= 'A' && first <= 'Z') || first == '"' || first == '\'' || first == '(' ||
                       static_cast<unsigned char>(first) == 0xe2;
  if (!capital && line.size() >= 60) return std::nullopt;
  const std::string number = m[1].str();
  return 1 + static_cast<std::size_t>(std::count(number.begin(), number.end(), '.'));
}

bool chapter_line(std::string_view line) {
  static const std::regex chapter(R"(^(Chapter|Appendix|Part)\s+[0-9A-Z]+\.?(\s.*)?$)");
  return line.size() < 160 && std::regex_match(line.begin(), line.end(), chapter);
}

// A table-of-contents line: dot leaders, or an indented numbered entry.
bool toc_line(std::string_view line) {
  if (line.find(". . .") != std::string_view::npos || line.find("....") != std::string_view::npos)
    return true;
  const std::string_view t = text::trim(line);
  return t.size() != line.size() && numbered_heading_level(t).has_value();
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

bool list_item_start(std::string_view t) {
  if (t.starts_with("* ") || t.starts_with("- ") || t.starts_with("+ ") || t.starts_with("\xe2\x80\xa2"))
    return true;
  std::size_t digits = 0;
  while (digits < t.size() && std::isdigit(static_cast<unsigned char>(t[digits]))) ++digits;
  return digits > 0 && digits < 4 && digits + 1 < t.size() && (t[digits] == '.' || t[digits] == ')') &&
         t[digits + 1] == ' ';
}

// Lines of text (a text file, or a PDF page by page) into sections. Headings: numbered lines starting at
// the margin ("3.1.2. Will there be ...", continued on following lines at the margin until a blank line),
// "Chapter N" lines (with the title on the same or the next line), and lines underlined with === or ---.
// Paragraphs end at blank lines and list items; table-of-contents lines are left out.
class LineReader {
 public:
  explicit LineReader(SectionBuilder& out) : out_(out) {}

  void lines(std::string_view raw, const std::function<std::string(std::size_t)>& location_of) {
    // No-break spaces (DocBook's "7.12.&nbsp;How ...") as blanks, so that headings are found.
    std::string normalized(raw);
    for (std::size_t at = normalized.find("\xc2\xa0"); at != std::string::npos;
         at = normalized.find("\xc2\xa0", at))
      normalized.replace(at, 2, " ");
    const auto all = split_lines(normalized);
    for (std::size_t i = 0; i < all.size(); ++i) {
      const std::string_view line = all[i];
      const std::string_view t = text::trim(line);
      if (t.empty()) {
        flush();
        continue;
      }
      if (toc_line(line)) {
        flush();
        continue;
      }
      // A page number alone on its line (PDF).
      if (std::all_of(t.begin(), t.end(),
                      [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) &&
          t.size() < 5) {
        continue;
      }
      const bool at_margin = t.size() == line.size() || line.front() != ' ';
      if (at_margin && chapter_line(t)) {
        flush();
        std::string title(t);
        const std::string at = location_of(i);
        // "Chapter 7" alone: the title follows on the next lines (PDF), until a blank or a body line.
        if (title.find_first_of(".:") == std::string::npos || title.back() == '.') {
          while (i + 1 < all.size() && !text::trim(all[i + 1]).empty() &&
                 !numbered_heading_level(text::trim(all[i + 1])) && text::trim(all[i + 1]).size() < 60 &&
                 title.size() < 120) {
            title += " " + std::string(text::trim(all[++i]));
          }
        }
        out_.heading(1, title, at);
        continue;
      }
      // A numbered heading ends the paragraph before it (PDF text has no blank lines between them).
      if (at_margin) {
        if (const auto level = numbered_heading_level(t)) {
          flush();
          std::string title(t);
          const std::string at = location_of(i);
          // A heading wrapped at the margin (text files): its next lines up to the blank line.
          while (plain_text_ && i + 1 < all.size() && !text::trim(all[i + 1]).empty() &&
                 all[i + 1].front() != ' ' && title.size() < 300)
            title += " " + std::string(text::trim(all[++i]));
          out_.heading(*level + 1, title, at);
          continue;
        }
        // Setext underline: the line after is all '=' or '-'.
        if (pending_.empty() && i + 1 < all.size()) {
          const std::string_view next = text::trim(all[i + 1]);
          if (next.size() >= 3 && next.size() + 2 >= t.size() &&
              (next.find_first_not_of('=') == std::string_view::npos ||
               (next.find_first_not_of('-') == std::string_view::npos && t.size() < 80))) {
            out_.heading(next[0] == '=' ? 1 : 2, std::string(t), location_of(i));
            ++i;
            continue;
          }
        }
      }
      if (list_item_start(t)) flush();
      if (pending_.empty()) pending_location_ = location_of(i);
      pending_ += (pending_.empty() ? "" : " ") + std::string(t);
    }
    flush();
  }
  void flush() {
    if (!pending_.empty()) out_.paragraph(pending_, pending_location_);
    pending_.clear();
  }
  bool plain_text_ = true;

 private:
  SectionBuilder& out_;
  std::string pending_;
  std::string pending_location_;
};

Document extract_text(std::string_view bytes) {
  SectionBuilder out;
  LineReader reader(out);
  reader.lines(bytes, [](std::size_t i) { return "line " + std::to_string(i + 1); });
  return out.finish({});
}

// ---------------------------------------------------------------- Markdown

Document extract_markdown(std::string_view bytes) {
  SectionBuilder out;
  const auto lines = split_lines(bytes);
  std::string pending, pending_location, fence, code;
  const auto flush = [&] {
    if (!pending.empty()) out.paragraph(pending, pending_location);
    pending.clear();
  };
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    const std::string_view t = text::trim(line);
    const std::string location = "line " + std::to_string(i + 1);
    if (!fence.empty()) {  // inside a fenced code block: kept whole, as one paragraph
      if (t.starts_with(fence)) {
        out.preformatted(code, pending_location);
        fence.clear();
        code.clear();
      } else {
        code += std::string(line) + "\n";
      }
      continue;
    }
    if (t.starts_with("```") || t.starts_with("~~~")) {
      flush();
      fence = std::string(t.substr(0, 3));
      pending_location = location;
      continue;
    }
    if (t.empty()) {
      flush();
      continue;
    }
    if (t.starts_with('#')) {
      const std::size_t level = t.find_first_not_of('#');
      if (level != std::string_view::npos && level <= 6 && t[level] == ' ') {
        flush();
        std::string title(text::trim(t.substr(level)));
        while (!title.empty() && title.back() == '#') title.pop_back();
        out.heading(level, title, location);
        continue;
      }
    }
    if (i + 1 < lines.size() && pending.empty()) {
      const std::string_view next = text::trim(lines[i + 1]);
      if (next.size() >= 2 && (next.find_first_not_of('=') == std::string_view::npos ||
                               next.find_first_not_of('-') == std::string_view::npos)) {
        out.heading(next[0] == '=' ? 1 : 2, std::string(t), location);
        ++i;
        continue;
      }
    }
    if (list_item_start(t) || t.starts_with('>') || t.starts_with('|')) flush();
    if (pending.empty()) pending_location = location;
    pending += (pending.empty() ? "" : " ") + std::string(t);
  }
  if (!fence.empty()) out.preformatted(code, pending_location);
  flush();
  return out.finish({});
}

// ---------------------------------------------------------------- HTML

struct GumboDeleter {
  void operator()(GumboOutput* output) const noexcept { gumbo_destroy_output(&kGumboDefaultOptions, output); }
};

const char* attribute(const GumboElement& e, const char* name) {
  const GumboAttribute* a = gumbo_get_attribute(&e.attributes, name);
  return a ? a->value : nullptr;
}

// Navigation and boilerplate that no answer is in: scripts, menus, DocBook's tables of contents and
// navigation bars.
bool skipped_element(const GumboElement& e) {
  switch (e.tag) {
    case GUMBO_TAG_SCRIPT:
    case GUMBO_TAG_STYLE:
    case GUMBO_TAG_NOSCRIPT:
    case GUMBO_TAG_NAV:
    case GUMBO_TAG_TEMPLATE:
    case GUMBO_TAG_SVG:
    case GUMBO_TAG_IFRAME:
      return true;
    default:
      break;
  }
  if (const char* cls = attribute(e, "class")) {
    const std::string c = text::lower(cls);
    for (const char* word : {"toc", "navheader", "navfooter", "breadcrumb", "sidebar", "footer-nav"}) {
      const std::size_t at = c.find(word);
      if (at == std::string::npos) continue;
      const bool start = at == 0 || c[at - 1] == ' ';
      const std::size_t end = at + std::strlen(word);
      if (start && (end == c.size() || c[end] == ' ')) return true;
    }
  }
  if (const char* role = attribute(e, "role")) {
    const std::string r = role;
    if (r == "navigation" || r == "banner" || r == "contentinfo") return true;
  }
  return false;
}

bool block_element(GumboTag tag) {
  switch (tag) {
    case GUMBO_TAG_P:
    case GUMBO_TAG_DIV:
    case GUMBO_TAG_LI:
    case GUMBO_TAG_DT:
    case GUMBO_TAG_DD:
    case GUMBO_TAG_TD:
    case GUMBO_TAG_TH:
    case GUMBO_TAG_TR:
    case GUMBO_TAG_BLOCKQUOTE:
    case GUMBO_TAG_SECTION:
    case GUMBO_TAG_ARTICLE:
    case GUMBO_TAG_TABLE:
    case GUMBO_TAG_UL:
    case GUMBO_TAG_OL:
    case GUMBO_TAG_DL:
    case GUMBO_TAG_BR:
    case GUMBO_TAG_HR:
    case GUMBO_TAG_FIGURE:
    case GUMBO_TAG_FIGCAPTION:
    case GUMBO_TAG_CAPTION:
    case GUMBO_TAG_BODY:
    case GUMBO_TAG_MAIN:
    case GUMBO_TAG_HEADER:
    case GUMBO_TAG_FOOTER:
    case GUMBO_TAG_ADDRESS:
      return true;
    default:
      return false;
  }
}

int heading_level(GumboTag tag) {
  switch (tag) {
    case GUMBO_TAG_H1:
      return 1;
    case GUMBO_TAG_H2:
      return 2;
    case GUMBO_TAG_H3:
      return 3;
    case GUMBO_TAG_H4:
      return 4;
    case GUMBO_TAG_H5:
      return 5;
    case GUMBO_TAG_H6:
      return 6;
    default:
      return 0;
  }
}

class HtmlWalker {
 public:
  void walk(const GumboNode* node) {
    if (node->type == GUMBO_NODE_TEXT || node->type == GUMBO_NODE_WHITESPACE ||
        node->type == GUMBO_NODE_CDATA) {
      text_ += node->v.text.text;
      return;
    }
    if (node->type != GUMBO_NODE_ELEMENT && node->type != GUMBO_NODE_TEMPLATE) return;
    const GumboElement& e = node->v.element;
    if (e.tag == GUMBO_TAG_TITLE) {
      title_ = all_text(node);
      return;
    }
    if (skipped_element(e)) return;
    if (const char* id = attribute(e, "id")) last_anchor_ = std::string("#") + id;
    if (const int level = heading_level(e.tag)) {
      flush();
      // The heading's anchor: its own id, or one inside it (DocBook's <h2><a id="...">).
      anchor_in(node);
      out_.heading(static_cast<std::size_t>(level), all_text(node), last_anchor_);
      return;
    }
    if (e.tag == GUMBO_TAG_PRE) {
      flush();
      out_.preformatted(all_text(node), last_anchor_);
      return;
    }
    const bool block = block_element(e.tag);
    if (block) flush();
    for (unsigned i = 0; i < e.children.length; ++i) walk(static_cast<const GumboNode*>(e.children.data[i]));
    if (block) flush();
  }
  Document finish() {
    flush();
    return out_.finish(title_);
  }

 private:
  void flush() {
    out_.paragraph(text_, last_anchor_);
    text_.clear();
  }
  void anchor_in(const GumboNode* node) {
    if (node->type != GUMBO_NODE_ELEMENT) return;
    if (const char* id = attribute(node->v.element, "id")) {
      last_anchor_ = std::string("#") + id;
      return;
    }
    const auto& children = node->v.element.children;
    for (unsigned i = 0; i < children.length; ++i) anchor_in(static_cast<const GumboNode*>(children.data[i]));
  }
  static std::string all_text(const GumboNode* node) {
    if (node->type == GUMBO_NODE_TEXT || node->type == GUMBO_NODE_WHITESPACE ||
        node->type == GUMBO_NODE_CDATA)
      return node->v.text.text;
    if (node->type != GUMBO_NODE_ELEMENT) return {};
    std::string out;
    const auto& children = node->v.element.children;
    for (unsigned i = 0; i < children.length; ++i)
      out += all_text(static_cast<const GumboNode*>(children.data[i]));
    if (node->v.element.tag == GUMBO_TAG_BR) out += "\n";
    return out;
  }

  SectionBuilder out_;
  std::string text_;
  std::string title_;
  std::string last_anchor_;
};

Document extract_html(std::string_view bytes) {
  std::unique_ptr<GumboOutput, GumboDeleter> output(
      gumbo_parse_with_options(&kGumboDefaultOptions, bytes.data(), bytes.size()));
  HtmlWalker walker;
  walker.walk(output->root);
  return walker.finish();
}

// ---------------------------------------------------------------- PDF

Document extract_pdf(std::string_view bytes, std::string_view source) {
  // poppler prints its parse errors on stderr; the error kb reports names the file instead.
  static const bool quiet = [] {
    poppler::set_debug_error_function([](const std::string&, void*) {}, nullptr);
    return true;
  }();
  (void)quiet;
  std::unique_ptr<poppler::document> pdf(
      poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
  if (!pdf) unreadable(source, "PDF", "poppler cannot open it (damaged, or not a PDF)");
  if (pdf->is_locked()) unreadable(source, "PDF", "it is encrypted");
  SectionBuilder out;
  LineReader reader(out);
  reader.plain_text_ = false;  // PDF lines wrap at the page width: a heading's next line is body text
  for (int p = 0; p < pdf->pages(); ++p) {
    std::unique_ptr<poppler::page> page(pdf->create_page(p));
    if (!page) continue;
    const auto utf8 = page->text(poppler::rectf(), poppler::page::raw_order_layout).to_utf8();
    const std::string text(utf8.begin(), utf8.end());
    reader.lines(text, [p](std::size_t) { return "page " + std::to_string(p + 1); });
  }
  const auto title_utf8 = pdf->get_title().to_utf8();
  return out.finish(std::string(title_utf8.begin(), title_utf8.end()));
}

// ---------------------------------------------------------------- DOCX

struct ZipCloser {
  void operator()(zip_t* z) const noexcept { zip_discard(z); }
};
struct ZipFileCloser {
  void operator()(zip_file_t* f) const noexcept { zip_fclose(f); }
};

std::string zip_entry(zip_t* archive, const char* name, std::string_view source) {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat(archive, name, 0, &st) != 0 || (st.valid & ZIP_STAT_SIZE) == 0)
    unreadable(source, "DOCX", std::string("it has no ") + name);
  // (A few hundred kilobytes of zip can inflate to gigabytes; the text of a real document's XML is far
  // below this, and the DOM pugixml builds of it costs several times its size.)
  if (st.size > max_docx_entry_bytes)
    unreadable(source, "DOCX",
               std::string(name) + " inflates to " + std::to_string(st.size) +
                   " bytes, more than the limit of " + std::to_string(max_docx_entry_bytes >> 20) + " MiB");
  std::unique_ptr<zip_file_t, ZipFileCloser> file(zip_fopen(archive, name, 0));
  if (!file) unreadable(source, "DOCX", std::string("cannot open ") + name);
  std::string out(static_cast<std::size_t>(st.size), '\0');
  const zip_int64_t got = zip_fread(file.get(), out.data(), st.size);
  if (got < 0 || static_cast<zip_uint64_t>(got) != st.size)
    unreadable(source, "DOCX", std::string("cannot read ") + name);
  return out;
}

std::string run_text(const pugi::xml_node& paragraph) {
  std::string out;
  for (const auto& node : paragraph.select_nodes(".//w:t | .//w:tab | .//w:br")) {
    const pugi::xml_node n = node.node();
    const std::string_view name = n.name();
    if (name == "w:t") {
      out += n.text().get();
    } else {
      out += ' ';
    }
  }
  return out;
}

Document extract_docx(std::string_view bytes, std::string_view source) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
  if (src == nullptr) unreadable(source, "DOCX", zip_error_strerror(&error));
  std::unique_ptr<zip_t, ZipCloser> archive(zip_open_from_source(src, ZIP_RDONLY, &error));
  if (!archive) {
    zip_source_free(src);
    const std::string why = zip_error_strerror(&error);
    zip_error_fini(&error);
    unreadable(source, "DOCX", "not a zip archive (" + why + ")");
  }
  const std::string xml = zip_entry(archive.get(), "word/document.xml", source);
  pugi::xml_document doc;
  const auto parsed = doc.load_buffer(xml.data(), xml.size());
  if (!parsed) unreadable(source, "DOCX", std::string("word/document.xml: ") + parsed.description());
  SectionBuilder out;
  std::string title;
  std::size_t index = 0;
  for (const auto& item : doc.select_nodes("/w:document/w:body/*")) {
    const pugi::xml_node node = item.node();
    const std::string_view name = node.name();
    const auto add_paragraph = [&](const pugi::xml_node& p) {
      ++index;
      const std::string location = "paragraph " + std::to_string(index);
      const std::string style = p.child("w:pPr").child("w:pStyle").attribute("w:val").as_string();
      const std::string content = run_text(p);
      const std::string lower = text::lower(style);
      if (lower == "title") {
        if (title.empty()) title = content;
        out.heading(1, content, location);
      } else if (lower.starts_with("heading") && lower.size() > 7 &&
                 std::isdigit(static_cast<unsigned char>(lower[7]))) {
        out.heading(static_cast<std::size_t>(lower[7] - '0') + 1, content, location);
      } else {
        out.paragraph(content, location);
      }
    };
    if (name == "w:p") {
      add_paragraph(node);
    } else if (name == "w:tbl") {
      for (const auto& row : node.select_nodes(".//w:tr")) {
        std::string cells;
        for (const auto& cell : row.node().select_nodes("./w:tc"))
          cells += (cells.empty() ? "" : " | ") + collapse(run_text(cell.node()));
        ++index;
        out.paragraph(cells, "paragraph " + std::to_string(index));
      }
    }
  }
  return out.finish(title);
}

}  // namespace

std::string_view doc_kind_name(DocKind kind) {
  switch (kind) {
    case DocKind::text:
      return "text";
    case DocKind::markdown:
      return "markdown";
    case DocKind::html:
      return "html";
    case DocKind::pdf:
      return "pdf";
    case DocKind::docx:
      return "docx";
  }
  return "text";
}

std::optional<DocKind> kind_for_path(std::string_view path) {
  const std::size_t dot = path.rfind('.');
  const std::size_t slash = path.rfind('/');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) return std::nullopt;
  const std::string ext = text::lower(path.substr(dot + 1));
  if (ext == "txt" || ext == "text") return DocKind::text;
  if (ext == "md" || ext == "markdown") return DocKind::markdown;
  if (ext == "html" || ext == "htm" || ext == "xhtml") return DocKind::html;
  if (ext == "pdf") return DocKind::pdf;
  if (ext == "docx") return DocKind::docx;
  return std::nullopt;
}

namespace {

Document extract_by_kind(std::string_view bytes, DocKind kind, std::string_view source) {
  switch (kind) {
    case DocKind::text:
      return extract_text(bytes);
    case DocKind::markdown:
      return extract_markdown(bytes);
    case DocKind::html:
      return extract_html(bytes);
    case DocKind::pdf:
      return extract_pdf(bytes, source);
    case DocKind::docx:
      return extract_docx(bytes, source);
  }
  return extract_text(bytes);
}

}  // namespace

Document extract(std::string_view bytes, DocKind kind, std::string_view source) {
  Document document = extract_by_kind(bytes, kind, source);
  std::size_t text_bytes = 0;
  for (const auto& section : document.sections)
    for (const auto& paragraph : section.paragraphs) text_bytes += paragraph.size();
  if (text_bytes > max_document_text_bytes)
    throw ClawbotError(Error{ErrorKind::invalid_request,
                             std::string(source) + ": its text is " + std::to_string(text_bytes) +
                                 " bytes, more than the limit of " +
                                 std::to_string(max_document_text_bytes >> 20) +
                                 " MiB for one document (split it into several files)",
                             "file", "document_too_large"});
  return document;
}

}  // namespace clawbot::kb
