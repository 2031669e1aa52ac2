// The models a `kb` command talks to, through the assistant's API client (clawbot.json: endpoint, key,
// timeout, retry policy): embeddings (/v1/embeddings), the embedding model's tokenizer (/tokenize), reranking
// (/v1/rerank) and the chat model. Failures become ClawbotError with the endpoint's message.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "client/assistant.h"
#include "kb/kb.h"

namespace clawbot::kb {

struct RemoteOptions {
  client::ConfigSearch search;
  client::ClientOverrides overrides;  // the chat model's endpoint and model (and the default for the others)
  std::string embed_endpoint;         // default: the chat endpoint
  std::string embed_model;            // default: what the endpoint serves
  std::string rerank_endpoint;        // default: the embeddings endpoint
  std::string rerank_model;
};

class Remote {
 public:
  // Throws ConfigError.
  explicit Remote(const RemoteOptions& options);

  client::ClientConfig& config() noexcept { return config_; }
  client::ApiClient& chat_client();

  // `model`: asked for when no --embed-model was given (empty: the endpoint's own).
  Embeddings embed(std::span<const std::string> inputs, const std::string& model = {});
  std::vector<float> embed_query(std::string_view query, KnowledgeBase& kb);
  // Token counts from the embeddings endpoint's /tokenize; when it has none (not a clawbot or llama-server
  // node), approximate_tokens from then on, said once on stderr.
  std::size_t count_tokens(std::string_view text);
  bool tokenizer_is_remote() const noexcept { return !approximate_; }
  // Reorders `hits` by the reranking model's score, best first, keeping `top_k`.
  void rerank(std::string_view query, std::vector<SearchHit>& hits, std::size_t top_k);

 private:
  client::ApiClient& embed_client();
  RemoteOptions options_;
  client::ClientConfig config_;
  client::ClientConfig embed_config_;
  client::ClientConfig rerank_config_;
  std::unique_ptr<client::ApiClient> chat_, embed_, rerank_;
  std::unordered_map<std::string, std::size_t> token_cache_;
  bool approximate_ = false;
};

}  // namespace clawbot::kb
