#include "server/kb_upload.h"

#include <charconv>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include "audio/multipart.h"
#include "common/store_error.h"
#include "ops/http_fetch.h"
#include "server/api/embeddings.h"
#include "server/api/fields.h"
#include "server/api/wire.h"
#include "server/generation.h"
#include "server/kb_routes.h"

namespace clawbot::server {

namespace {

using nlohmann::json;
namespace asio = boost::asio;
using namespace std::chrono_literals;

void require_writable(const ServeContext& ctx) {
  if (!ctx.kb->write_options().enabled)
    throw ClawbotError(
        {ErrorKind::forbidden,
         "this node takes no writes to its knowledge bases: start it with --kb-write (behind a "
         "gateway, whose admin keys guard them)",
         {},
         "kb_read_only"});
}

json document_json(const kb::DocumentInfo& d) {
  return {{"object", "kb.document"},
          {"id", d.id},
          {"source", d.source},
          {"kind", d.kind},
          {"title", d.title},
          {"bytes", d.bytes},
          {"chunks", d.chunks},
          {"embedded", d.embedded},
          {"content_hash", d.content_hash},
          {"added_at", d.added_at}};
}

// One document of an upload as the request gives it: a file's bytes, a text, or a page to fetch.
struct Upload {
  std::string source;  // the file's name, the text's "source", or the URL
  kb::DocKind kind = kb::DocKind::text;
  std::string bytes;
  std::string url;
  std::string param;  // the request field it came from, for errors
};

std::string shown(std::string_view text) {
  return api::json_text(std::string(text.substr(0, 120)));
}

// A source named by the client is a file's name: no path (it is the key of the document in the knowledge
// base, never a path on this machine), no control characters, UTF-8, a type kb reads.
kb::DocKind checked_source(std::string_view name, const std::string& param) {
  const auto refuse = [&](const std::string& why) {
    throw_invalid(param + " " + shown(name) + ": " + why, param, "invalid_file_name");
  };
  if (name.empty()) refuse("has no file name (the name, with its extension, is the document's source)");
  if (name.size() > 255) refuse("the file name is longer than 255 bytes");
  if (name.find_first_of("/\\") != std::string_view::npos)
    refuse("a file name must not hold a path ('/' or '\\'); give the file's name alone");
  if (name == "." || name == "..") refuse("is not a file name");
  for (const char c : name)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) refuse("the file name holds control characters");
  try {
    (void)json(std::string(name)).dump();
  } catch (const json::exception&) {
    refuse("the file name is not UTF-8");
  }
  const auto kind = kb::kind_for_path(name);
  if (!kind)
    refuse(
        "unsupported type; a knowledge base takes .txt, .text, .md, .markdown, .html, .htm, .xhtml, .pdf "
        "and .docx files");
  return *kind;
}

std::vector<Upload> read_form(http::Exchange& ex, std::string_view content_type) {
  const std::string boundary = audio::form_boundary(content_type);
  const auto parts = audio::parse_form(ex.request().body(), boundary);
  std::vector<Upload> uploads;
  for (const auto& part : parts) {
    if (part.name != "file") continue;  // other fields (purpose, ...) are accepted and ignored
    Upload u;
    u.param = "file";
    u.source = part.filename;
    if (part.filename.empty()) throw_invalid("a 'file' part has no filename", "file", "invalid_file_name");
    u.kind = checked_source(part.filename, "file");
    u.bytes = std::string(part.data);
    uploads.push_back(std::move(u));
  }
  if (uploads.empty())
    throw_invalid("the form has no 'file' part (a document to add, with its filename)", "file",
                  "missing_file");
  return uploads;
}

Upload read_json(http::Exchange& ex) {
  const json body = api::parse_body(ex);
  const std::string url = api::string_field(body, "url", false);
  const std::string text = api::string_field(body, "text", false);
  if (!url.empty() && body.contains("text"))
    throw_invalid("give either 'url' or 'text' (with 'source'), not both", "url");
  Upload u;
  if (!url.empty()) {
    if (!url.starts_with("http://") && !url.starts_with("https://"))
      throw_invalid("'url' must be an http:// or https:// address, got " + shown(url), "url");
    if (url.size() > 2048) throw_invalid("'url' is longer than 2048 bytes", "url");
    u.param = "url";
    u.source = u.url = url;
    const std::string bare = url.substr(0, url.find_first_of("?#"));
    u.kind = kb::kind_for_path(bare).value_or(kb::DocKind::html);
    return u;
  }
  if (!body.contains("text"))
    throw_invalid(
        "the body needs 'url', or 'text' with 'source' (or a multipart/form-data upload with 'file' "
        "parts)",
        "text");
  u.param = "text";
  u.source = api::string_field(body, "source", true);
  u.kind = checked_source(u.source, "source");
  u.bytes = text;
  return u;
}

// The bytes of each upload, fetched when it is a page, then each checked the way ingest will read it, so that
// a request with one bad document stores none of them.
std::vector<kb::SourceDocument> checked_documents(std::vector<Upload>& uploads, std::size_t max_bytes) {
  std::vector<kb::SourceDocument> out;
  for (Upload& u : uploads) {
    if (!u.url.empty()) {
      try {
        u.bytes = ops::http_get_range(u.url, 0, std::nullopt, max_bytes).body;
      } catch (const ClawbotError& e) {
        throw_invalid("'url' " + shown(u.url) + " could not be fetched: " + e.what(), "url", "fetch_failed");
      }
    }
    if (u.bytes.empty()) throw_invalid(u.param + " " + shown(u.source) + " is empty", u.param, "empty_file");
    kb::Document document;
    try {
      document = kb::extract(u.bytes, u.kind, u.source);
    } catch (const ClawbotError& e) {
      throw_invalid(u.param + " " + shown(u.source) + " cannot be read as " +
                        std::string(kb::doc_kind_name(u.kind)) + ": " + e.what(),
                    u.param, "unreadable_file");
    }
    bool has_text = false;
    for (const auto& section : document.sections)
      for (const auto& p : section.paragraphs)
        if (p.find_first_not_of(" \t\r\n") != std::string::npos) has_text = true;
    if (!has_text)
      throw_invalid(u.param + " " + shown(u.source) + " has no text to index", u.param, "empty_file");
    out.push_back({u.source, u.kind, [bytes = std::move(u.bytes)] { return bytes; }});
  }
  return out;
}

// The node's own model embeds the chunks, one batch at a time through the scheduler (as /v1/embeddings does),
// waited for on the writer's thread. A full queue is waited out.
kb::EmbedFunction in_process_embedder(const ServeContext& ctx, http::Exchange& ex) {
  return [&ctx, &ex](std::span<const std::string> texts) {
    std::vector<std::vector<engine::Token>> inputs;
    for (const auto& text : texts) {
      auto tokens = ctx.tokenizer.tokenize(text, true, false);
      if (tokens.size() > ctx.n_ctx) tokens.resize(ctx.n_ctx);
      inputs.push_back(std::move(tokens));
    }
    for (int attempt = 0;; ++attempt) {
      auto pending = asio::co_spawn(ex.executor(), api::embed(ctx, ex, inputs), asio::use_future);
      while (pending.wait_for(100ms) != std::future_status::ready)
        if (ctx.kb->stopping()) throw ClawbotError(ErrorKind::unavailable, "the node is stopping");
      auto result = pending.get();
      if (result) return kb::Embeddings{ctx.model_id, std::move(result->vectors)};
      if (attempt >= 600)
        throw ClawbotError(ErrorKind::unavailable,
                           "the node's queue stayed full for a minute; the upload was not finished");
      std::this_thread::sleep_for(100ms);
    }
  };
}

// Whether this node embeds what is uploaded to `info`'s knowledge base: it serves an embedding model, and
// the knowledge base is empty or was embedded with that model. Otherwise the documents are stored for
// full-text search only, and `why` says so.
bool embeds_uploads(const ServeContext& ctx, const kb::KbInfo& info, std::string& why) {
  const auto& model = ctx.model.info();
  if (!model.is_embedding || model.is_reranker) {
    why = "this node serves '" + ctx.model_id +
          "', not an embedding model: stored for full-text search only (clawbot kb add with an embeddings "
          "endpoint embeds them)";
    return false;
  }
  if (!info.embedding_model.empty() && info.embedding_model != ctx.model_id) {
    why = "the knowledge base was embedded with '" + info.embedding_model + "'; this node serves '" +
          ctx.model_id + "': stored for full-text search only";
    return false;
  }
  if (info.embedding_model.empty() && info.chunks > 0) {
    why =
        "the knowledge base holds documents without embeddings: stored for full-text search only, as they "
        "are";
    return false;
  }
  return true;
}

// The writer's job: each document in a transaction of its own; an unchanged one (same content hash) is
// neither embedded nor written again.
json ingest_uploads(const ServeContext& ctx, http::Exchange& ex, const std::string& name,
                    std::vector<Upload> uploads) {
  kb::KnowledgeBase& base = ctx.kb->writer(name);
  const auto documents = checked_documents(uploads, ctx.kb->write_options().max_upload_bytes);
  std::string why;
  const bool embed = embeds_uploads(ctx, base.info(), why);
  const kb::TokenCounter count_tokens = [&ctx, embed](std::string_view text) {
    return embed ? ctx.tokenizer.tokenize(text, true, false).size() : kb::approximate_tokens(text);
  };
  const kb::EmbedFunction embedder = embed ? in_process_embedder(ctx, ex) : kb::EmbedFunction{};
  json data = json::array();
  std::size_t embedded = 0;
  std::string stored_before;  // the sources of this request already stored, for an error halfway
  for (const auto& document : documents) {
    kb::IngestReport report;
    for (int attempt = 0;; ++attempt) {
      try {
        report = base.ingest(std::span(&document, 1), {}, count_tokens, embedder, {});
        break;
      } catch (const StoreError& e) {
        // Another process (clawbot kb add) held the file past the busy timeout; or it stored the same source
        // between ingest's look-up and its transaction (UNIQUE): once more, which finds it.
        if (e.kind() != StoreErrorKind::busy) {
          if (attempt == 0) continue;
          throw;
        }
        throw ClawbotError({ErrorKind::unavailable,
                            "knowledge base '" + name +
                                "' is being written by another process (clawbot kb add?); try again" +
                                (stored_before.empty() ? "" : " (stored before it: " + stored_before + ")"),
                            {},
                            "kb_busy"});
      }
    }
    if (report.failed > 0) throw_invalid(report.failures.front(), "file", "unreadable_file");
    const auto stored = base.document(document.source);
    if (!stored) throw ClawbotError(ErrorKind::internal, "'" + document.source + "' was not stored");
    json entry = document_json(*stored);
    entry["status"] = report.added > 0 ? "added" : report.updated > 0 ? "updated" : "unchanged";
    entry["chunks_embedded"] = report.chunks_embedded;
    embedded += report.chunks_embedded;
    data.push_back(std::move(entry));
    stored_before += (stored_before.empty() ? "" : ", ") + document.source;
  }
  const kb::KbInfo info = base.info();
  json reply = {{"object", "list"},
                {"kb", name},
                {"data", std::move(data)},
                {"chunks_embedded", embedded},
                {"embedding_model", embed ? json(ctx.model_id) : json(nullptr)}};
  if (!embed) reply["embedding_note"] = why;
  reply["documents"] = info.documents;
  reply["chunks"] = info.chunks;
  return reply;
}

// Runs `job` on the knowledge bases' writer thread and completes on `executor` with its exception, if any;
// false when too many jobs wait already.
template <class Token>
auto async_write(KbService& service, std::function<void()> job, asio::any_io_executor executor,
                 Token&& token) {
  return asio::async_initiate<Token, void(std::exception_ptr, bool)>(
      [&service, executor](auto handler, std::function<void()> queued) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        const bool taken = service.submit_write([shared, executor, queued = std::move(queued)] {
          std::exception_ptr error;
          try {
            queued();
          } catch (...) {
            error = std::current_exception();
          }
          asio::post(executor, [shared, error] { (*shared)(error, true); });
        });
        if (!taken) asio::post(executor, [shared] { (*shared)(nullptr, false); });
      },
      token, std::move(job));
}

// Runs `job` on the writer's thread; a 503 with Retry-After when the writer's queue is full (false).
asio::awaitable<bool> on_writer(const ServeContext& ctx, http::Exchange& ex, std::function<void()> job) {
  const bool taken = co_await async_write(*ctx.kb, std::move(job), ex.executor(), asio::use_awaitable);
  if (!taken) {
    const Error busy{ErrorKind::unavailable,
                     "uploads to this node's knowledge bases are queued " +
                         std::to_string(ctx.kb->write_options().max_queued) +
                         " deep already; try again shortly",
                     {},
                     "queue_full"};
    co_await respond_busy(ex, busy);
  }
  co_return taken;
}

}  // namespace

asio::awaitable<void> create_kb_route(const ServeContext& ctx, http::Exchange& ex) {
  require_writable(ctx);
  const json body = api::parse_body(ex);
  const json created = ctx.kb->create(api::string_field(body, "name", true));
  co_await ex.respond_json(200, created);
}

asio::awaitable<void> list_documents_route(const ServeContext& ctx, http::Exchange& ex,
                                           const std::string& name) {
  const auto documents = ctx.kb->with(name, [](kb::KnowledgeBase& base) { return base.documents(); });
  json data = json::array();
  for (const auto& d : documents) data.push_back(document_json(d));
  const json reply = {{"object", "list"}, {"kb", name}, {"data", std::move(data)}};
  co_await ex.respond_json(200, reply);
}

asio::awaitable<void> upload_route(const ServeContext& ctx, http::Exchange& ex, const std::string& name) {
  require_writable(ctx);
  (void)ctx.kb->info(name);  // 404 for an unknown knowledge base before the body is read
  const std::size_t limit = ctx.kb->write_options().max_upload_bytes;
  if (ex.request().body().size() > limit)  // a chunked body (one with a Content-Length is refused before)
    throw ClawbotError({ErrorKind::payload_too_large,
                        "the upload is " + std::to_string(ex.request().body().size()) +
                            " bytes; this node's limit is " + std::to_string(limit) +
                            " bytes (--kb-max-upload-bytes)",
                        "file", "payload_too_large"});
  if (co_await api::refused_while_draining(ctx, ex)) co_return;
  const auto type_field = ex.request()[boost::beast::http::field::content_type];
  const std::string_view content_type(type_field.data(), type_field.size());
  std::vector<Upload> uploads;
  if (content_type.starts_with("multipart/")) {
    uploads = read_form(ex, content_type);
  } else {
    uploads.push_back(read_json(ex));
  }
  json reply;
  const bool done = co_await on_writer(ctx, ex, [&ctx, &ex, &name, &reply, &uploads] {
    reply = ingest_uploads(ctx, ex, name, std::move(uploads));
  });
  if (done) co_await ex.respond_json(200, reply);
}

asio::awaitable<void> delete_document_route(const ServeContext& ctx, http::Exchange& ex,
                                            const std::string& name, std::string_view id_text) {
  require_writable(ctx);
  std::int64_t id = 0;
  const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
  if (ec != std::errc() || end != id_text.data() + id_text.size() || id <= 0)
    throw_invalid("a document id is a positive integer (GET /v1/kb/" + name + "/documents lists them), got " +
                      shown(id_text),
                  "id");
  (void)ctx.kb->info(name);
  std::optional<kb::DocumentInfo> removed;
  const bool done = co_await on_writer(
      ctx, ex, [&ctx, &name, &removed, id] { removed = ctx.kb->writer(name).remove_document(id); });
  if (!done) co_return;
  if (!removed)
    throw ClawbotError({ErrorKind::not_found,
                        "knowledge base '" + name + "' has no document " + std::to_string(id), "id",
                        "document_not_found"});
  const json reply = {
      {"object", "kb.document.deleted"}, {"id", id}, {"source", removed->source}, {"deleted", true}};
  co_await ex.respond_json(200, reply);
}

}  // namespace clawbot::server
