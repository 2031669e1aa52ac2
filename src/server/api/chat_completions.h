// POST /v1/chat/completions: OpenAI's chat wire format to a ChatRequest, and run_chat's events back as OpenAI
// JSON or SSE chunks.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "common/http_server.h"
#include "server/openai_routes.h"

namespace clawbot::server::api {

boost::asio::awaitable<void> chat_completions(const ServeContext& ctx, http::Exchange& ex);

}  // namespace clawbot::server::api
