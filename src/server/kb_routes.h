// `serve --kb DIR`: the knowledge bases of a directory on the node, for every front-end.
//   GET  /v1/kb                 the knowledge bases: name, documents, chunks, embedding model
//   POST /v1/kb/{name}/search   {"query", "top_k"?, "mode"?} -> the best passages with scores and sources
//   chat completions with "kb": "NAME" (or model "kb:NAME"): retrieval-augmented, the answer carrying
//   "citations" (see README, "Knowledge base answers over the API")
// The query is embedded by this node when its model is the knowledge base's embedding model (hybrid search);
// otherwise retrieval is full text (BM25) alone.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/http_server.h"
#include "kb/kb.h"
#include "server/api/chat.h"
#include "server/openai_routes.h"

namespace clawbot::server {

class KbService {
 public:
  // Opens every *.kb in `dir`; throws ClawbotError naming a file that is not a usable knowledge base.
  explicit KbService(const std::filesystem::path& dir);
  const std::filesystem::path& dir() const noexcept { return dir_; }
  std::vector<std::string> names() const;
  nlohmann::json list_json();

  // Runs `fn` on the named knowledge base under its lock; a 404 naming the ones there are when unknown.
  template <class Fn>
  auto with(const std::string& name, Fn&& fn) {
    auto it = kbs_.find(name);
    if (it == kbs_.end()) unknown(name);
    std::lock_guard lock(it->second->mutex);
    return fn(it->second->kb);
  }

 private:
  [[noreturn]] void unknown(const std::string& name) const;
  struct Entry {
    explicit Entry(kb::KnowledgeBase k) : kb(std::move(k)) {}
    kb::KnowledgeBase kb;
    std::mutex mutex;
  };
  std::filesystem::path dir_;
  std::map<std::string, std::unique_ptr<Entry>> kbs_;
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

// GET /v1/kb and POST /v1/kb/{name}/search for each knowledge base.
void add_kb_routes(const ServeContext& ctx,
                   const std::function<void(http::Verb, std::string, http::Handler)>& add);

}  // namespace clawbot::server
