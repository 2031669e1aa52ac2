#include "client/doctor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>

#include "client/assistant.h"
#include "client/cli.h"
#include "client/endpoint_auto.h"
#include "common/http_client.h"
#include "common/json_read.h"

namespace clawbot::client {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Short on purpose, whatever network_timeout says: a dropped SYN should be diagnosed in seconds.
constexpr std::chrono::milliseconds kConnectTimeout{3000};
constexpr double kLatencyP99TargetMs = 200;
constexpr int kLatencyRequests = 20;
constexpr double kMemoryAlertFraction = 0.90;
constexpr int kCertificateWarnDays = 14;

struct DoctorOptions {
  ConfigSearch search;
  ClientOverrides overrides;
  bool json = false;
};

enum class Status { ok, warn, fail, skip };

std::string_view status_word(Status s) {
  switch (s) {
    case Status::ok:
      return "ok";
    case Status::warn:
      return "warn";
    case Status::fail:
      return "FAIL";
    case Status::skip:
      return "skip";
  }
  return "?";
}

struct Check {
  std::string name;
  Status status = Status::ok;
  std::string detail;  // what was found
  std::string fix;     // what to do (failures and warnings)
  json data = json::object();
};

// Runs one coroutine to completion on `io` (the checks are sequential; each waits for its answer).
template <class T>
T run_sync(asio::io_context& io, asio::awaitable<T> task) {
  std::optional<T> result;
  std::exception_ptr error;
  asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, T value) {
    if (e)
      error = e;
    else
      result.emplace(std::move(value));
  });
  io.restart();
  io.run();
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

// Nearest-rank percentile of sorted values.
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

// The value of an unlabelled sample `name` in Prometheus text; nullopt when absent.
std::optional<double> metric_value(std::string_view text, std::string_view name) {
  std::istringstream lines{std::string(text)};
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.starts_with(name) || line.size() <= name.size() || line[name.size()] != ' ') continue;
    try {
      return std::stod(line.substr(name.size() + 1));
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// The server's error message from an OpenAI-style error body, else the start of the body.
std::string error_message(const std::string& body) {
  if (const auto parsed = json_read::parse(body); parsed && parsed.value->is_object()) {
    const auto err = parsed.value->find("error");
    if (err != parsed.value->end() && err->is_object()) {
      const auto m = err->find("message");
      if (m != err->end() && m->is_string()) return m->get<std::string>();
    }
  }
  return body.substr(0, 200);
}

std::string answer_message(const http::Response& r) {
  return error_message(r.body);
}

// The start of a streamed chat answer: doctor sends what `ask` would, and stops at the first token (the
// connection is closed then, and the node drops the rest).
struct FirstToken {
  int status = 0;
  std::string body;     // a refusal's body (not an event stream)
  std::string failure;  // the connection or the stream failed
  bool text = false;    // a token of text arrived
  std::string finish_reason;
  std::string model;
  double ms = 0;  // to the first token, or to the end
};

asio::awaitable<FirstToken> first_token(http::Client& client, json body) {
  FirstToken out;
  const auto sent = Clock::now();
  auto stream = co_await client.post_sse("/v1/chat/completions", body);
  if (!stream) {
    out.failure = stream.error().message;
    co_return out;
  }
  out.status = stream->status();
  if (!stream->is_event_stream()) {
    out.body = stream->body();
    out.ms = elapsed_ms(sent);
    co_return out;
  }
  for (;;) {
    auto event = co_await stream->next();
    if (!event) {
      out.failure = event.error().message;
      break;
    }
    if (!*event || (*event)->data == "[DONE]") break;
    const auto chunk = json_read::parse((*event)->data);
    if (!chunk || !chunk.value->is_object()) {
      out.failure = "an event that is not JSON: " + (*event)->data.substr(0, 120);
      break;
    }
    const json& c = *chunk.value;
    if (c.contains("error")) {
      out.failure = "the server reported an error mid-answer: " + error_message((*event)->data);
      break;
    }
    if (const auto m = c.find("model"); m != c.end() && m->is_string()) out.model = m->get<std::string>();
    const auto choices = c.find("choices");
    if (choices == c.end() || !choices->is_array() || choices->empty() || !(*choices)[0].is_object())
      continue;
    const json& choice = (*choices)[0];
    if (const auto r = choice.find("finish_reason"); r != choice.end() && r->is_string())
      out.finish_reason = r->get<std::string>();
    const auto delta = choice.find("delta");
    if (delta != choice.end() && delta->is_object()) {
      const auto content = delta->find("content");
      if (content != delta->end() && content->is_string() &&
          !content->get_ref<const std::string&>().empty()) {
        out.text = true;
        break;
      }
    }
    if (!out.finish_reason.empty()) break;
  }
  out.ms = elapsed_ms(sent);
  co_return out;
}

class Doctor {
 public:
  explicit Doctor(const DoctorOptions& options) : options_(options) {}

  std::vector<Check> run() {
    // Each step returns false when the ones after it would be meaningless.
    const std::pair<const char*, bool (Doctor::*)(Check&)> steps[] = {
        {"config", &Doctor::check_config},   {"resolve", &Doctor::check_resolve},
        {"tcp", &Doctor::check_tcp},         {"tls", &Doctor::check_tls},
        {"api_key", &Doctor::check_api_key}, {"latency", &Doctor::check_latency},
        {"models", &Doctor::check_models},   {"generate", &Doctor::check_generate},
        {"memory", &Doctor::check_memory},
    };
    std::vector<Check> checks;
    std::string stopped_by;
    for (const auto& [step_name, step] : steps) {
      Check check;
      std::string name = step_name;
      // Through a gateway the last check is its upstreams (a gateway has no memory of its own to speak of),
      // and it runs even when no model answered: it is where a down upstream shows.
      if (name == "memory" && gateway_) name = "upstreams";
      check.name = name;
      const bool after_gateway_failure =
          name == "upstreams" && (stopped_by == "models" || stopped_by == "generate");
      if (!stopped_by.empty() && !after_gateway_failure) {
        check.status = Status::skip;
        check.detail = "skipped: the " + stopped_by + " check failed";
      } else {
        bool go_on = false;
        try {
          go_on = (this->*step)(check);
        } catch (const std::exception& e) {
          check.status = Status::fail;
          check.detail = e.what();
        }
        if (!go_on && stopped_by.empty()) stopped_by = name;
      }
      if (!options_.json) print(check);
      checks.push_back(std::move(check));
    }
    return checks;
  }

  static void print(const Check& c) {
    std::cout << fmt::format("{:<5} {:<9} {}\n", status_word(c.status), c.name, c.detail);
    if (!c.fix.empty()) std::cout << fmt::format("{:<15} fix: {}\n", "", c.fix);
    std::cout.flush();
  }

  const std::string& endpoint() const noexcept { return endpoint_; }
  bool gateway() const noexcept { return gateway_; }

 private:
  std::string origin() const {
    return config_.file.empty() ? std::string("the built-in defaults") : config_.file.string();
  }

  // Where the endpoint was set, for fixes: the --endpoint flag or the file.
  std::string endpoint_origin() const {
    const auto it = config_.source.find("model_endpoint");
    if (it != config_.source.end() && it->second == "--endpoint") return "--endpoint";
    return "model_endpoint (" + origin() + ")";
  }

  bool check_config(Check& c) {
    const auto where = find_config(options_.search);
    try {
      config_ = load_client_config(options_.search, options_.overrides);
      api_key_ = config_.resolved_api_key();
    } catch (const ConfigError& e) {
      c.status = Status::fail;
      c.detail = e.what();
      c.fix =
          "correct the file (clawbot config show explains each key), or write a new one with `clawbot "
          "config init`";
      return false;
    }
    endpoint_ = config_.model_endpoint;
    while (endpoint_.ends_with('/')) endpoint_.pop_back();
    if (endpoint_.ends_with("/v1")) endpoint_.resize(endpoint_.size() - 3);
    if (where) {
      c.detail = where->path.string() + " (from " + where->reason + "), valid";
      c.data["file"] = where->path.string();
      c.data["from"] = where->reason;
    } else {
      c.detail = "no clawbot.json found: using the built-in defaults";
      c.data["file"] = nullptr;
    }
    c.detail += "; endpoint " + config_.model_endpoint;
    if (config_.source.contains("model_endpoint"))
      c.detail += " (from " + config_.source["model_endpoint"] + ")";
    c.data["endpoint"] = config_.model_endpoint;
    if (!config_.warnings.empty()) {
      c.status = Status::warn;
      c.data["warnings"] = config_.warnings;
      c.fix = config_.warnings.front();
    }
    return true;
  }

  bool check_resolve(Check& c) {
    std::string via_mdns;
    if (config_.model_endpoint == "auto") {
      // mDNS/DNS-SD first (a fresh look: doctor does not trust the cached choice), then the usual DNS check
      // of the address it gave.
      try {
        const AutoEndpoint found = resolve_auto_endpoint({.use_cache = false});
        endpoint_ = found.url;
        c.data["auto"] = found.to_json();
        via_mdns = "auto (mDNS) -> " + found.describe() + "; ";
      } catch (const ConfigError& e) {
        c.status = Status::fail;
        c.detail = e.what();
        c.data["auto"] = nullptr;
        c.fix =
            "start `clawbot serve --host 0.0.0.0` (or the gateway) on the LAN and open UDP port 5353, or set "
            "model_endpoint in " +
            origin() + " to the node's URL, e.g. http://192.168.1.100:5000";
        return false;
      }
    }
    auto url = http::parse_url(endpoint_);
    if (!url) {
      c.status = Status::fail;
      c.detail = url.error().message;
      c.fix = "set model_endpoint in " + origin() + " to an http(s)://host:port URL";
      return false;
    }
    url_ = *url;
    asio::ip::tcp::resolver resolver(io_);
    boost::system::error_code ec;
    const auto started = Clock::now();
    const auto results = resolver.resolve(url_.host, url_.port, ec);
    const double ms = elapsed_ms(started);
    if (ec) {
      c.status = Status::fail;
      c.detail = "cannot resolve '" + url_.host + "': " + ec.message();
      c.fix = "check the host name in " + endpoint_origin() +
              " and this machine's DNS, or use the node's IP address";
      return false;
    }
    std::vector<std::string> addresses;
    for (const auto& r : results) {
      addresses.push_back(r.endpoint().address().to_string());
      endpoints_.push_back(r.endpoint());
    }
    c.detail = via_mdns + fmt::format("{} -> {} ({:.1f} ms)", url_.host, fmt::join(addresses, ", "), ms);
    c.data["host"] = url_.host;
    c.data["addresses"] = addresses;
    c.data["ms"] = ms;
    return true;
  }

  static asio::awaitable<std::pair<boost::system::error_code, asio::ip::tcp::endpoint>> connect(
      std::vector<asio::ip::tcp::endpoint> endpoints) {
    beast::tcp_stream stream(co_await asio::this_coro::executor);
    stream.expires_after(kConnectTimeout);
    auto [ec, reached] = co_await stream.async_connect(endpoints, asio::as_tuple(asio::use_awaitable));
    co_return std::pair{ec, reached};
  }

  bool check_tcp(Check& c) {
    const auto started = Clock::now();
    const auto [ec, reached] = run_sync(io_, connect(endpoints_));
    const double ms = elapsed_ms(started);
    const std::string at = url_.host + ":" + url_.port;
    c.data["ms"] = ms;
    if (!ec) {
      c.detail =
          fmt::format("connected to {} port {} in {:.1f} ms", reached.address().to_string(), url_.port, ms);
      return true;
    }
    c.status = Status::fail;
    if (ec == beast::error::timeout || ec == asio::error::timed_out) {
      c.data["error"] = "timed_out";
      c.detail = fmt::format("no answer from {} within {} ms (timed out)", at, kConnectTimeout.count());
      c.fix = "timed out usually means a firewall dropping packets: open TCP port " + url_.port +
              " on the node (or check that the address is the node's)";
    } else if (ec == asio::error::connection_refused) {
      c.data["error"] = "refused";
      c.detail = "connection refused by " + at + ": the host is up but nothing listens on port " + url_.port;
      c.fix = "start `clawbot serve --host 0.0.0.0 --port " + url_.port +
              "` on the node, or correct the port in " + endpoint_origin();
    } else if (ec == asio::error::host_unreachable || ec == asio::error::network_unreachable) {
      c.data["error"] = "unreachable";
      c.detail = "no route to " + at + " (" + ec.message() + ")";
      c.fix = "this machine and the node are not on the same network: check the address, Wi-Fi and cabling";
    } else {
      c.data["error"] = ec.message();
      c.detail = "cannot connect to " + at + ": " + ec.message();
      c.fix = "check the address and port in " + endpoint_origin();
    }
    return false;
  }

  bool check_tls(Check& c) {
    if (!url_.is_https()) {
      c.detail = "not used (http:// endpoint; traffic on the LAN is plain text)";
      c.data["used"] = false;
      return true;
    }
    c.data["used"] = true;
    http::ClientOptions options;
    options.connect_timeout = kConnectTimeout;
    options.read_timeout = config_.network_timeout;
    options.tls_ca_file = config_.tls_ca_file;
    auto facts = run_sync(io_, http::probe_tls(io_.get_executor(), url_, options));
    if (!facts) {
      c.status = Status::fail;
      c.detail = "handshake failed: " + facts.error().message;
      c.data["stage"] = "handshake";
      c.fix = "check that the node serves TLS on this port (clawbot serve --tls-cert --tls-key)";
      return false;
    }
    c.data["protocol"] = facts->protocol;
    c.data["verified"] = facts->verified;
    const std::string trust = config_.tls_ca_file.empty() ? "the system's CAs" : config_.tls_ca_file;
    if (!facts->verified) {
      c.status = Status::fail;
      c.data["verify_error"] = facts->verify_error_text;
      c.data["verify_error_code"] = facts->verify_error;
      // describe_verify_error's text is "problem — what to do": split it into the two halves.
      const std::string problem = facts->problem;
      const auto dash = problem.find(" — ");
      c.detail = problem.substr(0, dash) + " (checked against " + trust + ")";
      c.fix = dash == std::string::npos ? std::string("check tls_ca_file in ") + origin()
                                        : problem.substr(dash + std::string_view(" — ").size());
      return false;
    }
    if (facts->chain.empty()) {
      c.detail = facts->protocol + ", verified";
      return true;
    }
    const auto& leaf = facts->chain.front();
    const auto left =
        std::chrono::duration_cast<std::chrono::hours>(leaf.not_after - std::chrono::system_clock::now());
    const auto days = left.count() / 24;
    c.data["subject"] = leaf.subject;
    c.data["not_after"] = tls::format_utc(leaf.not_after);
    c.data["days_left"] = days;
    c.detail =
        fmt::format("{}, certificate '{}' verified against {}, name matches {}, expires {} ({} days)",
                    facts->protocol, leaf.subject, trust, url_.host, tls::format_utc(leaf.not_after), days);
    if (days < kCertificateWarnDays) {
      c.status = Status::warn;
      c.fix = fmt::format("the certificate expires in {} days: renew it on the node", days);
    }
    return true;
  }

  // Every HTTP check shares one keep-alive connection, as the assistant would.
  http::Client& client() {
    if (!client_) {
      http::ClientOptions options;
      options.connect_timeout = kConnectTimeout;
      options.read_timeout = config_.network_timeout;
      options.tls_ca_file = config_.tls_ca_file;
      if (!api_key_.empty()) options.headers.emplace_back("Authorization", "Bearer " + api_key_);
      options.headers.emplace_back("User-Agent", "clawbot-doctor");
      client_ = std::make_unique<http::Client>(io_.get_executor(), url_, std::move(options));
    }
    return *client_;
  }

  http::Result<http::Response> get(std::string_view target) { return run_sync(io_, client().get(target)); }

  std::string key_origin() const {
    if (!config_.api_key_env.empty()) return "$" + config_.api_key_env + " (api_key_env)";
    return "api_key in " + origin();
  }

  bool check_api_key(Check& c) {
    auto answer = get("/v1/models");
    c.data["key_sent"] = !api_key_.empty();
    if (!answer) {
      c.status = Status::fail;
      c.detail = "GET /v1/models failed: " + answer.error().message;
      return false;
    }
    c.data["status"] = answer->status;
    if (answer->status == 401) {
      c.status = Status::fail;
      if (api_key_.empty()) {
        c.detail = "401 Unauthorized: the endpoint wants an API key and none is configured";
        c.fix = "set api_key_env (the variable holding the key) or api_key in " + origin();
      } else {
        c.detail = "401 Unauthorized: the endpoint rejected the key from " + key_origin();
        c.fix = "the key is wrong or revoked: compare it with the keys the node or gateway accepts";
      }
      return false;
    }
    if (answer->status == 403) {
      c.status = Status::fail;
      c.detail = "403 Forbidden: the key was recognised but is not allowed (" + answer_message(*answer) + ")";
      c.fix = "the gateway forbids this key or this machine's address: ask its administrator to allow them";
      return false;
    }
    if (!answer->ok()) {
      c.status = Status::fail;
      c.detail = fmt::format("GET /v1/models answered {}: {}", answer->status, answer_message(*answer));
      c.fix = answer->status == 404 ? "is model_endpoint (" + endpoint_ + ") the server's base URL?"
                                    : "check the node's log";
      return false;
    }
    auto parsed = json_read::parse(answer->body);
    if (!parsed) {
      c.status = Status::fail;
      c.detail = "GET /v1/models is not JSON: " + parsed.failure.message;
      c.fix = "is model_endpoint (" + endpoint_ + ") a clawbot node or gateway?";
      return false;
    }
    models_ = std::move(*parsed.value);
    c.detail = api_key_.empty() ? "no key configured, and the endpoint needs none"
                                : "the key from " + key_origin() + " is accepted";
    return true;
  }

  bool check_latency(Check& c) {
    std::vector<double> ms;
    std::string target = "/health";
    for (int i = 0; i < kLatencyRequests; ++i) {
      const auto started = Clock::now();
      auto answer = get(target);
      if (answer && answer->status == 404 && target == "/health") {  // a server without /health
        target = "/v1/models";
        --i;
        continue;
      }
      if (answer && target == "/health" && health_.is_null()) {
        if (auto body = json_read::parse(answer->body); body && body.value->is_object()) {
          health_ = std::move(*body.value);
          const auto role = health_.find("role");
          gateway_ = role != health_.end() && role->is_string() && *role == "gateway";
        }
      }
      // A gateway with no upstream serving answers 503: it answered, and the upstreams check says why.
      const bool answered = answer && (answer->ok() || (gateway_ && answer->status == 503));
      if (!answered) {
        c.status = Status::fail;
        c.detail = fmt::format("request {} of {} to {} failed: {}", i + 1, kLatencyRequests, target,
                               answer ? std::to_string(answer->status) : answer.error().message);
        c.fix = "the node answered once and then not: check its log and the network's stability";
        return false;
      }
      ms.push_back(elapsed_ms(started));
    }
    std::sort(ms.begin(), ms.end());
    const double p50 = percentile(ms, 0.50);
    const double p99 = percentile(ms, 0.99);
    c.data = {{"requests", ms.size()}, {"target", target},    {"p50_ms", p50},
              {"p99_ms", p99},         {"max_ms", ms.back()}, {"p99_target_ms", kLatencyP99TargetMs}};
    c.data["role"] = gateway_ ? "gateway" : "node";
    c.detail = fmt::format("{} x GET {}{}: P50 {:.1f} ms, P99 {:.1f} ms (target P99 < {:.0f} ms)", ms.size(),
                           target, gateway_ ? " (a gateway)" : "", p50, p99, kLatencyP99TargetMs);
    if (p99 > kLatencyP99TargetMs) {
      c.status = Status::warn;
      c.fix = "slow round trips: prefer a wired link or 5 GHz Wi-Fi near the node, and check the node's load";
    }
    return true;
  }

  bool check_models(Check& c) {
    std::vector<std::string> ids;
    if (models_.is_object() && models_.contains("data") && models_["data"].is_array())
      for (const auto& m : models_["data"])
        if (m.contains("id") && m["id"].is_string()) ids.push_back(m["id"].get<std::string>());
    c.data["models"] = ids;
    if (ids.empty()) {
      c.status = Status::fail;
      c.detail = gateway_ ? "the gateway lists no models: no upstream is serving (see upstreams)"
                          : "the endpoint lists no models";
      c.fix = gateway_ ? "start the gateway's nodes, or check the addresses in its gateway.json"
                       : "start the node with a model (clawbot serve --model FILE)";
      return false;
    }
    if (!config_.model.empty() && std::find(ids.begin(), ids.end(), config_.model) == ids.end()) {
      c.status = Status::fail;
      c.detail =
          fmt::format("model '{}' is not offered; the endpoint has: {}", config_.model, fmt::join(ids, ", "));
      c.fix = "set model (" + origin() + ") to one of those, or leave it empty for the first";
      return false;
    }
    model_ = config_.model.empty() ? ids.front() : config_.model;
    c.detail = fmt::format("{} model{}: {}; using {}", ids.size(), ids.size() == 1 ? "" : "s",
                           fmt::join(ids, ", "), model_);
    return true;
  }

  // The request `clawbot ask Hello` would send (the same body: streamed, max_tokens as ask computes it from
  // the config and the node's context, the config's temperature and system prompt), stopped at its first
  // token.
  bool check_generate(Check& c) {
    ChatRequest request;
    if (!config_.system_prompt.empty()) request.messages.push_back({"system", config_.system_prompt});
    request.messages.push_back({"user", "Hello"});  // the model as ask names it: the config's, or none
    const auto model = model_from_list(models_, model_);
    const std::int64_t context =
        config_.context_length > 0 ? config_.context_length : (model ? model->context_length : 0);
    const json body = chat_request_body(config_, request, context);
    const auto max_tokens = body["max_tokens"].get<std::int64_t>();
    c.data = {{"max_tokens", max_tokens}, {"context", context}, {"temperature", body["temperature"]}};
    const FirstToken answer = run_sync(io_, first_token(client(), body));
    c.data["ms"] = answer.ms;
    const std::string shape = fmt::format("max_tokens {}, temperature {}, streamed, as ask sends it",
                                          max_tokens, body["temperature"].dump());
    if (!answer.failure.empty()) {
      c.status = Status::fail;
      c.detail = "a chat request as ask sends it failed: " + answer.failure;
      c.fix =
          "the node may be overloaded or stuck: check its log (a longer network_timeout helps a busy node)";
      return false;
    }
    if (answer.status < 200 || answer.status >= 300) {
      c.status = Status::fail;
      c.detail = fmt::format("the chat request ask would send ({}) answered {}: {}", shape, answer.status,
                             error_message(answer.body));
      c.fix = answer.status == 400 ? "correct the setting it names in " + origin() +
                                         " (clawbot config show lists them), or override it with a flag"
                                   : "check the node's log";
      return false;
    }
    c.data["first_token"] = answer.text;
    c.detail = answer.text ? fmt::format("first token from {} in {:.0f} ms ({})", model_, answer.ms, shape)
                           : fmt::format("{} answered with no text (finish_reason {}) in {:.0f} ms ({})",
                                         model_, answer.finish_reason.empty() ? "none" : answer.finish_reason,
                                         answer.ms, shape);
    if (context > 0 && config_.max_tokens > context)
      c.detail += fmt::format(
          "; max_tokens {} ({}) is more than the {}-token context: requests ask for what "
          "the context leaves",
          config_.max_tokens,
          config_.source.contains("max_tokens") ? config_.source.at("max_tokens")
                                                : std::string("the default"),
          context);
    return true;
  }

  static std::string memory_text(double used, double total) {
    constexpr double gib = 1024.0 * 1024.0 * 1024.0;
    return fmt::format("{:.1f} of {:.1f} GiB in use ({:.0f}%)", used / gib, total / gib, used / total * 100);
  }

  bool check_memory(Check& c) {
    if (gateway_) return check_upstreams(c);
    auto answer = get("/metrics");
    if (!answer || !answer->ok()) {
      c.status = Status::warn;
      c.detail = "no /metrics from the node (" +
                 (answer ? std::to_string(answer->status) : answer.error().message) + ")";
      c.fix = "is model_endpoint a clawbot node? Another server may not expose /metrics";
      return true;
    }
    const auto total = metric_value(answer->body, "clawbot_system_memory_total_bytes");
    const auto used = metric_value(answer->body, "clawbot_system_memory_used_bytes");
    const auto rss = metric_value(answer->body, "process_resident_memory_bytes");
    if (!total || !used || *total <= 0) {
      c.status = Status::warn;
      c.detail = "the node's /metrics has no clawbot_system_memory_* gauges (an older clawbot?)";
      c.fix = "update clawbot on the node";
      return true;
    }
    const double fraction = *used / *total;
    constexpr double gib = 1024.0 * 1024.0 * 1024.0;
    c.data = {{"used_bytes", *used},
              {"total_bytes", *total},
              {"fraction", fraction},
              {"alert_fraction", kMemoryAlertFraction}};
    if (rss) c.data["server_rss_bytes"] = *rss;
    c.detail = fmt::format("node memory {:.1f} of {:.1f} GiB in use ({:.0f}%, alert at {:.0f}%)", *used / gib,
                           *total / gib, fraction * 100, kMemoryAlertFraction * 100);
    if (rss) c.detail += fmt::format("; clawbot serve holds {:.2f} GiB", *rss / gib);
    if (fraction >= kMemoryAlertFraction) {
      c.status = Status::fail;
      c.fix =
          "the node is close to swapping: use a smaller model or --ctx/--parallel, or stop other programs";
    }
    return true;
  }

  // Through a gateway: its own state and each upstream's, from its GET /health (which shows upstreams only
  // to a request with a valid key).
  bool check_upstreams(Check& c) {
    const auto text = [](const json& object, const char* key) {
      const auto it = object.find(key);
      return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    const std::string status = text(health_, "status");
    c.data["gateway_status"] = status;
    if (const auto queue = health_.find("queue"); queue != health_.end()) c.data["queue"] = *queue;
    const auto upstreams = health_.find("upstreams");
    if (upstreams == health_.end() || !upstreams->is_array()) {
      c.status = Status::warn;
      c.detail = "the gateway says \"" + status +
                 "\"; its upstreams (state, models, last error) are shown only with a valid API key";
      c.fix = api_key_.empty() ? "set api_key_env (or api_key) in " + origin() +
                                     " to a key of the gateway (clawbot gateway keys create) to see them"
                               : "the gateway accepted the key from " + key_origin() +
                                     " but showed no upstreams (an older gateway?)";
      return true;
    }
    std::vector<std::string> lines;
    std::vector<std::string> down;
    std::size_t serving = 0, primaries = 0, primaries_serving = 0;
    std::set<std::string> primary_models;
    std::vector<std::pair<std::string, std::set<std::string>>> standbys;  // name, models; a down one: none
    json list = json::array();
    constexpr std::string_view indent = "                ";
    for (const auto& u : *upstreams) {
      if (!u.is_object()) continue;
      const std::string name = text(u, "name");
      const std::string state = text(u, "state");
      const bool standby = u.value("standby", false);
      const bool is_serving = u.value("serving", false);
      serving += is_serving ? 1 : 0;
      if (!standby) ++primaries, primaries_serving += is_serving ? 1 : 0;
      std::string line = fmt::format("{} ({}): {}{}", name, text(u, "url"), state.empty() ? "?" : state,
                                     standby ? ", standby" : "");
      json entry = {{"name", name}, {"state", state}, {"serving", is_serving}, {"standby", standby}};
      if (const auto n = u.find("in_flight"); n != u.end() && n->is_number_integer())
        line += fmt::format(", {} in flight", n->get<std::int64_t>()), entry["in_flight"] = *n;
      if (const auto m = u.find("models"); m != u.end() && m->is_array() && !m->empty()) {
        std::vector<std::string> names;
        for (const auto& id : *m)
          if (id.is_string()) names.push_back(id.get<std::string>());
        line += fmt::format(", models {}", fmt::join(names, ", "));
        entry["models"] = names;
        if (!standby && is_serving) primary_models.insert(names.begin(), names.end());
      }
      if (standby) {
        std::set<std::string> models;
        if (const auto m = u.find("models"); state == "up" && m != u.end() && m->is_array())
          for (const auto& id : *m)
            if (id.is_string()) models.insert(id.get<std::string>());
        standbys.emplace_back(name, std::move(models));
      }
      if (const auto mem = u.find("memory"); mem != u.end() && mem->is_object()) {
        const auto used = mem->find("used_bytes");
        const auto total = mem->find("total_bytes");
        if (used != mem->end() && total != mem->end() && used->is_number() && total->is_number() &&
            total->get<double>() > 0) {
          line += ", memory " + memory_text(used->get<double>(), total->get<double>());
          entry["memory"] = *mem;
        }
      }
      if (const std::string error = text(u, "last_error"); !error.empty())
        line += "; last error: " + error, entry["last_error"] = error;
      if (!is_serving && !standby) down.push_back(name);
      lines.push_back(std::move(line));
      list.push_back(std::move(entry));
    }
    c.data["upstreams"] = list;
    c.detail = fmt::format("gateway {}, {} of {} upstream{} serving", status.empty() ? "?" : status, serving,
                           lines.size(), lines.size() == 1 ? "" : "s");
    if (const auto queue = health_.find("queue"); queue != health_.end() && queue->is_number_integer())
      c.detail += fmt::format(", {} queued", queue->get<std::int64_t>());
    for (const auto& line : lines) c.detail += "\n" + std::string(indent) + line;
    if (serving == 0) {
      c.status = Status::fail;
      c.fix =
          "no upstream can take a request: start the nodes named above, or correct their URLs in the "
          "gateway's gateway.json";
    } else if (primaries_serving < primaries) {
      c.status = Status::warn;
      c.fix = fmt::format("{} {} not serving: start {} or check {} log (requests go to the others meanwhile)",
                          fmt::join(down, ", "), down.size() == 1 ? "is" : "are",
                          down.size() == 1 ? "it" : "them", down.size() == 1 ? "its" : "their");
    }
    // A standby that is down, or lacks a model the primaries serve, cannot take over: it is stale.
    for (const auto& [name, models] : standbys) {
      std::vector<std::string> missing;
      for (const auto& model : primary_models)
        if (!models.contains(model)) missing.push_back(model);
      if (missing.empty()) continue;
      if (c.status == Status::ok) c.status = Status::warn;
      c.fix +=
          std::string(c.fix.empty() ? "" : "; ") +
          fmt::format(
              "standby {} is stale: it {} {} that the primaries serve (clawbot standby sync, then "
              "clawbot standby check)",
              name, models.empty() ? "is down or serves nothing, not" : "lacks", fmt::join(missing, ", "));
    }
    return true;
  }

  const DoctorOptions& options_;
  ClientConfig config_;
  std::string api_key_;
  std::string endpoint_;
  http::Url url_;
  asio::io_context io_{1};
  std::vector<asio::ip::tcp::endpoint> endpoints_;
  std::unique_ptr<http::Client> client_;
  json models_;
  std::string model_;
  json health_;           // the first GET /health answer (null when the endpoint has none)
  bool gateway_ = false;  // its /health says "role": "gateway"
};

int run_doctor(const DoctorOptions& options) {
  Doctor doctor(options);
  const std::vector<Check> checks = doctor.run();
  std::vector<std::string> failed;
  std::vector<std::string> skipped;
  int warnings = 0;
  for (const auto& c : checks) {
    if (c.status == Status::fail) failed.push_back(c.name);
    if (c.status == Status::skip) skipped.push_back(c.name);
    if (c.status == Status::warn) ++warnings;
  }
  const bool healthy = failed.empty();
  if (options.json) {
    json out = {{"healthy", healthy},
                {"endpoint", doctor.endpoint()},
                {"role", doctor.gateway() ? "gateway" : "node"},
                {"checks", json::array()}};
    for (const auto& c : checks) {
      json entry = {{"name", c.name},
                    {"status", status_word(c.status) == "FAIL" ? "fail" : status_word(c.status)},
                    {"detail", c.detail}};
      if (!c.fix.empty()) entry["fix"] = c.fix;
      if (!c.data.empty()) entry["data"] = c.data;
      out["checks"].push_back(std::move(entry));
    }
    out["skipped"] = skipped;
    std::cout << out.dump(2) << "\n";
  } else if (healthy) {
    std::cout << (warnings ? fmt::format("healthy, with {} warning{}\n", warnings, warnings == 1 ? "" : "s")
                           : std::string("healthy\n"));
  } else {
    std::cout << fmt::format("not healthy: {} failed", fmt::join(failed, ", "));
    if (!skipped.empty()) std::cout << fmt::format("; skipped: {}", fmt::join(skipped, ", "));
    std::cout << "\n";
  }
  return healthy ? 0 : 1;
}

}  // namespace

std::function<std::optional<int>()> add_doctor_command(CLI::App& app) {
  auto options = std::make_shared<DoctorOptions>();
  auto* cmd = app.add_subcommand(
      "doctor",
      "Check the way to the node step by step (config, DNS, TCP, TLS, key, latency, model, a request as ask "
      "sends it, memory; through a gateway, each upstream)");
  add_client_flags(*cmd, options->search, options->overrides);
  cmd->add_flag("--json", options->json, "Print one JSON object with each check's status");
  return [=]() -> std::optional<int> {
    if (!cmd->parsed()) return std::nullopt;
    return run_doctor(*options);
  };
}

}  // namespace clawbot::client
