// Writes to the node's knowledge bases over the API (serve --kb DIR --kb-write): a new knowledge base,
// documents uploaded (multipart files, a URL, or text) and embedded by this node's own model in process, and
// removed; and the documents listed (read-only, always served). See kb_routes.h for the paths.
#pragma once

#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "common/http_server.h"
#include "server/openai_routes.h"

namespace clawbot::server {

// POST /v1/kb {"name"}
boost::asio::awaitable<void> create_kb_route(const ServeContext& ctx, http::Exchange& ex);
// GET /v1/kb/{name}/documents
boost::asio::awaitable<void> list_documents_route(const ServeContext& ctx, http::Exchange& ex,
                                                  const std::string& name);
// POST /v1/kb/{name}/documents
boost::asio::awaitable<void> upload_route(const ServeContext& ctx, http::Exchange& ex,
                                          const std::string& name);
// DELETE /v1/kb/{name}/documents/{id}
boost::asio::awaitable<void> delete_document_route(const ServeContext& ctx, http::Exchange& ex,
                                                   const std::string& name, std::string_view id);

}  // namespace clawbot::server
