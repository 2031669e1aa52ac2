#include "server/kb_routes.h"

#include <algorithm>
#include <cctype>

#include <spdlog/spdlog.h>

#include "common/json_check.h"
#include "common/json_read.h"
#include "server/api/embeddings.h"
#include "server/api/fields.h"
#include "server/api/wire.h"
#include "server/kb_upload.h"

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
  const std::string model = ctx.kb->info(name).embedding_model;
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

json kb_json(const std::string& name, const kb::KbInfo& i) {
  return {{"object", "knowledge_base"},
          {"id", name},
          {"model", "kb:" + name},
          {"documents", i.documents},
          {"chunks", i.chunks},
          {"embedded_chunks", i.embedded_chunks},
          {"embedding_model", i.embedding_model},
          {"dimension", i.dimension}};
}

// A path under /v1/kb/: the knowledge base's name and what follows it ("search", "documents",
// "documents/12").
struct KbPath {
  std::string name;
  std::string_view rest;
};

std::optional<KbPath> split_kb_path(std::string_view path) {
  constexpr std::string_view prefix = "/v1/kb/";
  if (!path.starts_with(prefix)) return std::nullopt;
  path.remove_prefix(prefix.size());
  const auto slash = path.find('/');
  if (slash == std::string_view::npos) return KbPath{std::string(path), {}};
  return KbPath{std::string(path.substr(0, slash)), path.substr(slash + 1)};
}

// What a path under /v1/kb/ is: its route label and the methods it takes (empty: no such route).
struct KbRoute {
  std::string label;
  std::string_view methods;
};

KbRoute kb_route(std::string_view rest) {
  if (rest == "search") return {"/v1/kb/{name}/search", "POST"};
  if (rest == "documents") return {"/v1/kb/{name}/documents", "GET, HEAD, POST"};
  if (rest.starts_with("documents/") && rest.size() > 10 && rest.find('/', 10) == std::string_view::npos)
    return {"/v1/kb/{name}/documents/{id}", "DELETE"};
  return {};
}

asio::awaitable<void> kb_path_route(const ServeContext& ctx, http::Exchange& ex) {
  const std::string_view path = ex.path();
  const auto split = split_kb_path(path);
  const KbRoute route = split ? kb_route(split->rest) : KbRoute{};
  if (route.methods.empty()) {
    const Error error{
        ErrorKind::not_found,
        "no route " + std::string(path.substr(0, 200)) + " (see GET /v1/models for what this server offers)",
        {},
        {}};
    co_await ex.respond_error(error);
    co_return;
  }
  if (!valid_kb_name(split->name))
    throw_invalid("'" + split->name.substr(0, 80) +
                      "' is not a knowledge base name (letters, digits, '-', '_' and '.', no \"..\")",
                  "kb", "invalid_kb_name");
  const auto method = ex.request().method();
  using V = http::Verb;
  const std::string& name = split->name;
  if (split->rest == "search" && method == V::post) {
    co_await search_route(ctx, ex, name);
  } else if (split->rest == "documents" && (method == V::get || method == V::head)) {
    co_await list_documents_route(ctx, ex, name);
  } else if (split->rest == "documents" && method == V::post) {
    co_await upload_route(ctx, ex, name);
  } else if (split->rest != "documents" && split->rest != "search" && method == V::delete_) {
    co_await delete_document_route(ctx, ex, name, split->rest.substr(10));
  } else {
    std::vector<std::pair<std::string, std::string>> headers{{"Allow", std::string(route.methods)}};
    const Error error{ErrorKind::method_not_allowed,
                      "method " + std::string(ex.request().method_string()) + " is not allowed on " +
                          std::string(path) + "; use " + std::string(route.methods),
                      {},
                      {}};
    co_await ex.respond_error(error, std::move(headers));
  }
}

}  // namespace

bool valid_kb_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || !std::isalnum(static_cast<unsigned char>(name.front())))
    return false;
  if (name.find("..") != std::string_view::npos) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

KbService::KbService(const std::filesystem::path& dir, KbWriteOptions write) : dir_(dir), write_(write) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw ClawbotError(ErrorKind::invalid_request, "--kb " + dir.string() + ": not a directory");
  for (const auto& [name, path] : kb::kb_files(dir))
    kbs_.emplace(name, std::make_unique<Entry>(kb::KnowledgeBase::open(path)));
  if (write_.enabled)
    writer_thread_ = std::jthread([this](const std::stop_token& stop) { run_writer(stop); });
}

KbService::~KbService() {
  stop();
}

std::vector<std::string> KbService::names() {
  refresh();
  std::shared_lock lock(map_mutex_);
  std::vector<std::string> out;
  for (const auto& [name, entry] : kbs_) out.push_back(name);
  return out;
}

void KbService::refresh() {
  std::vector<std::pair<std::string, std::filesystem::path>> files;
  try {
    files = kb::kb_files(dir_);
  } catch (const ClawbotError&) {
    return;  // the directory went away: keep serving what is open
  }
  {
    std::shared_lock lock(map_mutex_);
    std::erase_if(files, [this](const auto& file) { return kbs_.contains(file.first); });
  }
  for (const auto& [name, path] : files) {
    std::unique_ptr<Entry> entry;
    try {
      entry = std::make_unique<Entry>(kb::KnowledgeBase::open(path));
    } catch (const ClawbotError& e) {
      spdlog::debug("--kb: {} is not served (yet): {}", path.string(), e.what());
      continue;
    }
    std::unique_lock lock(map_mutex_);
    if (kbs_.emplace(name, std::move(entry)).second)
      spdlog::info("--kb: serving {} ({})", name, path.string());
  }
}

json KbService::list_json() {
  json data = json::array();
  for (const auto& name : names()) data.push_back(kb_json(name, info(name)));
  return {{"object", "list"}, {"data", std::move(data)}};
}

kb::KbInfo KbService::info(const std::string& name) {
  Entry& entry = find(name);
  std::lock_guard lock(entry.mutex);
  const std::int64_t version = entry.kb.change_version();
  if (!entry.info || entry.info_version != version) {
    entry.info = entry.kb.info();
    entry.info_version = version;
  }
  return *entry.info;
}

json KbService::create(const std::string& name) {
  if (!valid_kb_name(name))
    throw_invalid(
        "'name' must be 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit "
        "(no '/' nor \"..\"), got " +
            api::json_text(name.substr(0, 80)),
        "name", "invalid_kb_name");
  {
    std::unique_lock lock(map_mutex_);
    if (kbs_.contains(name))
      throw_invalid("knowledge base '" + name + "' exists already", "name", "kb_exists");
    const auto path = dir_ / (name + ".kb");
    std::error_code ec;
    if (std::filesystem::exists(path, ec))
      throw_invalid(
          path.string() +
              " exists already but this node cannot open it as a knowledge base (remove or rename the "
              "file to create '" +
              name + "' anew)",
          "name", "kb_exists");
    kbs_.emplace(name, std::make_unique<Entry>(kb::KnowledgeBase::create(path)));
  }
  return kb_json(name, info(name));
}

KbService::Entry& KbService::find(const std::string& name) {
  for (int look = 0; look < 2; ++look) {
    {
      std::shared_lock lock(map_mutex_);
      if (auto it = kbs_.find(name); it != kbs_.end()) return *it->second;
    }
    if (look == 0 && valid_kb_name(name)) refresh();
  }
  unknown(name);
}

void KbService::unknown(const std::string& name) {
  std::string all;
  for (const auto& n : names()) all += (all.empty() ? "" : ", ") + n;
  throw ClawbotError({ErrorKind::not_found,
                      "no knowledge base '" + name + "' on this node" +
                          (all.empty() ? std::string(" (it has none)") : " (it has: " + all + ")"),
                      "kb", "kb_not_found"});
}

bool KbService::submit_write(std::function<void()> job) {
  std::lock_guard lock(jobs_mutex_);
  if (stopping_ || !writer_thread_.joinable() || jobs_.size() >= write_.max_queued) return false;
  jobs_.push_back(std::move(job));
  jobs_ready_.notify_one();
  return true;
}

kb::KnowledgeBase& KbService::writer(const std::string& name) {
  Entry& entry = find(name);
  if (!entry.writer) entry.writer = kb::KnowledgeBase::open(entry.kb.path());
  return *entry.writer;
}

void KbService::run_writer(const std::stop_token& stop) {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(jobs_mutex_);
      if (!jobs_ready_.wait(lock, stop, [this] { return !jobs_.empty(); })) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();  // catches its own errors: it answers its request with them
  }
}

void KbService::stop() {
  stopping_ = true;
  if (!writer_thread_.joinable()) return;
  writer_thread_.request_stop();
  writer_thread_.join();
  std::lock_guard lock(jobs_mutex_);
  jobs_.clear();  // their requests are not answered: the node is going
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
  g.coverage = ctx.kb->with(name, [&](kb::KnowledgeBase& base) { return base.coverage(g.query, hits); });
  g.threshold = ctx.kb->info(name).refusal_threshold.value_or(kb::default_refusal_threshold);
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

http::Handler add_kb_routes(const ServeContext& ctx,
                            const std::function<void(http::Verb, std::string, http::Handler)>& add) {
  if (ctx.kb == nullptr) return {};
  const ServeContext* c = &ctx;
  add(http::Verb::get, "/v1/kb", [c](http::Exchange& ex) -> asio::awaitable<void> {
    const json list = c->kb->list_json();
    co_await ex.respond_json(200, list);
  });
  add(http::Verb::post, "/v1/kb", [c](http::Exchange& ex) { return create_kb_route(*c, ex); });
  return [c](http::Exchange& ex) { return kb_path_route(*c, ex); };
}

std::optional<std::string> kb_route_label(std::string_view path) {
  const auto split = split_kb_path(path);
  if (!split) return std::nullopt;
  std::string label = kb_route(split->rest).label;
  if (label.empty()) return std::nullopt;
  return label;
}

}  // namespace clawbot::server
