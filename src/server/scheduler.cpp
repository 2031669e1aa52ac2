#include "server/scheduler.h"

#include <chrono>

#include <spdlog/spdlog.h>

namespace clawbot::server {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Hands an event to the HTTP side; waits while the channel is full (a slow client slows its generation).
// Returns false when the receiver is gone.
bool deliver(GenerationJob& job, GenerationEvent event) {
  for (;;) {
    if (!job.events->is_open()) return false;
    if (job.events->try_send(boost::system::error_code{}, event)) return true;
    if (job.cancelled->load()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

StopMatcher::Result StopMatcher::push(std::string_view text) {
  held_.append(text);
  Result result;
  size_t cut = std::string::npos;
  for (const auto& s : stops_) {
    const size_t at = held_.find(s);
    if (at != std::string::npos && at < cut) cut = at;
  }
  if (cut != std::string::npos) {
    result.emit = held_.substr(0, cut);
    result.stopped = true;
    held_.clear();
    return result;
  }
  // Hold back the longest tail that is the start of a stop string.
  size_t keep = 0;
  for (const auto& s : stops_) {
    for (size_t len = std::min(s.size() - 1, held_.size()); len > keep; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  result.emit = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return result;
}

std::string StopMatcher::flush() {
  return std::exchange(held_, {});
}

Scheduler::Scheduler(const engine::Model& model, engine::Context& context)
    : model_(model), context_(context), tokenizer_(model), thread_([this] { run(); }) {}

Scheduler::~Scheduler() {
  stop();
}

void Scheduler::submit(GenerationJob job) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    for (auto& job : queue_) job.cancelled->store(true);
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::size_t Scheduler::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void Scheduler::run() {
  for (;;) {
    GenerationJob job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_ && queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    if (job.cancelled->load()) {
      job.events->close();
      continue;
    }
    try {
      generate(job);
    } catch (const std::exception& e) {
      GenerationEvent failed;
      failed.done = true;
      failed.error = Error{ErrorKind::internal, std::string("generation failed: ") + e.what(), "", ""};
      deliver(job, std::move(failed));
    }
  }
}

void Scheduler::generate(GenerationJob& job) {
  const auto started = Clock::now();
  GenerationEvent final_event;
  final_event.done = true;
  final_event.prompt_tokens = static_cast<int>(job.prompt.size());

  auto fail = [&](std::string message) {
    final_event.error = Error{ErrorKind::internal, std::move(message), "", ""};
    deliver(job, std::move(final_event));
  };

  context_.clear();
  const auto prefill = context_.decode(job.prompt, 0);
  if (prefill != engine::DecodeStatus::ok) {
    fail("the engine could not process the prompt (decode status " +
         std::to_string(static_cast<int>(prefill)) + ")");
    return;
  }
  final_event.prompt_ms = ms_since(started);
  const auto first_token_at = Clock::now();

  engine::Sampler sampler(job.sampling, model_);
  engine::Utf8StreamDecoder decoder;
  StopMatcher stops(job.stop);
  const int room = static_cast<int>(context_.n_ctx()) - static_cast<int>(job.prompt.size());
  const int limit = job.max_tokens > 0 ? std::min(job.max_tokens, room) : room;
  int position = static_cast<int>(job.prompt.size());
  int generated = 0;
  std::string finish = "length";
  bool stopped_by_string = false;

  while (generated < limit) {
    if (job.cancelled->load() || !job.events->is_open()) {
      finish = "cancelled";
      break;
    }
    const engine::Token token = sampler.sample(context_);
    if (tokenizer_.is_end_of_generation(token)) {
      finish = "stop";
      break;
    }
    ++generated;
    auto step = stops.push(decoder.push(tokenizer_.piece(token)));
    if (!step.emit.empty()) {
      GenerationEvent piece;
      piece.text = std::move(step.emit);
      if (!deliver(job, std::move(piece))) {
        finish = "cancelled";
        break;
      }
    }
    if (step.stopped) {
      finish = "stop";
      stopped_by_string = true;
      break;
    }
    if (generated >= limit) break;
    const engine::Token next[] = {token};
    const auto status = context_.decode(next, position++);
    if (status != engine::DecodeStatus::ok) {
      fail("the engine failed after " + std::to_string(generated) + " tokens (decode status " +
           std::to_string(static_cast<int>(status)) + ")");
      return;
    }
  }
  if (finish == "cancelled") {
    spdlog::info("generation cancelled after {} tokens (client gone)", generated);
    job.events->close();
    return;
  }
  if (!stopped_by_string) {
    auto tail = stops.push(decoder.flush());
    final_event.text = tail.emit + (tail.stopped ? "" : stops.flush());
    if (tail.stopped) finish = "stop";
  }
  final_event.finish_reason = finish;
  final_event.completion_tokens = generated;
  final_event.generation_ms = ms_since(first_token_at);
  deliver(job, std::move(final_event));
}

}  // namespace clawbot::server
