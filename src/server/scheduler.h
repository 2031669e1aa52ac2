// The scheduler owns the engine context on one thread. Jobs come in through a bounded FIFO queue; up to
// `parallel` of them decode together, one llama_decode per step (continuous batching), with long prompts
// prefilled in chunks between decode steps. Tokens go back through each job's channel.
//
// KV reuse: each slot remembers the tokens its sequence holds. A new job takes the slot (or copies from the
// busy slot, or restores from the cold tier) that shares the longest prefix with its prompt and prefills only
// the rest. Idle sequences are saved to the cold tier (host RAM) before their slot is reused. Models whose
// cache cannot be cut back (recurrent, hybrid, sliding-window) keep a checkpoint at the end of every prompt,
// so the next turn restores it and prefills only what follows.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/experimental/concurrent_channel.hpp>

#include "common/error.h"
#include "engine/engine.h"
#include "server/batch_engine.h"
#include "server/prefix_cache.h"

namespace clawbot::server {

// Why a generation ended; each protocol spells it in its own words where it writes JSON.
enum class FinishReason {
  stop,    // an end-of-generation token or a stop string
  length,  // max_tokens, or the per-request context, is used up
  error,   // the event's error says what went wrong (a slow reader cut, no KV space, the engine failed)
};

struct GenerationEvent {
  int choice = 0;    // which of the request's n choices
  std::string text;  // new text, whole UTF-8, stop strings already cut
  bool done = false;
  FinishReason finish_reason = FinishReason::stop;  // on done
  std::string stop_string;  // on done: the stop string that ended it (empty: an end-of-generation token)
  int prompt_tokens = 0;
  int cached_tokens = 0;  // prompt tokens reused from the cache
  int completion_tokens = 0;
  double prompt_ms = 0;        // from admission to the first token
  double queue_ms = 0;         // waiting for a slot
  double generation_ms = 0;    // after the first token
  std::optional<Error> error;  // on done, when the engine failed
  // Embedding jobs: the pooled (normalised) vector; rank jobs: the relevance score.
  std::vector<float> embedding;
  float score = 0.0f;
};

using EventChannel =
    boost::asio::experimental::concurrent_channel<void(boost::system::error_code, GenerationEvent)>;

struct GenerationJob {
  std::vector<engine::Token> prompt;
  engine::SamplingParams sampling;
  int max_tokens = 0;  // 0: until the per-request context is full
  int min_tokens = 0;  // no end-of-generation token before this many (vLLM's min_tokens)
  std::vector<std::string> stop;
  // Tokens whose text the answer shows even when they are control tokens: the chat format's tags (tool calls,
  // thinking), which its parser reads back (llama-server's preserved tokens).
  std::vector<engine::Token> preserved_tokens;
  int choice = 0;
  bool embedding = false;  // pooled embedding instead of generation
  bool rank = false;       // with embedding, on a reranker: the pair's relevance score (not normalised)
  std::chrono::steady_clock::time_point enqueued = std::chrono::steady_clock::now();
  std::shared_ptr<EventChannel> events;
  std::shared_ptr<std::atomic<bool>> cancelled;
  bool last_of_request = false;  // set by submit(): the queue counts requests, not their jobs
};

// Splits generated text at the first stop string and holds back a tail that may become one.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  struct Result {
    std::string emit;
    bool stopped = false;
    std::string matched;  // when stopped: the stop string found
  };
  Result push(std::string_view text);
  std::string flush();  // the held-back tail, at the end of generation

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

struct SchedulerOptions {
  int parallel = 4;            // sequences decoded together
  int ctx_per_request = 0;     // tokens each request may use (prompt + answer)
  int prefill_chunk = 256;     // prompt tokens per step while others decode
  std::size_t queue_max = 64;  // waiting requests before 503 (a request's n choices or inputs count once)
  std::size_t cache_ram_bytes = 0;  // cold tier
  bool cache_enabled = true;        // off: every request is prefilled from scratch (for comparisons)
  int min_cached_tokens = 16;       // shorter sequences are not worth saving
  // A prompt that fits in one step goes ahead of the decoding streams (see Scheduler::step).
  bool prompts_first = true;
  std::chrono::milliseconds heartbeat{5000};  // empty events to waiting jobs, so streams stay alive
  // A stream whose client has taken none of its events for this long while other requests wait for a slot
  // gives up its slot (see Scheduler::step); 0: never.
  std::chrono::milliseconds slow_reader_timeout{10000};
};

struct SchedulerStats {
  std::uint64_t prompt_tokens = 0;
  std::uint64_t prompt_tokens_cached = 0;
  std::uint64_t generated_tokens = 0;
  std::uint64_t cache_lookups = 0;
  std::uint64_t cache_hits = 0;    // lookups that reused at least one token
  std::uint64_t text_matches = 0;  // prompts whose cached prefix was found by text (re-tokenized answers)
  std::uint64_t cold_saves = 0;
  std::uint64_t cold_restores = 0;
  std::uint64_t cold_evictions = 0;
  std::uint64_t cold_bytes = 0;
  std::uint64_t cold_capacity = 0;
  std::uint64_t decode_retries = 0;       // steps retried smaller after the cache ran out of cells
  std::uint64_t engine_steps = 0;         // llama_decode calls: one per step, whatever it holds
  std::uint64_t prefill_steps = 0;        // those that carried prompt tokens
  std::uint64_t prompts_first_steps = 0;  // those that ran prompts ahead of the decoding streams
  std::uint64_t slow_readers_cut = 0;     // streams that gave up their slot to waiting requests
  std::size_t slots_busy = 0;
  std::size_t slots_total = 0;
  std::size_t queued = 0;  // requests waiting for a slot
  std::int64_t kv_cells_used = 0;
  std::int64_t kv_cells_total = 0;
};

// One slot as GET /slots shows it, as of the end of the last step.
struct SlotState {
  int id = 0;
  std::string state;          // idle, prefill, generate
  std::size_t cached = 0;     // tokens its KV cache holds (kept after a request, for the next one)
  std::size_t prompt = 0;     // the current request's prompt tokens (0 when idle)
  std::size_t prefilled = 0;  // of which are in the cache
  int reused = 0;             // of which came from an earlier request
  int generated = 0;
  int max_tokens = 0;     // this request's limit
  double running_ms = 0;  // since the request got the slot
};

class Scheduler {
 public:
  using Clock = std::chrono::steady_clock;
  // On libllama (llama_batch_engine.cpp): model and context must outlive the scheduler.
  Scheduler(const engine::Model& model, engine::Context& context, SchedulerOptions options);
  // Runs `engine` on a thread of its own.
  Scheduler(std::unique_ptr<BatchEngine> engine, SchedulerOptions options);
  // For tests: no thread; each step_for_test() is one pass of the scheduler's loop, and `clock` is the time
  // the scheduler sees (slow readers, heartbeats, timings).
  struct ManualDrive {
    std::function<Clock::time_point()> clock;
  };
  Scheduler(std::unique_ptr<BatchEngine> engine, SchedulerOptions options, ManualDrive drive);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // The jobs of one request (its n choices, or its inputs to embed); false when the queue is full (the caller
  // answers 503).
  bool submit(std::vector<GenerationJob> jobs);
  void stop();
  std::size_t queued() const;
  SchedulerStats stats() const;
  std::vector<SlotState> slot_states() const;
  const SchedulerOptions& options() const noexcept { return options_; }
  // A pass of the loop as its thread runs it: admissions, one step, heartbeats, stats (ManualDrive only).
  void step_for_test();

 private:
  struct Slot;
  // Events still to deliver to a client whose request no longer holds a slot (it finished, or was cut as a
  // slow reader, before its client took them).
  struct Parked {
    std::shared_ptr<EventChannel> events;
    std::shared_ptr<std::atomic<bool>> cancelled;
    std::deque<GenerationEvent> outbox;
  };
  void run();
  // The queued jobs that free slots can take now (embeddings need none); under mutex_.
  std::vector<GenerationJob> take_admissible();
  // Admissions, one step, heartbeats, stats: one pass of the loop.
  void run_once(std::vector<GenerationJob> admitted);
  void close_all();  // at shutdown: every job still here learns it will not be answered
  Clock::time_point now() const { return clock_ ? clock_() : Clock::now(); }
  // Rewrites the prompt's tokens where they spell the same text as a cached sequence's (see align_by_text).
  void align_with_cache(GenerationJob& job);
  void admit(Slot& slot, GenerationJob job, std::unique_ptr<TokenSampler> sampler);
  // A job that cannot start: its only event is this error.
  static void refuse(GenerationJob& job, Error error);
  void step();
  // Tail::send: the text held back (a possible stop string, an incomplete UTF-8 character) goes out with the
  // done event; after a stop string it is dropped, the stop string ends the text.
  enum class Tail { send, drop };
  void finish(Slot& slot, FinishReason reason, Tail tail, std::optional<Error> error = std::nullopt);
  bool flush_pending(Slot& slot);
  // The slot goes idle; what its client has not taken yet waits in parked_.
  void release(Slot& slot);
  void deliver_parked();
  void save_to_cold(Slot& slot);
  void run_embeddings(std::vector<GenerationJob>& jobs);
  void sample_and_emit(Slot& slot, int row);
  void send_heartbeats();
  // What /slots shows of a slot (taken under mutex_ into slot_states_).
  static SlotState state_of(const Slot& slot, Clock::time_point at);
  int add_to_batch(engine::Token token, int pos, int seq, bool output);

  std::unique_ptr<BatchEngine> engine_;
  const bool can_truncate_;  // engine_->can_truncate_cache()
  const int batch_capacity_;
  std::function<Clock::time_point()> clock_;  // empty: Clock::now()
  SchedulerOptions options_;
  ColdCache cold_;
  std::vector<BatchToken> batch_;  // this step's tokens
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<Parked> parked_;
  int prefill_chunk_now_;
  bool decodes_skipped_ = false;  // the last step ran prompts only
  std::uint64_t admissions_ = 0;
  Clock::time_point last_heartbeat_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<GenerationJob> queue_;
  std::size_t queued_requests_ = 0;  // requests with a job in queue_ (guarded by mutex_)
  bool stopping_ = false;
  SchedulerStats stats_;                // guarded by mutex_
  std::vector<SlotState> slot_states_;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace clawbot::server
