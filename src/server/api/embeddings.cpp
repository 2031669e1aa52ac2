#include "server/api/embeddings.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "server/api/pooled.h"
#include "server/generation.h"

namespace clawbot::server::api {

namespace asio = boost::asio;

void require_embedding_model(const ServeContext& ctx, std::string_view route) {
  const auto& info = ctx.model.info();
  if (info.is_embedding && !info.is_reranker) return;
  throw_invalid("model '" + ctx.model_id + "' cannot compute embeddings: it is a " +
                    (info.is_reranker ? "reranker (use /v1/rerank)" : "text-generation model") +
                    "; serve an embedding model (such as bge-small-en-v1.5) for " + std::string(route),
                "model", "model_not_embedding");
}

std::vector<engine::Token> embedding_tokens(const ServeContext& ctx, const std::string& text,
                                            const std::string& where) {
  auto tokens = ctx.tokenizer.tokenize(text, true, false);
  if (tokens.empty()) throw_invalid("'" + where + "' is empty", where);
  return tokens;
}

void check_embedding_lengths(const ServeContext& ctx, const std::vector<std::vector<engine::Token>>& inputs) {
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].size() > ctx.n_ctx) {
      throw ClawbotError({ErrorKind::context_exceeded,
                          "input " + std::to_string(i) + " is " + std::to_string(inputs[i].size()) +
                              " tokens, but this model embeds at most " + std::to_string(ctx.n_ctx),
                          inputs.size() == 1 ? "input" : "input[" + std::to_string(i) + "]",
                          "context_length_exceeded"});
    }
  }
}

asio::awaitable<std::optional<Embeddings>> embed(const ServeContext& ctx, http::Exchange& ex,
                                                 std::vector<std::vector<engine::Token>> inputs) {
  auto events = co_await run_pooled(ctx, ex, std::move(inputs), /*rank=*/false);
  if (!events) co_return std::nullopt;
  Embeddings result;
  result.vectors.reserve(events->size());
  for (auto& event : *events) {
    result.prompt_tokens += event.prompt_tokens;
    result.vectors.push_back(std::move(event.embedding));
  }
  ex.log_fields()["prompt_tokens"] = result.prompt_tokens;
  co_return result;
}

}  // namespace clawbot::server::api
