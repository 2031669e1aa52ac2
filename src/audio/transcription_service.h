// The queue in front of the one Transcriber: serve's routes (files and live sessions) hand it work, one
// worker thread runs it in order, and /metrics gets audio seconds, processing time, real-time factor and the
// queue. Completion comes back through a callback on the worker thread (the caller posts it where it likes).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "audio/decode.h"
#include "audio/transcriber.h"
#include "audio/transcript.h"
#include "monitor/metrics.h"

namespace clawbot::audio {

struct TranscriptionResult {
  Transcript transcript;
  AudioInfo info;
  double processing_s = 0;
};

struct TranscriptionJob {
  // The uploaded file: `audio` views bytes that `owner` keeps alive (the request's body, moved, not copied).
  std::shared_ptr<const std::string> owner;
  std::string_view audio;
  // `audio`'s decoder, its header read when the request was checked, so that the file is opened once; null:
  // the worker opens it.
  std::unique_ptr<Decoder> decoder;
  TranscribeOptions options;
  std::shared_ptr<std::atomic<bool>> cancelled;  // set when the client has gone
};

class TranscriptionService {
 public:
  using Done = std::function<void(std::exception_ptr, TranscriptionResult)>;
  struct Options {
    std::size_t queue_max = 16;  // jobs waiting; one more is refused
    DecodeLimits limits;
    int threads = 0;  // for jobs that do not say (0: all cores)
  };
  TranscriptionService(Transcriber& transcriber, Options options, monitor::Registry* metrics);
  ~TranscriptionService();
  TranscriptionService(const TranscriptionService&) = delete;
  TranscriptionService& operator=(const TranscriptionService&) = delete;

  // Queues a file; false when the queue is full (nothing queued). `done` runs on the worker thread.
  bool submit(TranscriptionJob job, Done done);
  // Queues work on the transcriber itself (a live session's window), in turn with the files; `dropped` runs
  // instead when the service stops first.
  bool submit_task(std::function<void(Transcriber&)> task, std::function<void()> dropped = {});
  // Ends the worker after the job in progress; what waits gets an `unavailable` error.
  void stop();

  const Options& options() const noexcept { return options_; }
  std::size_t queued() const;
  bool busy() const noexcept { return busy_.load(); }
  // Counts audio the live path transcribed (files count themselves).
  void count_audio(double audio_s, double processing_s);

 private:
  void run();
  Transcriber& transcriber_;
  Options options_;
  bool metrics_ = false;
  monitor::CounterHandle audio_seconds_;
  monitor::CounterHandle processing_seconds_;
  monitor::CounterHandle requests_;
  std::atomic<double> last_rtf_ = 0;
  std::atomic<bool> busy_ = false;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  struct Item {
    std::function<void()> run;
    std::function<void()> dropped;
  };
  std::deque<Item> queue_;
  bool stopping_ = false;
  std::jthread worker_;
};

}  // namespace clawbot::audio
