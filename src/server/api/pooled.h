// Embedding and rank jobs: each input is one sequence of one decode (no slot, no sampling); /v1/embeddings,
// /v1/rerank and Ollama's /api/embed all submit them through here.
#pragma once

#include <optional>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "common/http_server.h"
#include "engine/engine.h"
#include "server/openai_routes.h"
#include "server/scheduler.h"

namespace clawbot::server::api {

// Submits one job per input and waits for all of them: their done events in input order (each with its
// prompt_tokens, and its embedding, or its score when `rank`). nullopt when the queue was full (the caller
// answers a 503 with Retry-After in its protocol's shape). An engine error is thrown as ClawbotError.
boost::asio::awaitable<std::optional<std::vector<GenerationEvent>>> run_pooled(
    const ServeContext& ctx, http::Exchange& ex, std::vector<std::vector<engine::Token>> inputs, bool rank);

}  // namespace clawbot::server::api
