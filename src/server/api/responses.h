// OpenAI's Responses API (POST /v1/responses): `input` (text or items: messages, function calls and their
// outputs), `instructions`, function `tools`, `text.format`, `previous_response_id` continuing a response
// this node keeps (a bounded store, least recently used first out), and `stream` as typed events
// (response.created ... response.completed, each with a sequence_number). Errors in OpenAI's shape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/api/chat.h"
#include "server/api/wire.h"

namespace clawbot::server::api {

// Finished responses by id, for previous_response_id: the conversation so far (without `instructions`,
// which a later response does not inherit). At most `max_entries` and about `max_bytes` of text; the least
// recently used go first. Shared by a node's handlers (locked).
class ResponseStore {
 public:
  explicit ResponseStore(std::size_t max_entries = 1000, std::size_t max_bytes = 64u << 20)
      : max_entries_(max_entries), max_bytes_(max_bytes) {}
  void put(const std::string& id, std::vector<ChatMessage> conversation);
  std::optional<std::vector<ChatMessage>> get(const std::string& id);
  std::size_t size() const;

 private:
  struct Entry {
    std::string id;
    std::vector<ChatMessage> conversation;
    std::size_t bytes = 0;
  };
  mutable std::mutex mutex_;
  std::list<Entry> entries_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> by_id_;
  std::size_t bytes_ = 0;
  std::size_t max_entries_;
  std::size_t max_bytes_;
};

// A Responses request read into the internal chat request, with what its answer echoes.
struct ResponsesRequest {
  ChatRequest chat;
  std::vector<ChatMessage> history;  // the conversation without `instructions` (what the store keeps)
  std::string previous_response_id;
  bool store = true;
  std::vector<std::string> skipped_tools;  // the types of tools this node does not run (web_search, ...)
  nlohmann::json echo;  // request fields the response object repeats (instructions, tools, text, ...)
};

// Throws ClawbotError invalid_request naming the field (an unknown previous_response_id: 404 naming it).
ResponsesRequest parse_responses_request(const nlohmann::json& body, std::uint32_t n_ctx,
                                         ResponseStore& store);

// The response object and its stream's events.
class ResponsesWriter final : public PartEventWriter {
 public:
  ResponsesWriter(std::string id, std::string model, nlohmann::json echo, std::time_t created_at)
      : id_(std::move(id)), model_(std::move(model)), echo_(std::move(echo)), created_at_(created_at) {}
  std::vector<TypedEvent> opening(int prompt_tokens) override;
  std::vector<TypedEvent> closing(const std::vector<ChatChoice>& choices, const ChatUsage& usage) override;
  nlohmann::json whole(const std::vector<ChatChoice>& choices, const ChatUsage& usage) override;
  nlohmann::json error_body(const Error& error) override;
  TypedEvent error_event(const Error& error) override;
  const std::string& id() const noexcept { return id_; }
  // The answer, once finished (what the store keeps after the conversation), with the call ids it showed.
  const std::optional<ChatMessage>& answer() const noexcept { return answer_; }
  // Called with the answer before it is written: a client that continues from it at once finds it kept.
  void on_answer(std::function<void(const ChatMessage&)> keep) { keep_ = std::move(keep); }

 private:
  struct Item {
    std::string id;
    nlohmann::json json;  // as response.output_item.done shows it (function_call: from its start)
  };
  void on_open(Kind kind, const ToolCallDelta* call) override;
  void on_piece(Kind kind, const std::string& text) override;
  void on_close(Kind kind) override;
  void event(const char* type, nlohmann::json fields);
  nlohmann::json where() const;  // the open item's item_id and output_index
  nlohmann::json response(const char* status, nlohmann::json output, const ChatUsage* usage,
                          const ChatChoice* choice) const;
  nlohmann::json output_of(const ChatChoice& choice) const;
  void keep_answer(const ChatMessage& message, const nlohmann::json& output);

  std::string id_;
  std::string model_;
  nlohmann::json echo_;
  std::time_t created_at_;
  long long sequence_ = 0;
  std::vector<Item> items_;  // streamed so far
  std::optional<ChatMessage> answer_;
  std::function<void(const ChatMessage&)> keep_;
};

void add_responses_routes(const ServeContext& ctx, const AddRoute& add);

}  // namespace clawbot::server::api
