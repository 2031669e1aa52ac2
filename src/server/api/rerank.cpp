// {model, query, documents: [string | {text}], top_n?, return_documents?} ->
// {model, object: "list", results: [{index, relevance_score, document?: {text}}], usage}. Each document is
// scored with the query as one sequence (the reranker's own pair format, engine::Tokenizer::rerank_pair), all
// of them in as few decodes as fit, on the scheduler's embedding path.
#include "server/api/rerank.h"

#include <algorithm>
#include <numeric>

#include "common/json_check.h"
#include "common/json_read.h"
#include "server/api/fields.h"
#include "server/api/pooled.h"

namespace clawbot::server {

using nlohmann::json;
namespace asio = boost::asio;

namespace {

constexpr std::size_t max_documents = 2048;

// The documents' texts: strings, or objects with a string `text` (Cohere's and Jina's forms).
std::vector<std::string> documents_field(const json& body) {
  auto it = body.find("documents");
  if (it == body.end() || it->is_null()) throw_invalid("'documents' is required", "documents");
  if (!it->is_array()) {
    throw_invalid("'documents' must be an array of strings, got " + json_read::describe(*it), "documents");
  }
  if (it->empty()) throw_invalid("'documents' is empty: give at least one document to rank", "documents");
  if (it->size() > max_documents) {
    throw_invalid("'documents' may hold at most " + std::to_string(max_documents) + " documents, got " +
                      std::to_string(it->size()),
                  "documents");
  }
  std::vector<std::string> texts;
  for (std::size_t i = 0; i < it->size(); ++i) {
    const json& doc = (*it)[i];
    const std::string where = "documents[" + std::to_string(i) + "]";
    if (doc.is_string()) {
      texts.push_back(doc.get<std::string>());
    } else if (auto text = doc.is_object() ? doc.find("text") : doc.end();
               doc.is_object() && text != doc.end() && text->is_string()) {
      texts.push_back(text->get<std::string>());
    } else {
      throw_invalid("'" + where + "' must be a string or an object with a string 'text', got " +
                        json_read::describe(doc),
                    where);
    }
  }
  return texts;
}

void require_reranker(const ServeContext& ctx) {
  const auto& info = ctx.model.info();
  if (info.is_reranker) return;
  throw_invalid("model '" + ctx.model_id + "' cannot rank: it is " +
                    (info.is_embedding ? "an embedding model without a classification head"
                                       : "a text-generation model") +
                    "; serve a reranker (such as bge-reranker-v2-m3) for /v1/rerank",
                "model", "model_not_reranker");
}

}  // namespace

asio::awaitable<void> rerank(const ServeContext& ctx, http::Exchange& ex) {
  if (co_await api::refused_while_draining(ctx, ex)) co_return;
  const json body = api::parse_body(ex);
  api::check_model(ctx, body, ex);
  require_reranker(ctx);
  const std::string query = api::string_field(body, "query", true);
  const auto documents = documents_field(body);
  const auto top_n = json_check::integer_field(body, "top_n", 1, static_cast<long long>(max_documents));
  const bool return_documents = json_check::bool_field(body, "return_documents", false);

  std::vector<std::vector<engine::Token>> pairs;
  pairs.reserve(documents.size());
  for (std::size_t i = 0; i < documents.size(); ++i) {
    pairs.push_back(ctx.tokenizer.rerank_pair(ctx.model, query, documents[i]));
    if (pairs.back().size() > ctx.n_ctx) {
      throw ClawbotError({ErrorKind::context_exceeded,
                          "the query with document " + std::to_string(i) + " is " +
                              std::to_string(pairs.back().size()) + " tokens, but this model ranks at most " +
                              std::to_string(ctx.n_ctx),
                          "documents[" + std::to_string(i) + "]", "context_length_exceeded"});
    }
  }

  const auto events = co_await api::run_pooled(ctx, ex, std::move(pairs), /*rank=*/true);
  if (!events) {
    const Error full = queue_full_error();
    co_await respond_busy(ex, full);
    co_return;
  }
  std::vector<std::size_t> order(events->size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  // best first; equal scores keep the documents' order
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return (*events)[a].score > (*events)[b].score; });
  if (top_n && static_cast<std::size_t>(*top_n) < order.size())
    order.resize(static_cast<std::size_t>(*top_n));
  json results = json::array();
  for (const std::size_t i : order) {
    json item = {{"index", i}, {"relevance_score", (*events)[i].score}};
    if (return_documents) item["document"] = {{"text", documents[i]}};
    results.push_back(std::move(item));
  }
  long long prompt_tokens = 0;
  for (const auto& event : *events) prompt_tokens += event.prompt_tokens;
  const json reply = {{"model", ctx.model_id},
                      {"object", "list"},
                      {"results", std::move(results)},
                      {"usage", {{"prompt_tokens", prompt_tokens}, {"total_tokens", prompt_tokens}}}};
  ex.log_fields()["prompt_tokens"] = prompt_tokens;
  co_await ex.respond_json(200, reply);
}

}  // namespace clawbot::server
