#include "server/api/embeddings.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "server/generation.h"

namespace clawbot::server::api {

namespace asio = boost::asio;

void require_embedding_model(const ServeContext& ctx, std::string_view route) {
  if (ctx.model.info().is_embedding) return;
  throw_invalid("model '" + ctx.model_id +
                    "' cannot compute embeddings: it is a text-generation model; serve an embedding model "
                    "(such as bge-small-en-v1.5) for " +
                    std::string(route),
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
  Generation gen;
  gen.events = std::make_shared<EventChannel>(ex.executor(), inputs.size() + 1);
  std::vector<GenerationJob> jobs;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    GenerationJob job;
    job.prompt = std::move(inputs[i]);
    job.embedding = true;
    job.choice = static_cast<int>(i);
    job.events = gen.events;
    job.cancelled = gen.cancelled;
    jobs.push_back(std::move(job));
  }
  const std::size_t count = jobs.size();
  if (!ctx.scheduler.submit(std::move(jobs))) co_return std::nullopt;
  Embeddings result;
  result.vectors.resize(count);
  for (std::size_t received = 0; received < count;) {
    auto [ec, event] = co_await gen.events->async_receive(asio::as_tuple(asio::use_awaitable));
    if (ec) throw ClawbotError({ErrorKind::unavailable, "the server is shutting down", {}, {}});
    if (event.error) throw ClawbotError(*event.error);
    if (!event.done) continue;
    ++received;
    result.prompt_tokens += event.prompt_tokens;
    result.vectors[static_cast<std::size_t>(event.choice)] = std::move(event.embedding);
  }
  ex.log_fields()["prompt_tokens"] = result.prompt_tokens;
  co_return result;
}

}  // namespace clawbot::server::api
