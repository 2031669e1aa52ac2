// The scheduler owns the engine context on one thread; jobs come in through a queue and their tokens go back
// through a per-job channel. For now one job runs at a time, first come first served.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/experimental/concurrent_channel.hpp>

#include "common/error.h"
#include "engine/engine.h"

namespace clawbot::server {

struct GenerationEvent {
  std::string text;  // new text, whole UTF-8, stop strings already cut
  bool done = false;
  std::string finish_reason;  // on done: "stop", "length" or "cancelled"
  int prompt_tokens = 0;
  int completion_tokens = 0;
  double prompt_ms = 0;        // prefill time
  double generation_ms = 0;    // time after the first token
  std::optional<Error> error;  // on done, when the engine failed
};

using EventChannel =
    boost::asio::experimental::concurrent_channel<void(boost::system::error_code, GenerationEvent)>;

struct GenerationJob {
  std::vector<engine::Token> prompt;
  engine::SamplingParams sampling;
  int max_tokens = 0;  // 0: until the context is full
  std::vector<std::string> stop;
  std::shared_ptr<EventChannel> events;
  std::shared_ptr<std::atomic<bool>> cancelled;
};

// Splits generated text at the first stop string and holds back a tail that may become one.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  struct Result {
    std::string emit;
    bool stopped = false;
  };
  Result push(std::string_view text);
  std::string flush();  // the held-back tail, at the end of generation

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

class Scheduler {
 public:
  Scheduler(const engine::Model& model, engine::Context& context);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void submit(GenerationJob job);
  void stop();
  std::size_t queued() const;

 private:
  void run();
  void generate(GenerationJob& job);

  const engine::Model& model_;
  engine::Context& context_;
  engine::Tokenizer tokenizer_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<GenerationJob> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace clawbot::server
