// The embedding path every protocol shares (/v1/embeddings, Ollama's /api/embed and /api/embeddings): the
// model check, the inputs as tokens, and one job per input through the scheduler, answered together.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "common/http_server.h"
#include "engine/engine.h"
#include "server/openai_routes.h"

namespace clawbot::server::api {

// A 400 model_not_embedding for a text-generation model; `route` is named in its message.
void require_embedding_model(const ServeContext& ctx, std::string_view route);

// `text` as an embedding input's tokens (special tokens added, not parsed); empty text is a 400 naming
// `where`.
std::vector<engine::Token> embedding_tokens(const ServeContext& ctx, const std::string& text,
                                            const std::string& where);

// A 400 context_length_exceeded for an input longer than the context (naming "input" or "input[i]").
void check_embedding_lengths(const ServeContext& ctx, const std::vector<std::vector<engine::Token>>& inputs);

struct Embeddings {
  std::vector<std::vector<float>> vectors;  // one per input, in the inputs' order
  long long prompt_tokens = 0;
};

// Each input embedded (one job each, submitted together); none when the scheduler's queue is full (the
// caller answers a 503 with Retry-After in its own error shape). Throws ClawbotError for a failed job.
boost::asio::awaitable<std::optional<Embeddings>> embed(const ServeContext& ctx, http::Exchange& ex,
                                                        std::vector<std::vector<engine::Token>> inputs);

}  // namespace clawbot::server::api
