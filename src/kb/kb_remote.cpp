#include "kb/kb_remote.h"

#include <iostream>

namespace clawbot::kb {

namespace {

using nlohmann::json;

client::ClientConfig with_endpoint(client::ClientConfig config, const std::string& endpoint,
                                   const std::string& model, const char* flag) {
  if (!endpoint.empty()) {
    const client::ClientConfig probe = client::parse_config(json{{"model_endpoint", endpoint}}.dump(), flag);
    config.model_endpoint = probe.model_endpoint;
  }
  config.model = model;
  return config;
}

[[noreturn]] void remote_failed(const std::string& what, const client::JsonOutcome& out) {
  throw ClawbotError(ErrorKind::bad_gateway, what + ": " + (out.failure ? out.failure->message : "failed"));
}

}  // namespace

Remote::Remote(const RemoteOptions& options) : options_(options) {
  config_ = client::load_client_config(options.search, options.overrides);
  embed_config_ = with_endpoint(config_, options.embed_endpoint, options.embed_model, "--embed-endpoint");
  rerank_config_ =
      with_endpoint(embed_config_, options.rerank_endpoint, options.rerank_model, "--rerank-endpoint");
}

client::ApiClient& Remote::chat_client() {
  if (!chat_) chat_ = std::make_unique<client::ApiClient>(config_);
  return *chat_;
}

client::ApiClient& Remote::embed_client() {
  if (!embed_) embed_ = std::make_unique<client::ApiClient>(embed_config_);
  return *embed_;
}

Embeddings Remote::embed(std::span<const std::string> inputs, const std::string& model) {
  json body = {{"input", json(std::vector<std::string>(inputs.begin(), inputs.end()))}};
  const std::string& wanted = embed_config_.model.empty() ? model : embed_config_.model;
  if (!wanted.empty()) body["model"] = wanted;
  auto& api = embed_client();
  const client::JsonOutcome out = api.request_json("/v1/embeddings", body);
  if (out.failure) remote_failed("embeddings from " + api.endpoint(), out);
  Embeddings result;
  const auto answered = out.body.find("model");
  result.model = answered != out.body.end() && answered->is_string() ? answered->get<std::string>() : wanted;
  const auto data = out.body.find("data");
  if (data == out.body.end() || !data->is_array() || data->size() != inputs.size())
    throw ClawbotError(ErrorKind::bad_gateway, api.endpoint() +
                                                   "/v1/embeddings: the answer has no \"data\" "
                                                   "array of one embedding per input");
  result.vectors.resize(inputs.size());
  for (const auto& item : *data) {
    const auto index = item.find("index");
    const auto embedding = item.find("embedding");
    if (index == item.end() || !index->is_number_unsigned() || index->get<std::size_t>() >= inputs.size() ||
        embedding == item.end() || !embedding->is_array())
      throw ClawbotError(ErrorKind::bad_gateway,
                         api.endpoint() + "/v1/embeddings: an item without an index or a float array");
    auto& v = result.vectors[index->get<std::size_t>()];
    v.reserve(embedding->size());
    for (const auto& x : *embedding) {
      if (!x.is_number())
        throw ClawbotError(ErrorKind::bad_gateway,
                           api.endpoint() + "/v1/embeddings: a non-number in an embedding");
      v.push_back(x.get<float>());
    }
  }
  return result;
}

std::vector<float> Remote::embed_query(std::string_view query, KnowledgeBase& kb) {
  const std::string input(query);
  // The knowledge base's own model by name, so that a gateway routes the query to a node that serves it.
  Embeddings e = embed(std::span(&input, 1), kb.info().embedding_model);
  kb.check_embedding_model(e.model);
  return std::move(e.vectors.at(0));
}

std::size_t Remote::count_tokens(std::string_view text) {
  if (approximate_) return approximate_tokens(text);
  const std::string key(text);
  if (const auto it = token_cache_.find(key); it != token_cache_.end()) return it->second;
  auto& api = embed_client();
  const client::JsonOutcome out =
      api.request_json("/tokenize", json{{"content", key}, {"add_special", true}});
  const auto tokens = out.failure ? out.body.end() : out.body.find("tokens");
  if (out.failure || tokens == out.body.end() || !tokens->is_array()) {
    if (out.failure && out.failure->kind != client::FailureKind::http_status)
      remote_failed("tokenizing at " + api.endpoint(), out);
    std::cerr
        << "clawbot kb: " << api.endpoint()
        << " has no /tokenize (not a clawbot or llama-server node): chunk sizes are estimated, one token "
           "per 3 bytes\n";
    approximate_ = true;
    return approximate_tokens(text);
  }
  if (token_cache_.size() > 100000) token_cache_.clear();
  return token_cache_[key] = tokens->size();
}

void Remote::rerank(std::string_view query, std::vector<SearchHit>& hits, std::size_t top_k) {
  if (hits.empty()) return;
  if (!rerank_) rerank_ = std::make_unique<client::ApiClient>(rerank_config_);
  json documents = json::array();
  for (const auto& h : hits)
    documents.push_back(h.heading_path.empty() ? h.text : h.heading_path + "\n\n" + h.text);
  json body = {{"query", std::string(query)}, {"documents", std::move(documents)}};
  if (!rerank_config_.model.empty()) body["model"] = rerank_config_.model;
  const client::JsonOutcome out = rerank_->request_json("/v1/rerank", body);
  if (out.failure) remote_failed("reranking at " + rerank_->endpoint(), out);
  const auto results = out.body.find("results");
  if (results == out.body.end() || !results->is_array())
    throw ClawbotError(ErrorKind::bad_gateway,
                       rerank_->endpoint() + "/v1/rerank: the answer has no \"results\"");
  std::vector<SearchHit> ordered;
  for (const auto& r : *results) {
    const auto index = r.find("index");
    const auto score = r.find("relevance_score");
    if (index == r.end() || !index->is_number_unsigned() || index->get<std::size_t>() >= hits.size() ||
        score == r.end() || !score->is_number())
      throw ClawbotError(ErrorKind::bad_gateway,
                         rerank_->endpoint() + "/v1/rerank: a result without index or score");
    SearchHit hit = hits[index->get<std::size_t>()];
    hit.rerank = score->get<double>();
    ordered.push_back(std::move(hit));
  }
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const auto& a, const auto& b) { return *a.rerank > *b.rerank; });
  if (ordered.size() > top_k) ordered.resize(top_k);
  hits = std::move(ordered);
}

}  // namespace clawbot::kb
