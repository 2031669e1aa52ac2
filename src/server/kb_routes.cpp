#include "server/kb_routes.h"

#include <algorithm>

#include "common/json_check.h"
#include "common/json_read.h"
#include "server/api/embeddings.h"
#include "server/api/fields.h"

namespace clawbot::server {

namespace {

using nlohmann::json;
namespace asio = boost::asio;
using json_read::describe;

constexpr std::size_t kb_chat_passages = 5;

// The mode a request may have: hybrid and vector need this node to embed the query with the knowledge
// base's own model.
struct Retrieval {
  kb::SearchMode mode = kb::SearchMode::bm25;
  bool embed = false;
};

Retrieval retrieval_for(const ServeContext& ctx, const std::string& name,
                        const std::optional<std::string>& asked) {
  const std::string model =
      ctx.kb->with(name, [](kb::KnowledgeBase& base) { return base.info().embedding_model; });
  const bool can_embed = ctx.model.info().is_embedding && !model.empty() && model == ctx.model_id;
  if (!asked) return {can_embed ? kb::SearchMode::hybrid : kb::SearchMode::bm25, can_embed};
  const auto mode = kb::search_mode_from(*asked);
  if (!mode)
    throw_invalid("'mode' must be \"bm25\", \"vector\" or \"hybrid\", got \"" + *asked + "\"", "mode");
  if (*mode != kb::SearchMode::bm25 && model.empty())
    throw_invalid("knowledge base '" + name + "' holds no embeddings (its documents were added without an " +
                      "embeddings endpoint): use \"mode\": \"bm25\", or add them again with embeddings",
                  "mode");
  if (*mode != kb::SearchMode::bm25 && !can_embed) {
    throw_invalid("knowledge base '" + name + "' was embedded with model '" + model +
                      "'; this node serves '" + ctx.model_id +
                      "', so it searches by full text only (\"mode\": \"bm25\"); vector search needs a node "
                      "serving that embedding model",
                  "mode");
  }
  return {*mode, *mode != kb::SearchMode::bm25};
}

asio::awaitable<std::vector<float>> query_vector(const ServeContext& ctx, http::Exchange& ex,
                                                 const std::string& query) {
  std::vector<std::vector<engine::Token>> inputs{api::embedding_tokens(ctx, query, "query")};
  api::check_embedding_lengths(ctx, inputs);
  auto result = co_await api::embed(ctx, ex, std::move(inputs));
  if (!result) throw ClawbotError(ErrorKind::unavailable, "the node's queue is full; try again shortly");
  co_return std::move(result->vectors.at(0));
}

asio::awaitable<std::vector<kb::SearchHit>> search_kb(const ServeContext& ctx, http::Exchange& ex,
                                                      const std::string& name, const std::string& query,
                                                      const Retrieval& retrieval, std::size_t top_k) {
  std::vector<float> vector;
  if (retrieval.embed) vector = co_await query_vector(ctx, ex, query);
  const kb::SearchOptions options{retrieval.mode, top_k, 50};
  co_return ctx.kb->with(name, [&](kb::KnowledgeBase& base) {
    return base.search(query, retrieval.embed ? &vector : nullptr, options);
  });
}

asio::awaitable<void> search_route(const ServeContext& ctx, http::Exchange& ex, const std::string& name) {
  const json body = api::parse_body(ex);
  const std::string query = api::string_field(body, "query", true);
  if (query.empty()) throw_invalid("'query' must not be empty", "query");
  if (query.size() > 16384)
    throw_invalid("'query' is " + std::to_string(query.size()) + " bytes; a search takes at most 16384",
                  "query");
  const auto top_k = json_check::integer_field(body, "top_k", 1, 50).value_or(5);
  std::optional<std::string> mode;
  if (auto it = body.find("mode"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) throw_invalid("'mode' must be a string, got " + describe(*it), "mode");
    mode = it->get<std::string>();
  }
  const Retrieval retrieval = retrieval_for(ctx, name, mode);
  const auto hits = co_await search_kb(ctx, ex, name, query, retrieval, static_cast<std::size_t>(top_k));
  // The query's coverage (what the refusal threshold reads) on request only: a count per query word.
  json coverage = nullptr;
  if (json_check::bool_field(body, "coverage", false))
    coverage = ctx.kb->with(name, [&](kb::KnowledgeBase& base) { return base.coverage(query, hits); });
  json data = json::array();
  for (std::size_t i = 0; i < hits.size(); ++i) data.push_back(kb::hit_json(hits[i], i + 1));
  const json reply = {{"object", "list"},     {"kb", name},
                      {"query", query},       {"mode", kb::search_mode_name(retrieval.mode)},
                      {"coverage", coverage}, {"data", std::move(data)}};
  co_await ex.respond_json(200, reply);
}

// Keeps the best passages that fit in the context beside the conversation and the answer (counted with this
// node's tokenizer; 64 tokens for the chat template's own), the last kept one cut when even the first alone
// does not fit.
void fit_passages(const ServeContext& ctx, const std::vector<api::ChatMessage>& messages, int answer_tokens,
                  std::vector<kb::SearchHit>& passages) {
  const auto count = [&](const std::string& text) {
    return static_cast<long long>(ctx.tokenizer.tokenize(text, false, false).size());
  };
  long long room =
      static_cast<long long>(ctx.n_ctx) - (answer_tokens > 0 ? answer_tokens : ctx.n_ctx / 4) - 64;
  for (const auto& m : messages) room -= count(m.content) + 8;
  while (!passages.empty() && count(kb::grounded_system_prompt(passages)) > room) {
    if (passages.size() > 1) {
      passages.pop_back();
      continue;
    }
    // One passage too long: cut its text in proportion, at a character boundary, until it fits.
    std::string& text = passages.front().text;
    const long long have = count(kb::grounded_system_prompt(passages));
    auto keep =
        static_cast<std::size_t>(static_cast<double>(text.size()) * 0.9 *
                                 static_cast<double>(std::max(room, 0LL)) / static_cast<double>(have));
    while (keep > 0 && keep < text.size() && (static_cast<unsigned char>(text[keep]) & 0xc0) == 0x80) --keep;
    if (keep == 0) {
      passages.clear();
      break;
    }
    text.resize(std::min(keep, text.size() - 1));
  }
}

}  // namespace

KbService::KbService(const std::filesystem::path& dir) : dir_(dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw ClawbotError(ErrorKind::invalid_request, "--kb " + dir.string() + ": not a directory");
  for (const auto& [name, path] : kb::kb_files(dir))
    kbs_.emplace(name, std::make_unique<Entry>(kb::KnowledgeBase::open(path)));
}

std::vector<std::string> KbService::names() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : kbs_) out.push_back(name);
  return out;
}

json KbService::list_json() {
  json data = json::array();
  for (const auto& [name, entry] : kbs_) {
    std::lock_guard lock(entry->mutex);
    const kb::KbInfo i = entry->kb.info();
    data.push_back({{"object", "knowledge_base"},
                    {"id", name},
                    {"model", "kb:" + name},
                    {"documents", i.documents},
                    {"chunks", i.chunks},
                    {"embedded_chunks", i.embedded_chunks},
                    {"embedding_model", i.embedding_model},
                    {"dimension", i.dimension}});
  }
  return {{"object", "list"}, {"data", std::move(data)}};
}

void KbService::unknown(const std::string& name) const {
  std::string all;
  for (const auto& [n, entry] : kbs_) all += (all.empty() ? "" : ", ") + n;
  throw ClawbotError({ErrorKind::not_found,
                      "no knowledge base '" + name + "' on this node" +
                          (all.empty() ? std::string(" (it has none)") : " (it has: " + all + ")"),
                      "kb", "kb_not_found"});
}

std::optional<std::string> requested_kb(const ServeContext& ctx, const json& body) {
  std::optional<std::string> name;
  if (auto it = body.find("kb"); it != body.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>().empty())
      throw_invalid("'kb' must be the name of a knowledge base, got " + describe(*it), "kb");
    name = it->get<std::string>();
  }
  if (auto it = body.find("model"); !name && it != body.end() && it->is_string()) {
    const auto& model = it->get_ref<const std::string&>();
    if (model.starts_with("kb:") && model.size() > 3) name = model.substr(3);
  }
  if (name && ctx.kb == nullptr)
    throw_invalid("this node serves no knowledge bases (start it with --kb DIR)", "kb", "kb_not_found");
  return name;
}

asio::awaitable<KbGrounding> ground_chat(const ServeContext& ctx, http::Exchange& ex, const std::string& name,
                                         std::vector<api::ChatMessage>& messages, int answer_tokens) {
  KbGrounding g;
  g.name = name;
  std::vector<std::string> earlier;
  std::string question;
  for (const auto& m : messages) {
    if (m.role != "user") continue;
    if (!question.empty()) earlier.push_back(question);
    question = m.content;
  }
  if (question.empty()) throw_invalid("a knowledge base answer needs a user message to answer", "messages");
  g.query = kb::standalone_question(earlier, question);
  const Retrieval retrieval = retrieval_for(ctx, name, std::nullopt);
  g.mode = kb::search_mode_name(retrieval.mode);
  auto hits = co_await search_kb(ctx, ex, name, g.query, retrieval, kb_chat_passages);
  ctx.kb->with(name, [&](kb::KnowledgeBase& base) {
    g.coverage = base.coverage(g.query, hits);
    g.threshold = base.info().refusal_threshold.value_or(kb::default_refusal_threshold);
    return 0;
  });
  g.refused = hits.empty() || g.coverage < g.threshold;
  g.passages = std::move(hits);
  if (g.refused) co_return g;
  fit_passages(ctx, messages, answer_tokens, g.passages);
  // The passages first; a system prompt the client sent comes after them.
  std::string system = kb::grounded_system_prompt(g.passages);
  if (!messages.empty() && messages.front().role == "system") {
    messages.front().content = system + "\n" + messages.front().content;
  } else {
    api::ChatMessage m;
    m.role = "system";
    m.content = std::move(system);
    messages.insert(messages.begin(), std::move(m));
  }
  co_return g;
}

json grounding_fields(const KbGrounding& g) {
  json citations = g.refused ? json::array() : kb::citations_json(g.passages, false);
  json nearest = json::array();
  if (g.refused)
    for (const auto& h : g.passages) nearest.push_back(h.heading_path.empty() ? h.title : h.heading_path);
  return {{"citations", std::move(citations)},
          {"kb",
           {{"name", g.name},
            {"mode", g.mode},
            {"query", g.query},
            {"coverage", g.coverage},
            {"threshold", g.threshold},
            {"refused", g.refused},
            {"nearest_topics", std::move(nearest)}}}};
}

void add_kb_routes(const ServeContext& ctx,
                   const std::function<void(http::Verb, std::string, http::Handler)>& add) {
  if (ctx.kb == nullptr) return;
  const ServeContext* c = &ctx;
  add(http::Verb::get, "/v1/kb", [c](http::Exchange& ex) -> asio::awaitable<void> {
    const json list = c->kb->list_json();
    co_await ex.respond_json(200, list);
  });
  // One route per knowledge base (the router matches whole paths); an unknown name is the router's 404.
  for (const auto& name : ctx.kb->names()) {
    add(http::Verb::post, "/v1/kb/" + name + "/search",
        [c, name](http::Exchange& ex) { return search_route(*c, ex, name); });
  }
}

}  // namespace clawbot::server
