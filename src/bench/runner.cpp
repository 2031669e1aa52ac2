#include "bench/runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <deque>
#include <exception>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/use_tuple.h"

namespace clawbot::bench {
namespace {

namespace asio = boost::asio;
using json = nlohmann::json;

void rethrow(std::exception_ptr e) {
  if (e) std::rethrow_exception(e);
}

json user_turn(std::string text) {
  json messages = json::array();
  messages.push_back({{"role", "user"}, {"content", std::move(text)}});
  return messages;
}

class Runner {
 public:
  Runner(asio::io_context& io, const RunPlan& plan, Progress& progress)
      : io_(io),
        plan_(plan),
        progress_(progress),
        started_at_(std::chrono::steady_clock::now()),
        wake_(io, asio::steady_timer::time_point::max()),
        tick_(io),
        signals_(io, SIGINT, SIGTERM) {
    http::ClientOptions options;
    options.read_timeout = std::chrono::milliseconds(static_cast<long long>(plan.timeout_s * 1000));
    if (!plan.api_key.empty()) options.headers.emplace_back("Authorization", "Bearer " + plan.api_key);
    client_options_ = std::move(options);
    if (plan.conversations) {
      const std::string system =
          plan.prompt.system_prompt_words > 0
              ? make_prompt(derive_seed(plan.seed, stream_system, 0), plan.prompt.system_prompt_words)
              : std::string();
      for (int k = 0; k < plan.conversation_count; ++k) {
        conversations_.emplace_back(plan.seed, k, system, plan.prompt.prompt_words);
        ready_.push_back(k);
      }
    }
  }

  RunResult run() {
    signals_.async_wait([this](const boost::system::error_code& ec, int) {
      if (ec) return;
      boost::system::error_code ignored;
      signals_.clear(ignored);  // a second Ctrl-C ends the process the usual way
      result_.interrupted = true;
      for (auto* client : clients_) client->cancel();
      wake_.cancel();
    });
    workers_left_ = plan_.concurrency;
    for (int i = 0; i < plan_.concurrency; ++i) {
      if (plan_.conversations) {
        asio::co_spawn(io_, conversation_worker(), rethrow);
      } else {
        asio::co_spawn(io_, independent_worker(), rethrow);
      }
    }
    if (progress_.enabled()) asio::co_spawn(io_, ticker(), rethrow);
    io_.run();
    result_.duration_s = end_s_;
    result_.prompt = plan_.prompt;
    return std::move(result_);
  }

 private:
  double now() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
  }

  bool may_start() const {
    if (result_.interrupted) return false;
    if (plan_.requests > 0 && started_ >= plan_.requests) return false;
    if (plan_.duration_s > 0 && now() >= plan_.duration_s) return false;
    return true;
  }

  void store(RequestRecord record) {
    end_s_ = std::max(end_s_, now());
    if (result_.interrupted && !record.ok) return;  // cut short by Ctrl-C: not the server's failure
    record.content.clear();
    if (!record.ok) ++failed_;
    result_.records.push_back(std::move(record));
    progress_.update(result_.records.size(), failed_, now());
  }

  void worker_done() {
    wake_.cancel();
    if (--workers_left_ == 0) {
      tick_.cancel();
      signals_.cancel();
    }
  }

  asio::awaitable<RequestRecord> send(http::Client& client, const json& messages) {
    const json body = chat_request(plan_.request, messages);
    StreamMeter meter(now());
    auto answer = co_await client.post_sse("/v1/chat/completions", body);
    if (!answer) {
      meter.fail(0, answer.error().message);
      co_return meter.finish(now());
    }
    http::SseStream& stream = *answer;
    if (!stream.is_event_stream()) {
      auto type = stream.headers().find(boost::beast::http::field::content_type);
      const std::string content_type =
          type == stream.headers().end() ? std::string() : std::string(type->value());
      meter.fail(stream.status(), describe_answer(stream.status(), content_type, stream.body()));
      co_return meter.finish(now());
    }
    for (;;) {
      auto event = co_await stream.next();
      const double at = now();
      if (!event) {
        meter.fail(200, event.error().message);
        break;
      }
      if (!*event) break;  // the end of the stream (read to the end, so the connection stays open)
      meter.on_data((*event)->data, at);
    }
    co_return meter.finish(now());
  }

  asio::awaitable<void> independent_worker() {
    http::Client client(io_.get_executor(), plan_.url, client_options_);
    clients_.push_back(&client);
    while (may_start()) {
      const int index = started_++;
      const auto prompt_seed = derive_seed(plan_.seed, stream_independent, static_cast<std::uint64_t>(index));
      const json messages = user_turn(make_prompt(prompt_seed, plan_.prompt.prompt_words));
      RequestRecord record = co_await send(client, messages);
      record.index = index;
      store(std::move(record));
    }
    std::erase(clients_, &client);
    worker_done();
  }

  asio::awaitable<void> conversation_worker() {
    http::Client client(io_.get_executor(), plan_.url, client_options_);
    clients_.push_back(&client);
    while (may_start()) {
      if (ready_.empty()) {
        if (in_flight_ == 0) break;            // every conversation is over
        co_await wake_.async_wait(use_tuple);  // woken by cancel()
        continue;
      }
      // The conversation that waited longest: between two turns of one conversation come turns of all the
      // others, so with more conversations than server slots their caches are evicted and restored.
      const int k = ready_.front();
      ready_.pop_front();
      ++in_flight_;
      const int index = started_++;
      Conversation& conversation = conversations_[static_cast<std::size_t>(k)];
      const json messages = conversation.next_messages();
      RequestRecord record = co_await send(client, messages);
      --in_flight_;
      record.index = index;
      record.conversation = k;
      record.turn = conversation.turns_done() + 1;
      if (record.ok) {
        conversation.answered(record.content);
        if (conversation.turns_done() < plan_.turns) ready_.push_back(k);
      } else if (!result_.interrupted) {
        result_.skipped_turns += plan_.turns - record.turn;  // no answer to build the next turn on
      }
      store(std::move(record));
      wake_.cancel();  // a conversation may be ready again, or all may be over
    }
    std::erase(clients_, &client);
    worker_done();
  }

  asio::awaitable<void> ticker() {
    while (workers_left_ > 0) {
      progress_.update(result_.records.size(), failed_, now());
      tick_.expires_after(std::chrono::milliseconds(250));
      co_await tick_.async_wait(use_tuple);
    }
  }

  asio::io_context& io_;
  const RunPlan& plan_;
  Progress& progress_;
  std::chrono::steady_clock::time_point started_at_;
  http::ClientOptions client_options_;
  asio::steady_timer wake_;  // never expires: cancel() wakes the workers waiting for a ready conversation
  asio::steady_timer tick_;
  asio::signal_set signals_;
  std::vector<http::Client*> clients_;
  std::vector<Conversation> conversations_;
  std::deque<int> ready_;
  int started_ = 0;
  int in_flight_ = 0;
  int workers_left_ = 0;
  std::size_t failed_ = 0;
  double end_s_ = 0;
  RunResult result_;
};

}  // namespace

// ---------------------------------------------------------------- Progress

Progress::Progress(bool enabled, std::size_t total, double duration_s)
    : enabled_(enabled && isatty(STDERR_FILENO) == 1), total_(total), duration_s_(duration_s) {}

void Progress::update(std::size_t done, std::size_t failed, double elapsed_s) {
  if (!enabled_) return;
  if (drawn_ && elapsed_s - last_draw_s_ < 0.05) return;  // a few redraws a second are enough
  last_draw_s_ = elapsed_s;
  double fraction = 0;
  if (total_ > 0) fraction = static_cast<double>(done) / static_cast<double>(total_);
  if (duration_s_ > 0) fraction = std::max(fraction, elapsed_s / duration_s_);
  fraction = std::clamp(fraction, 0.0, 1.0);
  constexpr int width = 30;
  const int filled = static_cast<int>(fraction * width);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.append(static_cast<std::size_t>(width - filled), '.');
  const std::string of = total_ > 0 ? "/" + std::to_string(total_) : std::string();
  std::fprintf(stderr, "\r[%s] %zu%s done, %zu failed, %.1f s ", bar.c_str(), done, of.c_str(), failed,
               elapsed_s);
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  if (!enabled_ || !drawn_) return;
  std::fprintf(stderr, "\r\033[K");  // clear the line: the report follows
  std::fflush(stderr);
}

// ---------------------------------------------------------------- running

RunResult run_workload(const RunPlan& plan, Progress& progress) {
  asio::io_context io(1);
  Runner runner(io, plan, progress);
  RunResult result = runner.run();
  progress.finish();
  return result;
}

std::string describe_answer(int status, const std::string& content_type, const std::string& body) {
  const json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object()) {
    if (auto error = parsed.find("error"); error != parsed.end()) {
      if (error->is_object() && error->contains("message") && (*error)["message"].is_string()) {
        return (*error)["message"].get<std::string>();
      }
      if (error->is_string()) return error->get<std::string>();
    }
  }
  if (status >= 200 && status < 300) {
    return "the server answered with " +
           (content_type.empty() ? std::string("no Content-Type") : content_type) +
           " instead of an event stream (does this endpoint support \"stream\": true?)";
  }
  std::string text = body.substr(0, 300);
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text.empty() ? "HTTP " + std::to_string(status) + " with an empty body" : text;
}

}  // namespace clawbot::bench
