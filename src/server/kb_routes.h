// `serve --kb DIR`: the knowledge bases of a directory on the node, for every front-end.
//   GET  /v1/kb                 the knowledge bases: name, documents, chunks, embedding model
//   POST /v1/kb/{name}/search   {"query", "top_k"?, "mode"?} -> the best passages with scores and sources
//   chat completions with "kb": "NAME" (or model "kb:NAME"): retrieval-augmented, the answer carrying
//   "citations" (see README, "Knowledge base answers over the API")
//   GET  /v1/kb/{name}/documents            the documents: id, source, kind, chunks, content hash
// With --kb-write (server/kb_upload.cpp):
//   POST /v1/kb                             {"name"}: a new, empty knowledge base
//   POST /v1/kb/{name}/documents            multipart "file" parts, or {"url"} or {"text", "source"}
//   DELETE /v1/kb/{name}/documents/{id}
// The query is embedded by this node when its model is the knowledge base's embedding model (hybrid search);
// otherwise retrieval is full text (BM25) alone. Uploads are embedded the same way, by this node's model in
// process, or stored for full-text search only.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/http_server.h"
#include "kb/kb.h"
#include "server/api/chat.h"
#include "server/openai_routes.h"

namespace clawbot::server {

struct KbWriteOptions {
  bool enabled = false;                      // --kb-write: create, upload, delete through the API
  std::size_t max_upload_bytes = 32u << 20;  // --kb-max-upload-bytes: one upload request's body
  std::size_t max_queued = 32;               // uploads waiting for the writer before 503
};

// A knowledge base's name on the node (and its file NAME.kb in the directory): 1 to 64 letters, digits,
// '-', '_' and '.', starting with a letter or digit, without "..".
bool valid_kb_name(std::string_view name);

class KbService {
 public:
  // Opens every *.kb in `dir`; throws ClawbotError naming a file that is not a usable knowledge base.
  explicit KbService(const std::filesystem::path& dir, KbWriteOptions write = {});
  ~KbService();
  KbService(const KbService&) = delete;
  KbService& operator=(const KbService&) = delete;

  const std::filesystem::path& dir() const noexcept { return dir_; }
  const KbWriteOptions& write_options() const noexcept { return write_; }
  // The knowledge bases served, by name. One that appeared in the directory meanwhile (clawbot kb create,
  // another node's POST /v1/kb) is served from the first request that looks.
  std::vector<std::string> names();
  nlohmann::json list_json();
  // The named knowledge base's info, kept until its file changes (a commit by this node's writer or by
  // another process: SQLite's data_version) rather than counted again per request; a 404 when unknown.
  kb::KbInfo info(const std::string& name);
  // A new, empty knowledge base NAME.kb in the directory, served at once: its list entry. A 400 for a bad or
  // taken name.
  nlohmann::json create(const std::string& name);

  // Runs `fn` on the named knowledge base's reading connection under its lock; a 404 naming the ones there
  // are when unknown.
  template <class Fn>
  auto with(const std::string& name, Fn&& fn) {
    Entry& entry = find(name);
    std::lock_guard lock(entry.mutex);
    return fn(entry.kb);
  }

  // Writes go through one thread, one job at a time (SQLite has one writer), on a connection of their own
  // beside the reading one (WAL): searches go on while a document is extracted, embedded and stored. False
  // when max_queued jobs wait already.
  bool submit_write(std::function<void()> job);
  // The named knowledge base's writing connection: on the writer's thread only.
  kb::KnowledgeBase& writer(const std::string& name);
  // Set when the node stops: a job waiting (for embeddings) gives up.
  bool stopping() const noexcept { return stopping_; }
  // Stops the writer's thread (the job in progress finishes or gives up); before the I/O context goes.
  void stop();

 private:
  struct Entry {
    explicit Entry(kb::KnowledgeBase k) : kb(std::move(k)) {}
    kb::KnowledgeBase kb;  // reading
    std::mutex mutex;
    std::optional<kb::KbInfo> info;  // cached, with the data_version it was read at
    std::int64_t info_version = -1;
    std::optional<kb::KnowledgeBase> writer;  // opened on the writer's thread at its first job
  };
  Entry& find(const std::string& name);
  [[noreturn]] void unknown(const std::string& name);
  // Opens the *.kb files of the directory not served yet; one that cannot be opened (being created) is
  // tried again at the next look.
  void refresh();
  void run_writer(const std::stop_token& stop);

  std::filesystem::path dir_;
  KbWriteOptions write_;
  std::shared_mutex map_mutex_;  // kbs_ grows (create, refresh); entries are never removed
  std::map<std::string, std::unique_ptr<Entry>> kbs_;
  std::mutex jobs_mutex_;
  std::condition_variable_any jobs_ready_;
  std::deque<std::function<void()>> jobs_;
  std::atomic<bool> stopping_ = false;
  std::jthread writer_thread_;  // last: stopped and joined first
};

// What retrieval gave a chat request.
struct KbGrounding {
  std::string name;
  std::string mode;
  std::string query;  // what was searched: the last user message, made to stand alone
  double coverage = 0;
  double threshold = 0;
  bool refused = false;
  std::vector<kb::SearchHit> passages;
};

// The knowledge base a chat request asks for: "kb": "NAME", or model "kb:NAME"; nullopt when none. A 400
// when the node has no --kb.
std::optional<std::string> requested_kb(const ServeContext& ctx, const nlohmann::json& body);

// Retrieves for the conversation's last user message and, unless refused, puts the numbered passages that fit
// in the context (beside the messages and `answer_tokens`, 0: a quarter of the context) in the system prompt
// of `messages`.
boost::asio::awaitable<KbGrounding> ground_chat(const ServeContext& ctx, http::Exchange& ex,
                                                const std::string& name,
                                                std::vector<api::ChatMessage>& messages, int answer_tokens);

// The fields a grounded answer carries: "citations" (one per numbered passage: index, source, title,
// heading_path, location, chunk_id, score) and "kb" (name, mode, query, coverage, threshold, refused).
nlohmann::json grounding_fields(const KbGrounding& grounding);

// GET /v1/kb (and POST with --kb-write) as routes; the paths under /v1/kb/ (dynamic: a knowledge base may be
// created while the node runs) through the handler returned, which the router takes as its fallback (it
// answers 404 for every other path).
http::Handler add_kb_routes(const ServeContext& ctx,
                            const std::function<void(http::Verb, std::string, http::Handler)>& add);
// The access log's and the metrics' route for a path under /v1/kb/ ("/v1/kb/{name}/search", ...), nullopt
// for any other path.
std::optional<std::string> kb_route_label(std::string_view path);

}  // namespace clawbot::server
