// POST /v1/rerank (also /rerank, /v1/reranking, /reranking, as llama-server names it): a query and documents
// in, the documents' relevance scores out, best first, in Jina's and Cohere's shape (llama-server's).
#pragma once

#include <boost/asio/awaitable.hpp>

#include "common/http_server.h"
#include "server/openai_routes.h"

namespace clawbot::server {

boost::asio::awaitable<void> rerank(const ServeContext& ctx, http::Exchange& ex);

}  // namespace clawbot::server
