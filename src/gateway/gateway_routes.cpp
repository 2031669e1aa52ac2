// The gateway's own routes: /health, /metrics, /v1/models (the union of its upstreams'), and the model check
// before a request is forwarded.
#include <map>

#include "common/backup_metrics.h"
#include "common/json_read.h"
#include "common/ollama_format.h"
#include "gateway/gateway_internal.h"

namespace clawbot::gateway::detail {

// Up or down for anyone; the upstreams (names, URLs, last errors) only for a valid key, or when the gateway
// needs no keys at all.
asio::awaitable<void> Gateway::health(Worker&, http::Exchange& ex, Context& ctx) {
  const auto upstreams = pool_.snapshot(Clock::now());
  const bool details = !keys_ || !ctx.key_id.empty();
  json list = json::array();
  std::size_t serving = 0;
  for (std::size_t i = 0; i < upstreams.size(); ++i) {
    const auto& u = upstreams[i];
    serving += u.serving ? 1 : 0;
    if (!details) continue;
    json item = {{"name", u.name},       {"url", u.url},         {"state", to_string(u.state)},
                 {"standby", u.standby}, {"serving", u.serving}, {"in_flight", u.in_flight},
                 {"models", u.models}};
    if (!u.last_error.empty() && u.state != UpstreamState::up) item["last_error"] = u.last_error;
    {
      std::lock_guard lock(models_mutex_);
      if (!upstream_models_[i].error.empty()) item["models_error"] = upstream_models_[i].error;
      if (!upstream_memory_[i].is_null()) item["memory"] = upstream_memory_[i];
    }
    list.push_back(std::move(item));
  }
  const auto primaries = static_cast<std::size_t>(
      std::count_if(upstreams.begin(), upstreams.end(), [](const auto& u) { return !u.standby; }));
  const bool all = serving >= primaries;
  json body = {{"status", serving == 0 ? "unavailable" : (all ? "ok" : "degraded")}, {"role", "gateway"}};
  if (details) {
    body["queue"] = queue_.size();
    body["upstreams"] = std::move(list);
  }
  ctx.status = serving == 0 ? 503 : 200;
  co_await ex.respond_json(ctx.status, body);
}

asio::awaitable<void> Gateway::metrics(Worker&, http::Exchange& ex, Context& ctx) {
  ctx.status = 200;
  std::string text = registry_.render() + backup_metrics_text();  // the last backup's figures (issue 24)
  co_await ex.respond_text(200, std::move(text), "text/plain; version=0.0.4; charset=utf-8");
}

asio::awaitable<void> Gateway::alerts(Worker&, http::Exchange& ex, Context& ctx) {
  ctx.status = 200;
  const json body = alerts_->to_json();
  co_await ex.respond_json(200, body);
}

asio::awaitable<void> Gateway::metrics_history(Worker&, http::Exchange& ex, Context& ctx) {
  const auto target = ex.request().target();
  const auto since = monitor::history_since(std::string_view(target.data(), target.size()));
  ctx.status = 200;
  co_await ex.respond_text(200, history_->json(since), "application/json");
}

// The models of every upstream that is up, each once, with the upstreams that serve it.
asio::awaitable<void> Gateway::models(Worker&, http::Exchange& ex, Context& ctx) {
  const auto upstreams = pool_.snapshot(Clock::now());
  json data = json::array();
  std::map<std::string, std::size_t> position;
  {
    std::lock_guard lock(models_mutex_);
    for (std::size_t i = 0; i < upstreams.size(); ++i) {
      if (upstreams[i].state == UpstreamState::down) continue;
      // (Entries as read_model_list rebuilt them: each an object with a string id.)
      for (const auto& model : upstream_models_[i].entries) {
        const std::string& id = model.at("id").get_ref<const std::string&>();
        auto [it, inserted] = position.emplace(id, data.size());
        if (inserted) {
          json entry = model;
          entry["upstreams"] = json::array();
          data.push_back(std::move(entry));
        }
        data[it->second]["upstreams"].push_back(upstreams[i].name);
      }
    }
  }
  const json body = {{"object", "list"}, {"data", std::move(data)}};
  ctx.status = 200;
  co_await ex.respond_json(200, body);
}

// Ollama's listing of the upstreams' models, made from what their /v1/models said (each model once, with
// the upstreams that serve it): the size, family and parameter count a clawbot node reports in "meta".
// `loaded`: as /api/ps lists them (every listed model is loaded on a node that serves it).
json Gateway::ollama_models(bool loaded) {
  const auto upstreams = pool_.snapshot(Clock::now());
  json models = json::array();
  std::map<std::string, std::size_t> position;
  std::lock_guard lock(models_mutex_);
  for (std::size_t i = 0; i < upstreams.size(); ++i) {
    if (upstreams[i].state == UpstreamState::down) continue;
    for (const auto& model : upstream_models_[i].entries) {
      const std::string name = ollama_format::tagged_name(model.at("id").get_ref<const std::string&>());
      auto [it, inserted] = position.emplace(name, models.size());
      if (inserted) {
        const json meta = model.value("meta", json::object());
        const auto number = [&](const char* key) {
          const auto v = meta.find(key);
          return v != meta.end() && v->is_number_unsigned() ? v->get<std::uint64_t>() : std::uint64_t{0};
        };
        const auto family_it = meta.find("architecture");
        const std::string family =
            family_it != meta.end() && family_it->is_string() ? family_it->get<std::string>() : "";
        json entry = {{"name", name},
                      {"model", name},
                      {"size", number("size")},
                      {"digest", ""},  // a node's digest names its file; the gateway lists the model
                      {"details",
                       {{"parent_model", ""},
                        {"format", "gguf"},
                        {"family", family},
                        {"families", family.empty() ? json::array() : json::array({family})},
                        {"parameter_size", ollama_format::parameter_size(number("n_params"))},
                        {"quantization_level", ""}}},
                      {"upstreams", json::array()}};
        const auto created = model.find("created");
        const auto since =
            created != model.end() && created->is_number_integer() ? created->get<std::int64_t>() : 0;
        if (loaded) {
          entry["expires_at"] = "9999-12-31T23:59:59Z";  // a node keeps its model for as long as it runs
          entry["size_vram"] = 0;                        // (not reported through /v1/models)
        } else {
          entry["modified_at"] = ollama_format::rfc3339(std::chrono::system_clock::from_time_t(since));
        }
        models.push_back(std::move(entry));
      }
      models[it->second]["upstreams"].push_back(upstreams[i].name);
    }
  }
  return models;
}

asio::awaitable<void> Gateway::ollama_tags(Worker&, http::Exchange& ex, Context& ctx) {
  const json body = {{"models", ollama_models(false)}};
  ctx.status = 200;
  co_await ex.respond_json(200, body);
}

asio::awaitable<void> Gateway::ollama_ps(Worker&, http::Exchange& ex, Context& ctx) {
  const json body = {{"models", ollama_models(true)}};
  ctx.status = 200;
  co_await ex.respond_json(200, body);
}

// The version clawbot nodes report, answered here so that a client's first look needs no upstream.
asio::awaitable<void> Gateway::ollama_version(Worker&, http::Exchange& ex, Context& ctx) {
  const json body = {{"version", ollama_format::api_version}};
  ctx.status = 200;
  co_await ex.respond_json(200, body);
}

std::string Gateway::served_name(std::string_view path, const std::string& model) {
  constexpr std::string_view latest = ":latest";
  if (!path.starts_with("/api/") || !model.ends_with(latest) || !unserved_model(model)) return model;
  std::string bare = model.substr(0, model.size() - latest.size());
  return unserved_model(bare) ? model : bare;
}

std::optional<Error> Gateway::unserved_model(std::string_view model) {
  if (model.empty()) return std::nullopt;
  std::vector<std::string_view> served;
  std::lock_guard lock(models_mutex_);
  for (std::size_t i = 0; i < upstream_models_.size(); ++i) {
    if (!models_read_[i]) return std::nullopt;  // an upstream whose models are unknown may serve it
    for (const auto& id : upstream_models_[i].ids) {
      if (id == model) return std::nullopt;
      if (std::find(served.begin(), served.end(), id) == served.end()) served.push_back(id);
    }
  }
  std::string list;
  for (std::size_t i = 0; i < served.size() && i < 20; ++i) list.append(i ? ", " : "").append(served[i]);
  if (served.size() > 20) list += ", ... (" + std::to_string(served.size()) + " in all: GET /v1/models)";
  return Error{ErrorKind::not_found,
               "the model " + json_read::describe(json(std::string(model)), 100) +
                   " is not served by this gateway; it serves: " + (list.empty() ? "none yet" : list),
               "model", "model_not_found"};
}

std::optional<Error> Gateway::transcription_model(std::string& model) {
  std::lock_guard lock(models_mutex_);
  bool all_known = true;
  std::string first;  // the fallback when `model` names no speech model an upstream has
  for (std::size_t i = 0; i < upstream_models_.size(); ++i) {
    if (!models_read_[i]) {
      all_known = false;
      continue;
    }
    for (const auto& entry : upstream_models_[i].entries) {
      const auto meta = entry.find("meta");
      if (meta == entry.end() || !meta->is_object()) continue;
      const auto task = meta->find("task");
      if (task != meta->end() && task->is_string() && *task == "transcription" && entry.contains("id") &&
          entry["id"].is_string()) {
        const auto& id = entry["id"].get_ref<const std::string&>();
        if (id == model) return std::nullopt;  // asked for by name
        if (first.empty()) first = id;
      }
    }
  }
  if (!first.empty()) {
    model = std::move(first);
    return std::nullopt;
  }
  if (!all_known) {
    model.clear();  // (a name no upstream lists yet: any may serve)
    return std::nullopt;
  }
  return Error{
      ErrorKind::not_found,
      "no node behind this gateway has a speech-to-text model (start one with serve --whisper-model)",
      "model", "model_not_found"};
}

}  // namespace clawbot::gateway::detail
