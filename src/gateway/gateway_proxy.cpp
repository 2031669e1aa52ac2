// Forwarding: a request goes to an upstream the pool picks (another one when the first cannot have acted on
// it), its answer comes back whole or as a stream relayed event by event.
#include <algorithm>
#include <charconv>
#include <cstring>
#include <random>

#include <spdlog/spdlog.h>

#include "audio/multipart.h"
#include "common/json_read.h"
#include "common/text.h"
#include "gateway/forward.h"
#include "gateway/gateway_internal.h"

namespace clawbot::gateway::detail {
namespace {

// Response headers worth passing back to the client (the rest the gateway sets itself).
bool pass_back(std::string_view name) {
  return beast::iequals(name, "retry-after") || beast::iequals(name, "x-request-id") ||
         beast::iequals(name, "openai-processing-ms") || beast::iequals(name, "cache-control");
}

// A body the gateway passes on without reading it as JSON: a file upload or raw bytes.
bool is_upload(std::string_view content_type) {
  const auto starts = [&](std::string_view prefix) {
    return content_type.size() >= prefix.size() &&
           beast::iequals(content_type.substr(0, prefix.size()), prefix);
  };
  return starts("multipart/") || starts("application/octet-stream") || starts("audio/") || starts("image/");
}

// Routes that do not generate: a request reserves only its prompt's tokens.
bool generates(std::string_view path) {
  static constexpr std::string_view not_generating[] = {
      "/v1/embeddings", "/tokenize", "/detokenize", "/v1/messages/count_tokens",
      "/v1/rerank",     "/rerank",   "/api/embed",  "/api/embeddings",
      "/api/show"};
  return std::find(std::begin(not_generating), std::end(not_generating), path) == std::end(not_generating);
}

// OpenAI's streams report usage only when asked (stream_options.include_usage); Responses, Anthropic and
// Ollama streams always do, and their nodes need not know OpenAI's field.
bool takes_stream_options(std::string_view path) {
  return !path.starts_with("/api/") && !path.starts_with("/v1/messages") && path != "/v1/responses" &&
         path != "/v1/rerank";
}

// What a client whose stream broke off is told (and the log): the answer it has is incomplete.
Error failed_mid_stream(const std::string& upstream, const std::string& failure) {
  spdlog::warn("upstream {} failed mid-stream: {}", upstream, failure);
  return Error{ErrorKind::bad_gateway,
               "the upstream " + upstream + " failed in the middle of this answer: " + failure +
                   "; the answer is incomplete",
               {},
               "upstream_failed_mid_stream"};
}

// A plain field of a multipart/form-data body (the speech model an audio upload names); empty when the body
// is no such form or has no such field (the node answers a broken form in its own words).
std::string form_field(std::string_view content_type, std::string_view body, std::string_view name) {
  try {
    const auto parts = audio::parse_form(body, audio::form_boundary(content_type));
    const audio::FormPart* part = audio::find_part(parts, name);
    if (part != nullptr && part->filename.empty() && part->data.size() <= 256) return std::string(part->data);
  } catch (const std::exception&) {
  }
  return {};
}

// "req-" and 24 hex digits, in `out`; returns it as text.
std::string_view random_request_id(std::array<char, 28>& out) {
  thread_local std::mt19937_64 random(std::random_device{}());
  std::memcpy(out.data(), "req-", 4);
  std::size_t at = 4;
  for (std::uint64_t bits : {random(), random()})
    for (int i = 0; i < 12; ++i, bits >>= 4) out[at++] = text::hex_digits[bits & 15];
  return std::string_view(out.data(), out.size());
}

std::string event_text(const http::SseEvent& event) {
  std::string text;
  text.reserve(event.data.size() + 16);
  if (!event.event.empty()) text.append("event: ").append(event.event).append("\n");
  if (!event.id.empty()) text.append("id: ").append(event.id).append("\n");
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = event.data.find('\n', start);
    text.append("data: ").append(event.data, start,
                                 end == std::string::npos ? std::string::npos : end - start);
    text.append("\n");
    if (end == std::string::npos) break;
    start = end + 1;
  }
  text.append("\n");
  return text;
}

}  // namespace

// ------------------------------------------------------------------------------------------- connections

std::unique_ptr<http::Client> Gateway::take_client(Worker& worker, std::size_t index) {
  auto& idle = worker.idle[index];
  if (!idle.empty()) {
    auto client = std::move(idle.back());
    idle.pop_back();
    return client;
  }
  const Upstream& u = config_.upstreams[index];
  http::ClientOptions options;
  options.connect_timeout = config_.connect_timeout;
  options.read_timeout = config_.read_timeout;
  options.tls_ca_file = u.tls_ca_file;
  options.tls_insecure = u.tls_insecure;
  options.max_event_bytes = 64u << 20;
  options.pooled = true;
  if (!u.api_key.empty()) options.headers.emplace_back("Authorization", "Bearer " + u.api_key);
  return std::make_unique<http::Client>(worker.io.get_executor(), u.parsed, std::move(options));
}

void Gateway::give_back(Worker& worker, std::size_t index, std::unique_ptr<http::Client> client) {
  constexpr std::size_t max_idle = 256;
  auto& idle = worker.idle[index];
  if (client->connected() && idle.size() < max_idle) idle.push_back(std::move(client));
}

// ------------------------------------------------------------------------------------------- forwarding

namespace {

// What the audit log keeps of a request's prompt (audit_prompts). The body passed the scan, so the bounded
// reader takes it; its parts are dumped within those bounds.
std::string prompt_for_audit(std::string_view body) {
  const auto parsed = json_read::parse(body);
  for (const char* field : {"messages", "prompt", "input"}) {
    if (!parsed || !parsed.value->is_object()) break;
    if (auto it = parsed.value->find(field); it != parsed.value->end())
      return it->dump(-1, ' ', false, json::error_handler_t::replace);
  }
  return {};
}

}  // namespace

std::optional<Gateway::Refusal> Gateway::prepare_forward(http::Exchange& ex, Context& ctx, Outbound& out) {
  const auto& request = ex.request();
  out.body = request.body();
  const auto type = request.find(bhttp::field::content_type);
  // Nodes read a body as JSON whatever its Content-Type says (curl -d sends form-urlencoded): so does the
  // gateway, but for uploads.
  const bool json_body =
      !out.body.empty() &&
      (type == request.end() || !is_upload(std::string_view(type->value().data(), type->value().size())));
  std::string_view session;
  if (auto h = request.find("x-session-id"); h != request.end())
    session = std::string_view(h->value().data(), h->value().size());
  out.facts = json_body ? scan_request(out.body, session) : RequestFacts{};
  // What no node may accept (too deep, not JSON, numbers out of range) or what the gateway would read
  // differently from the node (a duplicated or mistyped stream_options) never goes upstream.
  if (out.facts.refusal) return Refusal{*out.facts.refusal, {}};
  const std::string_view path = ex.path();
  // Ollama's generation routes stream unless the body says "stream": false.
  if ((path == "/api/chat" || path == "/api/generate") && !out.facts.stream_given) out.facts.stream = true;
  out.facts.model = served_name(path, out.facts.model);
  // Audio (a multipart upload, no JSON to read a model from) goes to a node that lists the speech model its
  // form's "model" names, else to one that lists any.
  if (path.starts_with("/v1/audio/")) {
    if (type != request.end())
      out.facts.model =
          form_field(std::string_view(type->value().data(), type->value().size()), out.body, "model");
    if (auto none = transcription_model(out.facts.model)) return Refusal{*none, {}};
  }
  bool to_default_model = false;
  if (auto missing = unserved_model(out.facts.model)) {
    if (config_.default_model.empty()) return Refusal{*missing, {}};
    to_default_model = true;
    out.facts.model = config_.default_model;
  }
  // The key's tokens: what this request may use is reserved now, and settled when it ends (finish()).
  const bool generating = request.method() == bhttp::verb::post && generates(path);
  if (auto reserved = ctx.tokens.reserve(out.facts, out.body.size(), generating, Clock::now());
      !reserved.allowed)
    return rate_limited(ctx.key_id, reserved);
  // Tokens per key need the usage of streamed answers too: ask for it, and drop its chunk on the way back
  // to a client that did not ask.
  out.usage_added = out.facts.stream && !out.facts.include_usage && generating && takes_stream_options(path);
  if (out.usage_added || to_default_model) {
    out.changed_body =
        rewritten(out.body, out.facts, out.usage_added, to_default_model ? out.facts.model : std::string());
    out.body = out.changed_body;
  }
  if (config_.audit_prompts && out.facts.valid) ctx.prompt = prompt_for_audit(out.body);
  ctx.model = out.facts.model;

  // Never forwarded: a target that is not a path. The server refuses an absolute-form target already; this
  // keeps the upstream's api_key from ever going with a request to a host the client chose.
  out.target = std::string_view(request.target().data(), request.target().size());
  if (!forwardable_target(out.target)) {
    const Error error{ErrorKind::invalid_request,
                      "the request target must be a path such as /v1/chat/completions; this gateway forwards "
                      "requests only to its own upstreams",
                      {},
                      "invalid_request_target"};
    return Refusal{error, {}};
  }
  out.upstream_lines.reserve(256);
  out.request_id = append_upstream_headers(out.upstream_lines, request, ctx.client, ex.is_tls());
  if (out.request_id.empty()) {
    out.request_id = random_request_id(out.made_request_id);
    out.upstream_lines.append("X-Request-Id: ").append(out.request_id).append("\r\n");
  }
  out.head = request.method() == bhttp::verb::head;
  out.deadline = Clock::now() + config_.queue.timeout;
  return std::nullopt;
}

// (Headers by name at every call: no braced temporaries inside co_await expressions, for GCC 12.)
asio::awaitable<void> Gateway::answer_error(http::Exchange& ex, Context& ctx, const Error& error,
                                            Headers headers) {
  if (!ex.sse_started()) {
    co_await reply_error(ex, ctx, error, std::move(headers));
  } else {
    ctx.status = 200;
    const bool sent = co_await ex.sse_data(to_json(error).dump());
    if (sent) co_await ex.sse_end();
  }
}

// No upstream at once: wait for one in the queue; when none comes, answer why (or note that the client left).
asio::awaitable<std::optional<Pick>> Gateway::wait_or_refuse(http::Exchange& ex, Context& ctx,
                                                             Outbound& out) {
  Error refusal;
  bool client_left = false;
  std::optional<Pick> pick = co_await wait_for_upstream(ex, out.facts, out.tried, out.deadline,
                                                        out.refused_busy, refusal, client_left);
  if (pick) co_return pick;
  if (client_left) {
    ctx.status = 499;  // nginx's "client closed request"
    co_return std::nullopt;
  }
  if (refusal.message.empty()) {  // every upstream failed it
    const Error error{ErrorKind::bad_gateway, "no upstream answered: " + out.last_failure, {}, {}};
    Headers none;
    co_await answer_error(ex, ctx, error, std::move(none));
  } else {
    if (!out.last_failure.empty()) refusal.message += "; last: " + out.last_failure;
    Headers retry{{"Retry-After", "1"}};
    co_await answer_error(ex, ctx, refusal, std::move(retry));
  }
  co_return std::nullopt;
}

// One try of a request on one upstream: send it, then relay the stream or pass the whole answer on.
class Gateway::Attempt {
 public:
  Attempt(Gateway& gateway, Worker& worker, http::Exchange& ex, Context& ctx, Outbound& out, const Pick& pick)
      : gw_(gateway),
        worker_(worker),
        ex_(ex),
        ctx_(ctx),
        out_(out),
        pick_(pick),
        client_(gateway.take_client(worker, pick.index)),
        watch_(worker, ex, *client_) {}

  asio::awaitable<Outcome> run() {
    auto result = co_await client_->send(ex_.request().method(), out_.target, out_.body,
                                         std::string_view(out_.upstream_lines));
    if (watch_.client_left()) co_return client_gone();
    if (!result) {
      const http::ClientError& error = result.error();
      const Outcome outcome = co_await not_sent(error);
      co_return outcome;
    }
    auto& reader = *result;
    const int status = reader.status();
    if (status == 503) co_return busy(reader);
    // Only audio answers carry it: no header search on every other answer.
    if (ex_.path().starts_with("/v1/audio/")) {
      if (const auto audio = reader.headers().find("x-audio-seconds"); audio != reader.headers().end()) {
        std::from_chars(audio->value().data(), audio->value().data() + audio->value().size(),
                        ctx_.audio_seconds);
        // Counted once the node says how long the file was: the key's next request sees it.
        if (!ctx_.key_id.empty()) gw_.limiter_.add_audio(ctx_.key_id, ctx_.audio_seconds, Clock::now());
      }
    }
    const auto type = reader.headers()[bhttp::field::content_type];
    const std::string_view content_type(type.data(), type.size());
    const bool event_stream =
        status == 200 && beast::iequals(content_type.substr(0, 17), "text/event-stream");
    const bool ndjson = status == 200 && beast::iequals(content_type.substr(0, 20), "application/x-ndjson");
    Ending ending;
    std::optional<Outcome> outcome;
    if (event_stream) {
      outcome = co_await relay(reader, ending);
    } else if (ndjson) {
      outcome = co_await relay_lines(reader, ending);
    } else {
      outcome = co_await pass_whole(reader, status, content_type, ending);
    }
    if (outcome) co_return *outcome;
    record(reader, status, ending);
    co_return Outcome::answered;
  }

 private:
  // How an answer that began ended: an upstream that failed after its answer began is not retried, nor
  // counted against its breaker.
  struct Ending {
    bool upstream_failed = false;
    std::string failure;
  };

  void count_error(std::string_view kind) {
    gw_.registry_.counter_add("clawbot_gateway_upstream_errors_total", "Upstream failures by kind",
                              {{"upstream", ctx_.upstream}, {"kind", std::string(kind)}});
  }

  Outcome client_gone() {
    watch_.stop();
    gw_.pool_.finish(pick_, false, {}, Clock::now());
    ctx_.status = 499;  // nginx's "client closed request"
    return Outcome::answered;
  }

  // The upstream cannot have acted on the request (or threw it away before any byte reached the client):
  // another upstream may take it, within the retries.
  Outcome try_elsewhere(std::string_view kind, const std::string& why, bool upstream_at_fault) {
    out_.last_failure = ctx_.upstream + ": " + why;
    if (upstream_at_fault)
      gw_.pool_.finish(pick_, true, why, Clock::now());
    else
      gw_.pool_.finish_unproven(pick_, why, Clock::now());
    count_error(kind);
    out_.tried.push_back(pick_.index);
    return ++out_.failures <= gw_.config_.retries ? Outcome::retry : Outcome::give_up;
  }

  // The upstream may have acted on the request (it read all of it, then failed): it goes nowhere else,
  // since a request that crashed one node would crash the next; nor does it count against this one's
  // breaker (the request may be the cause). Health checks judge the node.
  asio::awaitable<Outcome> fail_after_sending(std::string_view kind, const std::string& why) {
    gw_.pool_.finish_unproven(pick_, why, Clock::now());
    count_error(kind);
    spdlog::warn("upstream {} failed after it was sent the request (not retried elsewhere): {}",
                 ctx_.upstream, why);
    const Error error{ErrorKind::bad_gateway,
                      "the upstream " + ctx_.upstream + " failed after it was sent the request: " + why +
                          "; it was not sent to another upstream, since it may have been processed",
                      {},
                      {}};
    Headers none;
    co_await gw_.answer_error(ex_, ctx_, error, std::move(none));
    co_return Outcome::answered;
  }

  asio::awaitable<Outcome> not_sent(const http::ClientError& error) {
    watch_.stop();
    if (error.request_sent && error.code == beast::error::timeout &&
        gw_.pool_.health_check_failing(pick_.index)) {
      // Not a byte came back before the read timeout, and meanwhile the health checks found the whole node
      // gone (hung, or cut off the network): the node failed, not this request, so another may take it. A
      // connection that broke instead (the node died, perhaps of this very request) still goes nowhere else.
      spdlog::warn(
          "upstream {} went down while it held the request and sent nothing back: sending it elsewhere",
          ctx_.upstream);
      co_return try_elsewhere("node_down_before_answer", error.message, false);
    }
    if (error.request_sent && error.code != beast::error::timeout && !out_.resent_after_node_died &&
        !(co_await gw_.answers_health_check(worker_, pick_.index))) {
      // The connection broke before a byte came back and the node no longer answers its health check (killed,
      // crashed): another node may take the request, once. The request may be what killed it, so a second
      // node that dies of it ends it. A node that still answers dropped only the request: 502, as before.
      out_.resent_after_node_died = true;
      spdlog::warn("upstream {} died holding the request before answering: sending it elsewhere, once",
                   ctx_.upstream);
      co_return try_elsewhere("node_died_before_answer", error.message, false);
    }
    if (error.request_sent) {
      const Outcome outcome = co_await fail_after_sending("after_request", error.message);
      co_return outcome;
    }
    spdlog::warn("upstream {} could not be sent the request: {}", ctx_.upstream, error.message);
    co_return try_elsewhere("connect_or_send", error.message, true);
  }

  // Busy (its queue is full, or it is draining): the request waits for room, here or on another upstream,
  // and the upstream gets nothing more before its Retry-After. Not a failure of the upstream.
  Outcome busy(const http::ResponseReader& reader) {
    watch_.stop();
    const auto& headers = reader.headers();
    const auto named = headers.find(bhttp::field::retry_after);
    const auto delay = named == headers.end()
                           ? std::nullopt
                           : retry_after(std::string_view(named->value().data(), named->value().size()));
    gw_.pool_.busy(pick_, delay, Clock::now());
    count_error("status_503");
    out_.refused_busy = true;
    out_.last_failure = ctx_.upstream + ": answered 503 (busy)";
    return Outcome::retry;
  }

  // The upstream's headers worth passing back, and the gateway's own.
  template <class Add>
  void pass_headers_back(const http::ResponseReader& reader, bool event_stream, Add&& add) const {
    for (const auto& field : reader.headers()) {
      const std::string_view name(field.name_string().data(), field.name_string().size());
      if (pass_back(name) && !(event_stream && beast::iequals(name, "cache-control")))
        add(name, std::string_view(field.value().data(), field.value().size()));
    }
    if (reader.headers().find("x-request-id") == reader.headers().end()) add("X-Request-Id", out_.request_id);
    add("X-Clawbot-Upstream", ctx_.upstream);  // which node answered: for people and tests
  }

  // A stream, relayed event by event; an outcome when it ended before any content (another try), else none.
  asio::awaitable<std::optional<Outcome>> relay(http::ResponseReader& reader, Ending& ending) {
    ctx_.status = 200;
    Headers back;
    pass_headers_back(reader, true,
                      [&](std::string_view name, std::string_view value) { back.emplace_back(name, value); });
    const Relay relay = co_await gw_.relay_stream(ex_, ctx_, reader, out_.usage_added, watch_,
                                                  std::move(back), ending.failure);
    watch_.stop();  // no write is in progress now
    if (relay == Relay::client_left) ctx_.status = 499;
    if (relay == Relay::unavailable_before_content) {
      // It accepted the request, then gave up on it before any content (shutting down): like a 503.
      gw_.pool_.busy(pick_, std::nullopt, Clock::now());
      count_error("unavailable_before_content");
      out_.last_failure = ctx_.upstream + ": " + ending.failure;
      out_.tried.push_back(pick_.index);
      co_return ++out_.failures <= gw_.config_.retries ? Outcome::retry : Outcome::give_up;
    }
    if (relay == Relay::failed_before_content)
      co_return try_elsewhere("before_content", ending.failure, false);
    ending.upstream_failed = relay == Relay::failed_mid_stream;
    co_return std::nullopt;
  }

  // Newline-delimited JSON, relayed line by line; another try when it failed before any line.
  asio::awaitable<std::optional<Outcome>> relay_lines(http::ResponseReader& reader, Ending& ending) {
    ctx_.status = 200;
    Headers back;
    pass_headers_back(reader, true,
                      [&](std::string_view name, std::string_view value) { back.emplace_back(name, value); });
    const Relay relay = co_await gw_.relay_ndjson(ex_, ctx_, reader, watch_, std::move(back), ending.failure);
    watch_.stop();  // no write is in progress now
    if (relay == Relay::client_left) ctx_.status = 499;
    if (relay == Relay::failed_before_content)
      co_return try_elsewhere("before_content", ending.failure, false);
    ending.upstream_failed = relay == Relay::failed_mid_stream;
    co_return std::nullopt;
  }

  // A whole answer, read and passed on; an outcome when it is the end of the request here, else none.
  asio::awaitable<std::optional<Outcome>> pass_whole(http::ResponseReader& reader, int status,
                                                     std::string_view content_type, Ending& ending) {
    // A buffer from the worker, not zeroed: in this coroutine's frame it would make every request allocate
    // (and zero) a frame too large for asio's recycling allocator, and growing the answer string by resize()
    // zeroed 4 KiB per read (5% of the gateway's instructions per request).
    const BorrowedChunk chunk(worker_);
    std::string answer;
    auto got = co_await reader.read_rest(answer, chunk.data(), chunk.size());
    if (!got) {
      ending.upstream_failed = true;
      ending.failure = got.error().message;
    }
    watch_.stop();
    if (watch_.client_left()) {
      gw_.pool_.finish(pick_, false, {}, Clock::now());
      ctx_.status = 499;
      co_return Outcome::answered;
    }
    if (ending.upstream_failed) {
      const Outcome outcome = co_await fail_after_sending("body", ending.failure);
      co_return outcome;
    }
    if (status == 200) ctx_.tokens.on_answer(answer);
    if (ex_.sse_started()) {
      // A stream retried here after its header reached the client, answered without one: its answer (an
      // error, as a rule) becomes the stream's last event.
      ctx_.status = 200;
      http::SseEvent last;
      last.data = std::move(answer);
      const bool sent = co_await ex_.sse_raw(event_text(last));
      if (sent) co_await ex_.sse_end();
      co_return std::nullopt;
    }
    ctx_.status = status;
    // The answer's header lines, in the request's no longer needed ones.
    std::string& lines = out_.upstream_lines;
    lines.clear();
    lines.append("Content-Type: ");
    if (content_type.empty())
      lines.append("application/octet-stream");
    else
      lines.append(content_type);
    lines.append("\r\n");
    pass_headers_back(reader, false, [&](std::string_view name, std::string_view value) {
      lines.append(name).append(": ").append(value).append("\r\n");
    });
    co_await ex_.respond_raw(status, lines, answer);
    co_return std::nullopt;
  }

  // The answer is passed on: the pool, the metrics, and the connection for the next request.
  void record(const http::ResponseReader& reader, int status, const Ending& ending) {
    // A connection that answered HEAD is not reused: a server that sent a body with it anyway would leave
    // that body to be read as the next request's answer.
    const bool clean = reader.done() && !out_.head;
    if (ending.upstream_failed)
      gw_.pool_.finish_unproven(pick_, ending.failure, Clock::now());
    else
      gw_.pool_.finish(pick_, status == 502 || status == 504, "answered " + std::to_string(status),
                       Clock::now());
    gw_.upstream_latency_[pick_.index].observe(seconds_since(upstream_start_));
    gw_.count_upstream_answer(worker_, pick_.index, ctx_.upstream, status);
    if (ending.upstream_failed) count_error("mid_stream");
    if (clean) gw_.give_back(worker_, pick_.index, std::move(client_));
  }

  Gateway& gw_;
  Worker& worker_;
  http::Exchange& ex_;
  Context& ctx_;
  Outbound& out_;
  const Pick& pick_;
  const Clock::time_point upstream_start_ = Clock::now();
  std::unique_ptr<http::Client> client_;
  // A client that leaves while the upstream thinks cancels the upstream request.
  UpstreamWatch watch_;
};

void Gateway::count_upstream_answer(Worker& worker, std::size_t index, const std::string& upstream,
                                    int status) {
  const int key = static_cast<int>(index) << 16 | (status & 0xffff);
  auto counter = worker.upstream_counters.find(key);
  if (counter == worker.upstream_counters.end()) {
    const monitor::Labels labels{{"upstream", upstream}, {"status", std::to_string(status)}};
    counter = worker.upstream_counters
                  .emplace(key, registry_.counter("clawbot_gateway_upstream_requests_total",
                                                  "Requests answered by each upstream", labels))
                  .first;
  }
  counter->second.add();
}

asio::awaitable<void> Gateway::forward(Worker& worker, http::Exchange& ex, Context& ctx) {
  Outbound out;
  if (auto refusal = prepare_forward(ex, ctx, out)) {
    co_await reply_error(ex, ctx, refusal->error, std::move(refusal->headers));
    co_return;
  }
  auto attempt = [&](const Pick& pick) -> asio::awaitable<Outcome> {
    Attempt one(*this, worker, ex, ctx, out, pick);
    co_return co_await one.run();
  };
  if (co_await try_upstreams(ex, ctx, out, config_.affinity ? out.facts.affinity : 0, attempt)) co_return;
  const Error error{
      ErrorKind::bad_gateway,
      "no upstream answered after " + std::to_string(out.failures) + " tries; last: " + out.last_failure,
      {},
      {}};
  Headers none;
  co_await answer_error(ex, ctx, error, std::move(none));
}

// The client's stream starts with the upstream's first event (or keep-alive). Until an event that carries
// something (content, a finish, an error other than "unavailable") the client has nothing of this answer:
// the role-only first chunk is held back, and a stream that ends there (the node's "shutting down" error
// event, or a dropped connection) may be retried on another upstream, the client seeing one answer only.
asio::awaitable<Gateway::Relay> Gateway::relay_stream(http::Exchange& ex, Context& ctx,
                                                      http::ResponseReader& reader, bool drop_usage_chunk,
                                                      const UpstreamWatch& watch, Headers headers,
                                                      std::string& failure) {
  http::SseParser parser(64u << 20);
  std::vector<http::SseEvent> events;
  std::array<char, 16384> chunk;  // (not zeroed: read_some fills what it returns)
  std::size_t comments = 0;
  // Chunks held back until the first that carries something; a few at most, then they go as they are.
  constexpr std::size_t max_held = 8;
  std::vector<http::SseEvent> held;
  bool content_sent = false;
  auto start = [&]() -> asio::awaitable<bool> {
    if (ex.sse_started()) co_return true;
    co_return co_await ex.sse_start(std::move(headers));
  };
  auto send_held = [&]() -> asio::awaitable<bool> {
    content_sent = true;
    if (!co_await start()) co_return false;
    for (const auto& event : held)
      if (!co_await ex.sse_raw(event_text(event))) co_return false;
    held.clear();
    co_return true;
  };
  for (;;) {
    auto got = co_await reader.read_some(chunk.data(), chunk.size());
    if (!got && watch.client_left()) co_return Relay::client_left;  // the watch cancelled the upstream read
    if (!got) {
      failure = got.error().message;
      break;
    }
    const bool ended = *got == 0;
    if (ended) {
      parser.finish(events);
    } else if (!parser.feed(std::string_view(chunk.data(), *got), events)) {
      failure = "the upstream sent an event line longer than 64 MiB";
      break;
    }
    // Keep-alives while the upstream prefills: the client's own timeouts must see them too.
    if (parser.comments() != comments) {
      comments = parser.comments();
      // (Two statements: GCC 12 mishandles co_await on both sides of ||.)
      if (!co_await start()) co_return Relay::client_left;
      if (!co_await ex.sse_comment("keep-alive")) co_return Relay::client_left;
    }
    for (auto& event : events) {
      if (!content_sent) {
        const StreamEvent kind = classify_stream_event(event.data);
        if (kind == StreamEvent::unavailable) {
          failure = "its stream ended before any content with: " + event.data.substr(0, 300);
          co_return Relay::unavailable_before_content;
        }
        if (kind == StreamEvent::preamble && held.size() < max_held) {
          held.push_back(std::move(event));
          continue;
        }
        if (!co_await send_held()) co_return Relay::client_left;
      }
      // Tokens are counted as they pass: a client that leaves before the usage chunk is charged what it got.
      if (ctx.tokens.on_event(event.data) && drop_usage_chunk) continue;  // usage it did not ask for
      if (!co_await start()) co_return Relay::client_left;
      if (!co_await ex.sse_raw(event_text(event))) co_return Relay::client_left;
    }
    events.clear();
    if (ended) {
      if (!co_await send_held()) co_return Relay::client_left;
      co_await ex.sse_end();
      co_return Relay::complete;
    }
  }
  if (!content_sent) co_return Relay::failed_before_content;
  // Mid-stream: the client has part of an answer. Say so in the stream, never end it silently.
  const Error error = failed_mid_stream(ctx.upstream, failure);
  if (co_await ex.sse_data(to_json(error).dump())) co_await ex.sse_end();
  co_return Relay::failed_mid_stream;
}

asio::awaitable<Gateway::Relay> Gateway::relay_ndjson(http::Exchange& ex, Context& ctx,
                                                      http::ResponseReader& reader,
                                                      const UpstreamWatch& watch, Headers headers,
                                                      std::string& failure) {
  constexpr std::size_t max_line = 64u << 20;
  std::array<char, 16384> chunk;  // (not zeroed: read_some fills what it returns)
  std::string pending;            // what came after the last whole line
  bool started = false;
  // Whole lines go on as they come, counted as they pass: a client that leaves before the last line (its
  // counts) is charged what it got.
  auto pass_lines = [&](std::string_view lines) -> asio::awaitable<bool> {
    for (std::size_t at = 0; at < lines.size();) {
      std::size_t end = lines.find('\n', at);
      if (end == std::string_view::npos) end = lines.size();
      ctx.tokens.on_event(lines.substr(at, end - at));
      at = end + 1;
    }
    if (!started) {
      started = true;
      if (!co_await ex.ndjson_start(std::move(headers))) co_return false;
    }
    co_return co_await ex.ndjson_line(lines.substr(0, lines.size() - 1));  // (it adds the last newline)
  };
  for (;;) {
    auto got = co_await reader.read_some(chunk.data(), chunk.size());
    if (!got && watch.client_left()) co_return Relay::client_left;
    if (!got) {
      failure = got.error().message;
      break;
    }
    if (*got == 0) {  // the end; a last line without its newline is still a line
      if (!pending.empty()) {
        pending += '\n';
        if (!co_await pass_lines(pending)) co_return Relay::client_left;
      }
      if (!started && !co_await ex.ndjson_start(std::move(headers))) co_return Relay::client_left;
      co_await ex.sse_end();
      co_return Relay::complete;
    }
    pending.append(chunk.data(), *got);
    const std::size_t last_newline = pending.rfind('\n');
    if (last_newline == std::string::npos) {
      if (pending.size() > max_line) {
        failure = "the upstream sent a line longer than 64 MiB";
        break;
      }
      continue;
    }
    if (!co_await pass_lines(std::string_view(pending).substr(0, last_newline + 1)))
      co_return Relay::client_left;
    pending.erase(0, last_newline + 1);
  }
  if (!started) co_return Relay::failed_before_content;
  // Mid-stream: the client has part of an answer. Say so in the stream (Ollama's error line), never end it
  // silently.
  const Error error = failed_mid_stream(ctx.upstream, failure);
  if (co_await ex.ndjson_line(error_body(ex.path(), error).dump())) co_await ex.sse_end();
  co_return Relay::failed_mid_stream;
}

}  // namespace clawbot::gateway::detail
