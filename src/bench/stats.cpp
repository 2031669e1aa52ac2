#include "bench/stats.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <numeric>

#include <nlohmann/json.hpp>

namespace clawbot::bench {
namespace {

using json = nlohmann::json;

std::string text_field(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string error_kind(const std::string& message) {
  std::string kind;
  for (char c : message) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      if (kind.empty() || kind.back() != '#') kind += '#';
    } else {
      kind += c;
    }
  }
  return kind;
}

}  // namespace

// ---------------------------------------------------------------- RequestRecord

std::optional<double> RequestRecord::tpot_s() const {
  if (!ok || ttft_s < 0 || output_tokens < 2) return std::nullopt;
  return (e2e_s - ttft_s) / (output_tokens - 1);
}

std::optional<double> RequestRecord::max_itl_s() const {
  if (itl_s.empty()) return std::nullopt;
  return *std::max_element(itl_s.begin(), itl_s.end());
}

// ---------------------------------------------------------------- StreamMeter

void StreamMeter::on_data(std::string_view data, double now_s) {
  if (failed_) return;
  if (data == "[DONE]") {
    done_ = true;
    end_s_ = now_s;
    return;
  }
  json event = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (event.is_discarded() || !event.is_object()) {
    fail(200, "the stream carried an event that is not a JSON object: " + std::string(data.substr(0, 200)));
    return;
  }
  if (auto error = event.find("error"); error != event.end() && !error->is_null()) {
    std::string message = error->is_object() ? text_field(*error, "message") : std::string();
    if (message.empty()) message = error->dump();
    fail(200, "error in the stream: " + message);
    return;
  }
  if (auto usage = event.find("usage"); usage != event.end() && usage->is_object()) {
    if (auto n = usage->find("completion_tokens"); n != usage->end() && n->is_number_integer()) {
      record_.output_tokens = n->get<int>();
      record_.usage_reported = true;
    }
    if (auto n = usage->find("prompt_tokens"); n != usage->end() && n->is_number_integer()) {
      record_.prompt_tokens = n->get<int>();
    }
    if (auto details = usage->find("prompt_tokens_details"); details != usage->end() && details->is_object()) {
      if (auto n = details->find("cached_tokens"); n != details->end() && n->is_number_integer()) {
        record_.cached_tokens = n->get<int>();
      }
    }
  }
  if (auto timings = event.find("timings"); timings != event.end() && timings->is_object()) {
    if (auto ms = timings->find("prompt_ms"); ms != timings->end() && ms->is_number()) {
      record_.server_prompt_s = ms->get<double>() / 1000;
    }
  }
  auto choices = event.find("choices");
  if (choices == event.end() || !choices->is_array() || choices->empty()) return;
  const json& choice = (*choices)[0];
  if (!choice.is_object()) return;
  std::string piece;   // the answer's text
  bool token = false;  // any generated text, reasoning included
  if (auto delta = choice.find("delta"); delta != choice.end() && delta->is_object()) {
    piece = text_field(*delta, "content");
    token = !piece.empty() || !text_field(*delta, "reasoning_content").empty() ||
            !text_field(*delta, "reasoning").empty();
  } else {
    piece = text_field(choice, "text");  // /v1/completions
    token = !piece.empty();
  }
  if (token) {
    if (last_token_s_ < 0) {
      record_.ttft_s = now_s - record_.start_s;
    } else {
      record_.itl_s.push_back(now_s - last_token_s_);
    }
    last_token_s_ = now_s;
    ++chunks_;
    record_.content += piece;
  }
  if (auto reason = choice.find("finish_reason"); reason != choice.end() && !reason->is_null()) {
    finished_ = true;
  }
}

void StreamMeter::fail(int status, std::string message) {
  if (failed_) return;
  failed_ = true;
  record_.status = status;
  record_.error = std::move(message);
}

RequestRecord StreamMeter::finish(double now_s) {
  const double end = end_s_ >= 0 ? end_s_ : now_s;
  record_.e2e_s = end - record_.start_s;
  if (!failed_ && !done_ && !finished_) {
    fail(200, "the stream ended before its last event (no finish_reason, no [DONE])");
  }
  if (!failed_) record_.status = 200;
  record_.ok = !failed_;
  if (!record_.usage_reported) record_.output_tokens = chunks_;
  return std::move(record_);
}

// ---------------------------------------------------------------- statistics

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return std::nan("");
  if (sorted.size() == 1) return sorted.front();
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto lower = static_cast<std::size_t>(std::floor(rank));
  const auto upper = std::min(lower + 1, sorted.size() - 1);
  const double fraction = rank - static_cast<double>(lower);
  return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction;
}

Distribution distribution(std::vector<double> values, double scale) {
  Distribution d;
  if (values.empty()) return d;
  for (auto& v : values) v *= scale;
  std::sort(values.begin(), values.end());
  d.count = values.size();
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  d.min = values.front();
  d.max = values.back();
  d.p50 = percentile(values, 50);
  d.p90 = percentile(values, 90);
  d.p99 = percentile(values, 99);
  return d;
}

Summary summarize(const std::vector<RequestRecord>& records, double duration_s, bool conversations) {
  Summary s;
  s.requests = records.size();
  s.duration_s = duration_s;
  s.conversations = conversations;
  std::vector<double> ttft, tpot, itl, e2e, max_itl, output, prompt, ttft_first, ttft_later, new_later,
      server_prompt, server_prompt_later;
  // Errors that differ only in numbers ("the prompt is 2618 tokens") count as one kind; the first is shown.
  std::map<std::pair<int, std::string>, ErrorCount> errors;
  for (const auto& r : records) {
    if (!r.ok) {
      ++s.failed;
      auto& kind = errors[{r.status, error_kind(r.error)}];
      if (kind.count++ == 0) {
        kind.status = r.status;
        kind.message = r.error;
      }
      continue;
    }
    ++s.ok;
    s.output_tokens += r.output_tokens;
    if (!r.usage_reported) s.all_usage_reported = false;
    output.push_back(r.output_tokens);
    if (r.prompt_tokens >= 0) {
      s.prompt_tokens += r.prompt_tokens;
      prompt.push_back(r.prompt_tokens);
      if (r.turn > 1 && r.cached_tokens >= 0) new_later.push_back(r.prompt_tokens - r.cached_tokens);
    }
    e2e.push_back(r.e2e_s);
    if (r.ttft_s >= 0) {
      ttft.push_back(r.ttft_s);
      (r.turn <= 1 ? ttft_first : ttft_later).push_back(r.ttft_s);
    } else {
      ++s.without_text;
    }
    if (r.server_prompt_s >= 0) {
      server_prompt.push_back(r.server_prompt_s);
      if (r.turn > 1) server_prompt_later.push_back(r.server_prompt_s);
    }
    if (auto t = r.tpot_s()) tpot.push_back(*t);
    if (auto m = r.max_itl_s()) max_itl.push_back(*m);
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
  }
  if (duration_s > 0) {
    s.output_tokens_per_s = static_cast<double>(s.output_tokens) / duration_s;
    s.requests_per_s = static_cast<double>(s.ok) / duration_s;
  }
  s.ttft_ms = distribution(std::move(ttft), 1000);
  s.server_prompt_ms = distribution(std::move(server_prompt), 1000);
  s.tpot_ms = distribution(std::move(tpot), 1000);
  s.itl_ms = distribution(std::move(itl), 1000);
  s.e2e_ms = distribution(std::move(e2e), 1000);
  s.max_itl_ms = distribution(std::move(max_itl), 1000);
  s.output_tokens_per_request = distribution(std::move(output));
  s.prompt_tokens_per_request = distribution(std::move(prompt));
  if (conversations) {
    s.ttft_first_turn_ms = distribution(std::move(ttft_first), 1000);
    s.ttft_later_turns_ms = distribution(std::move(ttft_later), 1000);
    s.new_prompt_tokens_later_turns = distribution(std::move(new_later));
    s.server_prompt_later_turns_ms = distribution(std::move(server_prompt_later), 1000);
  }
  for (auto& [key, kind] : errors) s.errors.push_back(std::move(kind));
  std::stable_sort(s.errors.begin(), s.errors.end(),
                   [](const ErrorCount& a, const ErrorCount& b) { return a.count > b.count; });
  return s;
}

}  // namespace clawbot::bench
