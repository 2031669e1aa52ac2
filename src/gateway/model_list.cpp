#include "gateway/model_list.h"

#include "common/json_read.h"

namespace clawbot::gateway {

using nlohmann::json;

namespace {

// A short string, a number or a boolean as it is; anything else (a long string, an array, an object) left
// out.
bool kept_scalar(const json& value) {
  if (value.is_string()) return value.get_ref<const std::string&>().size() <= max_model_string_bytes;
  return value.is_number() || value.is_boolean();
}

}  // namespace

ModelList read_model_list(std::string_view body) {
  ModelList list;
  // A model list is 3 or 4 levels deep; 16 leaves room for extensions without any risk.
  json_read::Limits limits;
  limits.max_depth = 16;
  limits.max_bytes = max_model_list_bytes;
  auto parsed = json_read::parse(body, limits);
  if (!parsed) {
    list.error = "the answer " + parsed.failure.message + " (" + parsed.failure.code + ")";
    return list;
  }
  const json& doc = *parsed.value;
  const auto data = doc.is_object() ? doc.find("data") : doc.end();
  if (!doc.is_object() || data == doc.end() || !data->is_array()) {
    list.error = "the answer has no \"data\" array of models";
    return list;
  }
  for (const auto& model : *data) {
    if (list.ids.size() >= max_listed_models) break;
    if (!model.is_object()) continue;
    const auto id = model.find("id");
    if (id == model.end() || !id->is_string() || id->get_ref<const std::string&>().empty() ||
        id->get_ref<const std::string&>().size() > max_model_string_bytes)
      continue;
    json entry = {{"id", *id}};
    for (const char* key : {"object", "created", "owned_by"})
      if (const auto it = model.find(key); it != model.end() && kept_scalar(*it)) entry[key] = *it;
    if (const auto meta = model.find("meta"); meta != model.end() && meta->is_object()) {
      json flat = json::object();
      for (const auto& [key, value] : meta->items()) {
        if (flat.size() >= 64) break;
        if (key.size() <= 64 && kept_scalar(value)) flat[key] = value;
      }
      entry["meta"] = std::move(flat);
    }
    list.ids.push_back(id->get<std::string>());
    list.entries.push_back(std::move(entry));
  }
  return list;
}

json read_reported_memory(std::string_view health_body) {
  json_read::Limits limits;
  limits.max_depth = 8;
  limits.max_bytes = 64u << 10;
  const auto parsed = json_read::parse(health_body, limits);
  if (!parsed || !parsed.value->is_object()) return nullptr;
  const auto memory = parsed.value->find("memory");
  if (memory == parsed.value->end() || !memory->is_object()) return nullptr;
  json flat = json::object();
  for (const auto& [key, value] : memory->items()) {
    if (flat.size() >= 16) break;
    if (key.size() <= 64 && value.is_number()) flat[key] = value;
  }
  return flat.empty() ? json(nullptr) : flat;
}

}  // namespace clawbot::gateway
