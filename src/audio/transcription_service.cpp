#include "audio/transcription_service.h"

#include <chrono>

#include "common/error.h"

namespace clawbot::audio {

TranscriptionService::TranscriptionService(Transcriber& transcriber, Options options,
                                           monitor::Registry* metrics)
    : transcriber_(transcriber), options_(options), metrics_(metrics != nullptr) {
  if (metrics) {
    audio_seconds_ = metrics->counter("clawbot_audio_seconds_total", "Seconds of audio transcribed");
    processing_seconds_ =
        metrics->counter("clawbot_audio_processing_seconds_total", "Seconds spent transcribing audio");
    requests_ = metrics->counter("clawbot_audio_requests_total", "Transcriptions and translations run");
    metrics->gauge_callback("clawbot_audio_real_time_factor",
                            "Processing time over audio duration of the last transcription (below 1: faster "
                            "than real time)",
                            [this] { return last_rtf_.load(); });
    metrics->gauge_callback("clawbot_audio_queue_depth", "Transcriptions waiting for the transcriber",
                            [this] { return static_cast<double>(queued()); });
    metrics->gauge_callback("clawbot_audio_busy", "1 while a transcription runs",
                            [this] { return busy_.load() ? 1.0 : 0.0; });
  }
  worker_ = std::jthread([this] { run(); });
}

TranscriptionService::~TranscriptionService() {
  stop();
}

std::size_t TranscriptionService::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void TranscriptionService::count_audio(double audio_s, double processing_s) {
  if (metrics_) {
    audio_seconds_.add(audio_s);
    processing_seconds_.add(processing_s);
  }
  if (audio_s > 0) last_rtf_ = processing_s / audio_s;
}

bool TranscriptionService::submit_task(std::function<void(Transcriber&)> task,
                                       std::function<void()> dropped) {
  std::lock_guard lock(mutex_);
  if (stopping_ || queue_.size() >= options_.queue_max) return false;
  queue_.push_back({[this, task = std::move(task)] { task(transcriber_); }, std::move(dropped)});
  wake_.notify_one();
  return true;
}

bool TranscriptionService::submit(TranscriptionJob job, Done done) {
  if (job.options.threads == 0) job.options.threads = options_.threads;
  auto shared_job = std::make_shared<TranscriptionJob>(std::move(job));
  auto shared_done = std::make_shared<Done>(std::move(done));
  const auto dropped = [shared_done] {
    (*shared_done)(std::make_exception_ptr(ClawbotError(ErrorKind::unavailable, "the node is shutting down")),
                   {});
  };
  return submit_task(
      [this, shared_job, shared_done](Transcriber& transcriber) {
        TranscriptionResult result;
        std::exception_ptr error;
        const auto start = std::chrono::steady_clock::now();
        try {
          if (!shared_job->decoder)
            shared_job->decoder = std::make_unique<Decoder>(shared_job->audio, options_.limits);
          Decoder& decoder = *shared_job->decoder;
          result.info = decoder.info();
          result.transcript =
              transcriber.transcribe(decoder, shared_job->options, shared_job->cancelled.get());
          shared_job->decoder.reset();  // the file's buffers go now, not when the answer has been sent
          result.processing_s =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          if (metrics_) requests_.add();
          count_audio(result.transcript.duration, result.processing_s);
        } catch (...) {
          error = std::current_exception();
        }
        (*shared_done)(error, std::move(result));
      },
      dropped);
}

void TranscriptionService::stop() {
  std::deque<Item> left;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    wake_.notify_all();
  }
  if (worker_.joinable()) worker_.join();
  {
    std::lock_guard lock(mutex_);
    left.swap(queue_);
  }
  for (auto& item : left)
    if (item.dropped) item.dropped();
}

void TranscriptionService::run() {
  for (;;) {
    Item task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) break;
      task = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    task.run();
    busy_ = false;
  }
}

}  // namespace clawbot::audio
