#include "server/scheduler.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <spdlog/spdlog.h>

namespace clawbot::server {
namespace {

using Clock = Scheduler::Clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

// ---------------------------------------------------------------- StopMatcher

StopMatcher::Result StopMatcher::push(std::string_view text) {
  held_.append(text);
  Result result;
  size_t cut = std::string::npos;
  const std::string* matched = nullptr;
  for (const auto& s : stops_) {
    const size_t at = held_.find(s);
    if (at != std::string::npos && at < cut) {
      cut = at;
      matched = &s;
    }
  }
  if (cut != std::string::npos) {
    result.emit = held_.substr(0, cut);
    result.stopped = true;
    result.matched = *matched;
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

// ---------------------------------------------------------------- Slot

struct Scheduler::Slot {
  enum class Phase { idle, prefill, generate };
  int seq = 0;
  Phase phase = Phase::idle;
  std::vector<engine::Token> cached;  // exactly the tokens this sequence's cache holds, in order
  std::optional<GenerationJob> job;
  std::size_t prefilled = 0;  // prompt tokens in the cache
  int reused = 0;             // of which came from the cache
  std::unique_ptr<TokenSampler> sampler;
  engine::Utf8StreamDecoder decoder;
  std::optional<StopMatcher> stops;
  engine::Token last = 0;  // sampled, not yet decoded
  std::string stopped_by;  // the stop string that ends the job (set just before finish)
  int generated = 0;
  int limit = 0;
  std::deque<GenerationEvent> outbox;  // events waiting for room in the channel
  Clock::time_point admitted_at, first_token_at;
  Clock::time_point last_emit;      // the last text sent; tokens with no text (control tokens) send none
  Clock::time_point last_delivery;  // the last time the client took an event (or the admission)
  std::uint64_t last_used = 0;
  std::uint64_t admitted_order = 0;
  // this step
  bool blocked = false;
  bool decoding = false;
  int take = 0;
  int row = -1;

  bool busy() const { return phase != Phase::idle; }
};

// ---------------------------------------------------------------- Scheduler

Scheduler::Scheduler(std::unique_ptr<BatchEngine> engine, SchedulerOptions options, ManualDrive drive)
    : engine_(std::move(engine)),
      can_truncate_(engine_->can_truncate_cache()),
      batch_capacity_(engine_->batch_capacity()),
      clock_(std::move(drive.clock)),
      options_(std::move(options)),
      cold_(options_.cache_enabled ? options_.cache_ram_bytes : 0),
      prefill_chunk_now_(std::max(1, options_.prefill_chunk)),
      last_heartbeat_(now()) {
  batch_.reserve(static_cast<std::size_t>(batch_capacity_));
  for (int i = 0; i < options_.parallel; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->seq = i;
    slots_.push_back(std::move(slot));
    slot_states_.push_back({.id = i, .state = "idle"});
  }
  stats_.slots_total = slots_.size();
  stats_.cold_capacity = cold_.capacity();
  stats_.kv_cells_total = engine_->kv_cells();
}

Scheduler::Scheduler(std::unique_ptr<BatchEngine> engine, SchedulerOptions options)
    : Scheduler(std::move(engine), std::move(options), ManualDrive{}) {
  thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
  stop();
}

void Scheduler::step_for_test() {
  std::vector<GenerationJob> admitted;
  {
    std::lock_guard lock(mutex_);
    admitted = take_admissible();
  }
  run_once(std::move(admitted));
}

bool Scheduler::submit(std::vector<GenerationJob> jobs) {
  if (jobs.empty()) return true;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queued_requests_ + 1 > options_.queue_max) return false;
    jobs.back().last_of_request = true;
    for (auto& job : jobs) queue_.push_back(std::move(job));
    stats_.queued = ++queued_requests_;
  }
  wake_.notify_one();
  return true;
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  close_all();
}

std::size_t Scheduler::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::vector<SlotState> Scheduler::slot_states() const {
  std::lock_guard lock(mutex_);
  return slot_states_;
}

SlotState Scheduler::state_of(const Slot& s, Clock::time_point at) {
  const bool has_job = s.job.has_value() && s.phase != Slot::Phase::idle;
  return SlotState{
      .id = s.seq,
      .state = s.phase == Slot::Phase::prefill ? "prefill"
               : s.phase == Slot::Phase::idle  ? "idle"
                                               : "generate",
      .cached = s.cached.size(),
      .prompt = has_job ? s.job->prompt.size() : 0,
      .prefilled = has_job ? s.prefilled : 0,
      .reused = has_job ? s.reused : 0,
      .generated = has_job ? s.generated : 0,
      .max_tokens = has_job ? s.limit : 0,
      .running_ms = has_job ? std::chrono::duration<double, std::milli>(at - s.admitted_at).count() : 0.0,
  };
}

void Scheduler::run() {
  for (;;) {
    std::vector<GenerationJob> admitted;
    {
      std::unique_lock lock(mutex_);
      const bool any_busy =
          std::any_of(slots_.begin(), slots_.end(), [](const auto& s) { return s->busy(); });
      const auto work = [this] { return stopping_ || !queue_.empty(); };
      if (!any_busy && parked_.empty()) {
        wake_.wait(lock, work);
      } else if (!any_busy) {
        wake_.wait_for(lock, std::chrono::milliseconds(5), work);  // parked events: try again soon
      }
      if (stopping_) break;
      admitted = take_admissible();
    }
    run_once(std::move(admitted));
    // Every busy slot waits on a slow reader: do not spin.
    const bool all_blocked =
        std::all_of(slots_.begin(), slots_.end(), [](const auto& s) { return !s->busy() || s->blocked; });
    if (all_blocked && std::any_of(slots_.begin(), slots_.end(), [](const auto& s) { return s->busy(); })) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
}

std::vector<GenerationJob> Scheduler::take_admissible() {
  std::vector<GenerationJob> admitted;
  std::size_t free_slots = static_cast<std::size_t>(
      std::count_if(slots_.begin(), slots_.end(), [](const auto& s) { return !s->busy(); }));
  while (!queue_.empty() && (free_slots > 0 || queue_.front().embedding)) {
    GenerationJob job = std::move(queue_.front());
    queue_.pop_front();
    if (job.last_of_request) --queued_requests_;
    if (job.cancelled->load()) {
      job.events->close();
      continue;
    }
    if (!job.embedding) --free_slots;
    admitted.push_back(std::move(job));
  }
  stats_.queued = queued_requests_;
  return admitted;
}

void Scheduler::run_once(std::vector<GenerationJob> admitted) {
  std::vector<GenerationJob> embeddings;
  for (auto& job : admitted) {
    if (job.embedding) {
      embeddings.push_back(std::move(job));
      continue;
    }
    // Made before a slot is chosen: a sampler libllama refuses (a bad grammar) fails this job alone.
    std::unique_ptr<TokenSampler> sampler;
    try {
      sampler = engine_->sampler(job.sampling);
    } catch (const std::exception& e) {
      refuse(job, answer_for(e));
      continue;
    }
    align_with_cache(job);
    // The free slot whose cache is the most useful to this prompt; else an empty one; else the least
    // recent.
    Slot* target = nullptr;
    std::size_t best = 0;
    for (auto& s : slots_) {
      if (s->busy()) continue;
      std::size_t usable = common_prefix(s->cached, job.prompt);
      if (!can_truncate_ && usable != s->cached.size()) usable = 0;
      const bool better = !target || usable > best ||
                          (usable == best && (s->cached.empty() ? 0 : s->last_used + 1) <
                                                 (target->cached.empty() ? 0 : target->last_used + 1));
      if (better) {
        target = s.get();
        best = usable;
      }
    }
    target->admitted_order = ++admissions_;
    admit(*target, std::move(job), std::move(sampler));
  }
  if (!embeddings.empty()) run_embeddings(embeddings);
  step();
  send_heartbeats();

  std::lock_guard lock(mutex_);
  stats_.slots_busy = static_cast<std::size_t>(
      std::count_if(slots_.begin(), slots_.end(), [](const auto& s) { return s->busy(); }));
  std::int64_t cells = 0;
  for (const auto& s : slots_) cells += static_cast<std::int64_t>(s->cached.size());
  stats_.kv_cells_used = cells;
  const auto at = now();
  for (const auto& s : slots_) slot_states_[static_cast<std::size_t>(s->seq)] = state_of(*s, at);
  stats_.cold_bytes = cold_.bytes_used();
  stats_.cold_evictions = cold_.evictions();
}

void Scheduler::close_all() {
  for (auto& s : slots_) {
    if (s->job) s->job->events->close();
  }
  for (auto& parked : parked_) parked.events->close();
  parked_.clear();
  std::lock_guard lock(mutex_);
  for (auto& job : queue_) job.events->close();
  queue_.clear();
  queued_requests_ = 0;
}

void Scheduler::send_heartbeats() {
  const auto at = now();
  // Checked twice a period, so that no stream is silent for much longer than one period.
  if (at - last_heartbeat_ < options_.heartbeat / 2) return;
  last_heartbeat_ = at;
  GenerationEvent beat;  // empty and not done: "still working on it"
  std::lock_guard lock(mutex_);
  for (auto& job : queue_) job.events->try_send(boost::system::error_code{}, beat);
  for (auto& s : slots_) {
    if (!s->job || !s->outbox.empty()) continue;
    // A long prefill, or a run of tokens that show no text, would otherwise look like a dead connection.
    const bool silent = at - s->last_emit >= options_.heartbeat / 2;
    if (s->phase == Slot::Phase::prefill || (s->phase == Slot::Phase::generate && silent)) {
      s->job->events->try_send(boost::system::error_code{}, beat);
      s->last_emit = at;
    }
  }
}

void Scheduler::save_to_cold(Slot& slot) {
  if (!options_.cache_enabled || cold_.capacity() == 0) return;
  if (slot.cached.size() < static_cast<std::size_t>(options_.min_cached_tokens)) return;
  if (cold_.contains_exact(slot.cached)) return;
  const std::size_t size = engine_->seq_state_size(slot.seq);
  auto room = cold_.insert(slot.cached, size);
  if (room.empty()) return;
  const std::size_t written = engine_->seq_state_save(slot.seq, room);
  if (written == 0) {
    cold_.erase_last();
    return;
  }
  cold_.shrink_last(written);
  std::lock_guard lock(mutex_);
  ++stats_.cold_saves;
}

void Scheduler::align_with_cache(GenerationJob& job) {
  if (!options_.cache_enabled) return;
  auto& prompt = job.prompt;
  const PieceOf piece = [this](engine::Token t) { return engine_->piece(t); };  // one, for every candidate
  const std::vector<engine::Token>* best = nullptr;
  TextAlignment best_at;
  auto consider = [&](const std::vector<engine::Token>& cached) {
    const auto at = align_by_text(cached, prompt, piece);
    if (at.cached > best_at.cached) {
      best = &cached;
      best_at = at;
    }
  };
  for (const auto& s : slots_) consider(s->cached);
  if (auto cold = cold_.find(prompt, false)) consider(cold_.tokens(cold->id));
  if (!best || (best_at.cached == best_at.prompt &&
                std::equal(best->begin(), best->begin() + static_cast<std::ptrdiff_t>(best_at.cached),
                           prompt.begin()))) {
    return;  // nothing, or only what a token-by-token match finds anyway
  }
  // A state that cannot be cut back is only of use whole.
  if (!can_truncate_ && best_at.cached != best->size()) return;
  // The same text in the tokens the cache holds; a prompt that grows so must still leave the answer its room.
  const std::size_t aligned_size = best_at.cached + (prompt.size() - best_at.prompt);
  const std::size_t room = static_cast<std::size_t>(std::max(0, options_.ctx_per_request));
  const std::size_t answer = job.max_tokens > 0 ? static_cast<std::size_t>(job.max_tokens) : 1;
  if (aligned_size > prompt.size() && aligned_size + answer > room) return;
  std::vector<engine::Token> aligned(best->begin(),
                                     best->begin() + static_cast<std::ptrdiff_t>(best_at.cached));
  aligned.insert(aligned.end(), prompt.begin() + static_cast<std::ptrdiff_t>(best_at.prompt), prompt.end());
  prompt = std::move(aligned);
  std::lock_guard lock(mutex_);
  ++stats_.text_matches;
}

void Scheduler::refuse(GenerationJob& job, Error error) {
  if (error.kind == ErrorKind::internal) spdlog::error("scheduler: a job cannot start: {}", error.message);
  GenerationEvent failed;
  failed.done = true;
  failed.choice = job.choice;
  failed.finish_reason = FinishReason::error;
  failed.error = std::move(error);
  job.events->try_send(boost::system::error_code{}, std::move(failed));  // its first event: there is room
}

void Scheduler::admit(Slot& slot, GenerationJob job, std::unique_ptr<TokenSampler> sampler) {
  const auto& prompt = job.prompt;
  const bool can_truncate = can_truncate_;
  const bool use_cache = options_.cache_enabled;

  std::size_t in_place = 0;
  if (use_cache) {
    in_place = common_prefix(slot.cached, prompt);
    if (!can_truncate && in_place != slot.cached.size()) in_place = 0;
  }
  // A busy sequence sharing more (a system prompt in use right now): copy its cells, they are shared.
  Slot* donor = nullptr;
  std::size_t donor_len = 0;
  if (use_cache && can_truncate) {
    for (auto& other : slots_) {
      if (other.get() == &slot || !other->busy()) continue;
      const std::size_t n = common_prefix(other->cached, prompt);
      if (n > donor_len) {
        donor = other.get();
        donor_len = n;
      }
    }
  }
  std::optional<ColdCache::Match> cold;
  if (use_cache) cold = cold_.find(prompt, !can_truncate);

  std::size_t reuse = in_place;
  enum class Source { slot_itself, busy_slot, cold_tier } source = Source::slot_itself;
  if (donor_len > reuse) {
    source = Source::busy_slot;
    reuse = donor_len;
  }
  if (cold && cold->length > reuse) {
    source = Source::cold_tier;
    reuse = cold->length;
  }
  // Keep at least one prompt token to decode: its logits start the answer.
  const std::size_t keep = std::min(reuse, prompt.size() - 1);

  const bool content_lost = source != Source::slot_itself || keep < slot.cached.size();
  if (content_lost) save_to_cold(slot);
  // Saving the slot may have written over the cold entry chosen above (the ring wraps onto its oldest bytes):
  // then the best of what is left, which saving did not touch. (Seen as "cold cache entry gone" aborting a
  // node with a small --cache-ram under bench/soak.sh.)
  if (source == Source::cold_tier && !cold_.contains(cold->id))
    source = donor_len > in_place ? Source::busy_slot : Source::slot_itself;

  if (source == Source::busy_slot) {
    engine_->seq_copy_prefix(donor->seq, slot.seq, static_cast<int>(donor_len));
    slot.cached.assign(donor->cached.begin(), donor->cached.begin() + static_cast<std::ptrdiff_t>(donor_len));
  } else if (source == Source::cold_tier) {
    engine_->seq_remove(slot.seq, 0, -1);
    const auto state = cold_.state(cold->id);
    if (engine_->seq_state_restore(slot.seq, state)) {
      slot.cached = cold_.tokens(cold->id);
      std::lock_guard lock(mutex_);
      ++stats_.cold_restores;
    } else {
      spdlog::warn("restoring a saved sequence failed; prefilling from scratch");
      engine_->seq_remove(slot.seq, 0, -1);
      slot.cached.clear();
    }
    cold_.erase(cold->id);
  }

  std::size_t reused = std::min(keep, common_prefix(slot.cached, prompt));
  if (can_truncate) {
    engine_->seq_remove(slot.seq, static_cast<int>(reused), -1);
    slot.cached.resize(reused);
  } else if (reused != slot.cached.size()) {
    // A recurrent state cannot be cut back: start over.
    engine_->seq_remove(slot.seq, 0, -1);
    slot.cached.clear();
    reused = 0;
  }

  {
    std::lock_guard lock(mutex_);
    ++stats_.cache_lookups;
    if (reused > 0) ++stats_.cache_hits;
    stats_.prompt_tokens += prompt.size();
    stats_.prompt_tokens_cached += reused;
  }

  slot.prefilled = reused;
  slot.reused = static_cast<int>(reused);
  slot.sampler = std::move(sampler);
  slot.decoder = engine::Utf8StreamDecoder();
  slot.stops.emplace(job.stop);
  slot.generated = 0;
  const int room = options_.ctx_per_request - static_cast<int>(prompt.size());
  slot.limit = job.max_tokens > 0 ? std::min(job.max_tokens, room) : room;
  slot.outbox.clear();
  slot.admitted_at = slot.last_emit = slot.last_delivery = now();
  slot.phase = Slot::Phase::prefill;
  slot.job = std::move(job);
}

bool Scheduler::flush_pending(Slot& slot) {
  const std::size_t pending = slot.outbox.size();
  while (!slot.outbox.empty()) {
    if (!slot.job->events->try_send(boost::system::error_code{}, slot.outbox.front())) break;
    slot.outbox.pop_front();
  }
  if (slot.outbox.size() < pending) slot.last_delivery = now();
  return slot.outbox.empty();
}

void Scheduler::release(Slot& slot) {
  if (!flush_pending(slot)) {
    parked_.push_back({slot.job->events, slot.job->cancelled, std::move(slot.outbox)});
    slot.outbox.clear();
  }
  slot.job.reset();
  slot.phase = Slot::Phase::idle;
  slot.last_used = slot.admitted_order;
}

void Scheduler::deliver_parked() {
  std::erase_if(parked_, [](Parked& p) {
    if (p.cancelled->load() || !p.events->is_open()) return true;
    while (!p.outbox.empty() && p.events->try_send(boost::system::error_code{}, p.outbox.front())) {
      p.outbox.pop_front();
    }
    return p.outbox.empty();
  });
}

void Scheduler::finish(Slot& slot, FinishReason reason, Tail tail, std::optional<Error> error) {
  GenerationEvent done;
  done.choice = slot.job->choice;
  done.done = true;
  if (!error && tail == Tail::send) {
    auto last = slot.stops->push(slot.decoder.flush());
    done.text = last.emit + (last.stopped ? "" : slot.stops->flush());
    if (last.stopped) {
      reason = FinishReason::stop;
      done.stop_string = std::move(last.matched);
    }
  }
  done.finish_reason = reason;
  std::string stopped_by = std::exchange(slot.stopped_by, {});
  if (done.stop_string.empty()) done.stop_string = std::move(stopped_by);
  done.error = std::move(error);
  done.prompt_tokens = static_cast<int>(slot.job->prompt.size());
  done.cached_tokens = slot.reused;
  done.completion_tokens = slot.generated;
  done.queue_ms = ms_between(slot.job->enqueued, slot.admitted_at);
  const auto at = now();
  if (slot.generated > 0) {
    done.prompt_ms = ms_between(slot.admitted_at, slot.first_token_at);
    done.generation_ms = ms_between(slot.first_token_at, at);
  } else {
    done.prompt_ms = ms_between(slot.admitted_at, at);
  }
  slot.outbox.push_back(std::move(done));
  // The done event ends the client's stream: /slots shows the slot idle before it can arrive (the step's own
  // snapshot comes later). A slow reader's last events wait apart (parked_): the slot is free at once.
  {
    std::lock_guard lock(mutex_);
    slot_states_[static_cast<std::size_t>(slot.seq)] =
        SlotState{.id = slot.seq, .state = "idle", .cached = slot.cached.size()};
  }
  release(slot);
}

void Scheduler::sample_and_emit(Slot& slot, int row) {
  const bool too_early = slot.generated < slot.job->min_tokens;
  engine::Token token = 0;
  try {
    token = slot.sampler->sample(row, too_early);
  } catch (const std::exception& e) {  // a grammar that allows no next token; the engine failed
    Error error = answer_for(e);
    if (error.kind == ErrorKind::internal) spdlog::error("scheduler: sampling failed: {}", e.what());
    finish(slot, FinishReason::error, Tail::drop, std::move(error));
    return;
  }
  if (slot.generated == 0) slot.first_token_at = now();
  if (engine_->is_end_of_generation(token)) {
    finish(slot, FinishReason::stop, Tail::send);
    return;
  }
  ++slot.generated;
  {
    std::lock_guard lock(mutex_);
    ++stats_.generated_tokens;
  }
  const auto& preserved = slot.job->preserved_tokens;
  const bool shown = std::find(preserved.begin(), preserved.end(), token) != preserved.end();
  auto piece =
      slot.stops->push(slot.decoder.push(shown ? engine_->special_piece(token) : engine_->piece(token)));
  if (!piece.emit.empty()) {
    GenerationEvent event;
    event.choice = slot.job->choice;
    event.text = std::move(piece.emit);
    slot.outbox.push_back(std::move(event));
    slot.last_emit = now();
    flush_pending(slot);
  }
  if (piece.stopped) {
    slot.stopped_by = std::move(piece.matched);
    finish(slot, FinishReason::stop, Tail::drop);
  } else if (slot.generated >= slot.limit) {
    finish(slot, FinishReason::length, Tail::send);
  } else {
    slot.last = token;
  }
}

void Scheduler::step() {
  batch_.clear();
  deliver_parked();
  const auto step_at = now();
  // Which requests wait for a slot: a stream's own other choices (n > 1) do not count against it.
  const EventChannel* first_waiting = nullptr;
  bool several_waiting = false;
  {
    std::lock_guard lock(mutex_);
    for (const auto& job : queue_) {
      if (!first_waiting) {
        first_waiting = job.events.get();
      } else if (job.events.get() != first_waiting) {
        several_waiting = true;
        break;
      }
    }
  }
  const auto others_wait = [&](const Slot& slot) {
    return several_waiting || (first_waiting && first_waiting != slot.job->events.get());
  };
  // Cancelled jobs leave; slow readers sit this step out. A stream whose client has taken none of its events
  // for --slow-reader-timeout while other requests wait for a slot gives its slot up: it ends with an error
  // event (delivered should the client read again), so a client that never reads cannot hold a slot for the
  // whole write timeout. A client that reads, however slowly, keeps its slot.
  for (auto& s : slots_) {
    s->decoding = false;
    s->take = 0;
    s->row = -1;
    s->blocked = false;
    if (!s->busy()) continue;
    if (s->job->cancelled->load() || !s->job->events->is_open()) {
      spdlog::info("generation cancelled after {} tokens (client gone)", s->generated);
      s->outbox.clear();
      s->job.reset();
      s->phase = Slot::Phase::idle;
      s->last_used = s->admitted_order;
      continue;
    }
    s->blocked = !flush_pending(*s);
    const auto timeout = options_.slow_reader_timeout;
    if (s->blocked && timeout.count() > 0 && step_at - s->last_delivery >= timeout && others_wait(*s)) {
      const auto seconds = std::chrono::duration<double>(timeout).count();
      spdlog::warn(
          "a stream's client took nothing for {:g} s while other requests waited: its slot is given up after "
          "{} tokens (--slow-reader-timeout)",
          seconds, s->generated);
      {
        std::lock_guard lock(mutex_);
        ++stats_.slow_readers_cut;
      }
      finish(
          *s, FinishReason::error, Tail::drop,
          Error{ErrorKind::unavailable,
                fmt::format("this stream was cut after {} tokens: its client read nothing for {:g} s while "
                            "other requests waited for a slot",
                            s->generated, seconds),
                {},
                "slow_reader"});
    }
  }

  std::vector<Slot*> prefilling;
  for (auto& s : slots_) {
    if (s->phase == Slot::Phase::prefill && !s->blocked) prefilling.push_back(s.get());
  }
  std::sort(prefilling.begin(), prefilling.end(),
            [](const Slot* a, const Slot* b) { return a->admitted_order < b->admitted_order; });
  // A prompt that one step can take whole, none of it prefilled yet (a chat turn after its cached history, a
  // short request), gets a step of its own ahead of the decoding streams. Mixed in, the streams' tokens add
  // their cost to its first token's wait: libllama splits a step of several sequences into micro-batches with
  // equal tokens per sequence, so such a step is several passes over the weights and costs about what the two
  // steps cost apart (on a CPU the streams lose nothing; on an H100 their median gap grew 5%, README). Never
  // two such steps in a row, so arrivals cannot stall the streams; a longer prompt is chunked between the
  // streams' tokens.
  const auto fits_one_step = [this](const Slot* s) {
    return s->prefilled == static_cast<std::size_t>(s->reused) &&
           s->job->prompt.size() - s->prefilled <= static_cast<std::size_t>(prefill_chunk_now_);
  };
  bool prompts_first = false;
  if (options_.prompts_first && !decodes_skipped_ &&
      std::any_of(prefilling.begin(), prefilling.end(), fits_one_step)) {
    prompts_first = std::any_of(slots_.begin(), slots_.end(), [](const auto& s) {
      return s->phase == Slot::Phase::generate && !s->blocked;
    });
  }
  decodes_skipped_ = prompts_first;
  if (prompts_first) {
    std::erase_if(prefilling, [&](const Slot* s) { return !fits_one_step(s); });
  } else {
    for (auto& s : slots_) {
      if (s->phase != Slot::Phase::generate || s->blocked) continue;
      s->row = add_to_batch(s->last, static_cast<int>(s->cached.size()), s->seq, true);
      s->decoding = true;
    }
  }
  // Prompts fill what is left of the step, oldest admission first, so a long prompt cannot starve the
  // streams. The chunk protects the running streams' inter-token gaps. With none decoding, the prompts go in
  // whole (up to the batch), at the engine's large-batch rate rather than in small steps. With more prompts
  // waiting than streams decoding, the step grows in proportion: a longer gap for the few buys earlier first
  // tokens for the many (and fewer, larger steps). A recent KV-space shortage (prefill_chunk_now_ halved)
  // scales both down.
  const int capacity = batch_capacity_;
  const int decoding = static_cast<int>(batch_.size());
  const int waiting = static_cast<int>(prefilling.size());
  const long long chunk =
      decoding == 0
          ? std::max<long long>(prefill_chunk_now_, static_cast<long long>(capacity) * prefill_chunk_now_ /
                                                        std::max(1, options_.prefill_chunk))
          : static_cast<long long>(prefill_chunk_now_) * std::max(1, waiting / decoding);
  int budget = static_cast<int>(std::min<long long>(chunk, capacity - decoding));
  for (Slot* s : prefilling) {
    if (budget <= 0) break;
    const auto& prompt = s->job->prompt;
    const int remaining = static_cast<int>(prompt.size() - s->prefilled);
    const int take = std::min(budget, remaining);
    for (int i = 0; i < take; ++i) {
      const std::size_t at = s->prefilled + static_cast<std::size_t>(i);
      const bool last = (i == remaining - 1);
      const int row = add_to_batch(prompt[at], static_cast<int>(at), s->seq, last);
      if (last) s->row = row;
    }
    s->take = take;
    budget -= take;
  }
  if (batch_.empty()) return;

  const bool had_prefill =
      std::any_of(prefilling.begin(), prefilling.end(), [](const Slot* s) { return s->take > 0; });
  const auto status = engine_->decode(batch_);
  {
    std::lock_guard lock(mutex_);
    ++stats_.engine_steps;
    if (had_prefill) ++stats_.prefill_steps;
    if (prompts_first) ++stats_.prompts_first_steps;
  }
  if (status == engine::DecodeStatus::no_kv_slot) {
    {
      std::lock_guard lock(mutex_);
      ++stats_.decode_retries;
    }
    if (had_prefill && prefill_chunk_now_ > 8) {
      prefill_chunk_now_ /= 2;  // retry with a smaller step
      spdlog::warn("KV cache full: prefilling {} tokens per step for now", prefill_chunk_now_);
      for (auto& s : slots_) engine_->seq_remove(s->seq, static_cast<int>(s->cached.size()), -1);
      return;
    }
    // Even the decode tokens do not fit: the longest sequence gives way.
    Slot* longest = nullptr;
    for (auto& s : slots_) {
      if (s->busy() && (!longest || s->cached.size() > longest->cached.size())) longest = s.get();
    }
    for (auto& s : slots_) engine_->seq_remove(s->seq, static_cast<int>(s->cached.size()), -1);
    if (longest) {
      finish(*longest, FinishReason::error, Tail::drop,
             Error{ErrorKind::unavailable,
                   "the server ran out of KV cache space for this request; retry",
                   {},
                   {}});
    }
    return;
  }
  if (status != engine::DecodeStatus::ok) {
    for (auto& s : slots_) {
      if (s->decoding || s->take > 0) {
        finish(*s, FinishReason::error, Tail::drop,
               Error{ErrorKind::internal,
                     "the engine failed (decode status " + std::to_string(static_cast<int>(status)) + ")",
                     {},
                     {}});
      }
    }
    return;
  }
  if (prefill_chunk_now_ < options_.prefill_chunk)
    prefill_chunk_now_ = std::min(options_.prefill_chunk, prefill_chunk_now_ * 2);

  for (auto& s : slots_) {
    if (s->decoding) {
      s->cached.push_back(s->last);
      sample_and_emit(*s, s->row);
    } else if (s->take > 0) {
      const auto& prompt = s->job->prompt;
      s->cached.insert(s->cached.end(), prompt.begin() + static_cast<std::ptrdiff_t>(s->prefilled),
                       prompt.begin() + static_cast<std::ptrdiff_t>(s->prefilled) + s->take);
      s->prefilled += static_cast<std::size_t>(s->take);
      if (s->prefilled == prompt.size()) {
        s->phase = Slot::Phase::generate;
        // A checkpoint at the turn boundary: the next turn of this conversation starts from here.
        if (!can_truncate_) save_to_cold(*s);
        sample_and_emit(*s, s->row);
      }
    }
  }
}

void Scheduler::run_embeddings(std::vector<GenerationJob>& jobs) {
  std::size_t begin = 0;
  while (begin < jobs.size()) {
    // As many inputs as fit one batch and the sequence limit.
    engine_->clear();
    batch_.clear();
    std::size_t end = begin;
    while (end < jobs.size() && static_cast<int>(end - begin) < engine_->max_sequences() &&
           batch_.size() + jobs[end].prompt.size() <= static_cast<std::size_t>(batch_capacity_)) {
      const int seq = static_cast<int>(end - begin);
      for (std::size_t i = 0; i < jobs[end].prompt.size(); ++i) {
        add_to_batch(jobs[end].prompt[i], static_cast<int>(i), seq, true);
      }
      ++end;
    }
    if (end == begin) {  // one input larger than a batch: the routes check this, so it is a bug here
      GenerationEvent failed;
      failed.done = true;
      failed.choice = jobs[begin].choice;
      failed.error = Error{ErrorKind::invalid_request, "input too long for one batch", "input", {}};
      jobs[begin].events->try_send(boost::system::error_code{}, std::move(failed));
      ++begin;
      continue;
    }
    const auto status = engine_->decode(batch_);
    {
      std::lock_guard lock(mutex_);
      ++stats_.engine_steps;
    }
    for (std::size_t j = begin; j < end; ++j) {
      GenerationEvent event;
      event.done = true;
      event.choice = jobs[j].choice;
      event.prompt_tokens = static_cast<int>(jobs[j].prompt.size());
      const std::span<const float> v = status == engine::DecodeStatus::ok
                                           ? engine_->seq_embedding(static_cast<int>(j - begin))
                                           : std::span<const float>();
      if (v.empty()) {
        event.error = Error{ErrorKind::internal, "the engine produced no embedding", {}, {}};
      } else if (jobs[j].rank) {
        event.score = v[0];
      } else {
        double norm = 0;
        for (const float x : v) norm += static_cast<double>(x) * x;
        norm = std::sqrt(norm);
        event.embedding.resize(v.size());
        for (std::size_t k = 0; k < v.size(); ++k) {
          event.embedding[k] = norm > 0 ? static_cast<float>(v[k] / norm) : v[k];
        }
      }
      // The reader waits for exactly these events; a full channel only delays them.
      while (jobs[j].events->is_open() && !jobs[j].events->try_send(boost::system::error_code{}, event)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    begin = end;
  }
  engine_->clear();
}

int Scheduler::add_to_batch(engine::Token token, int pos, int seq, bool output) {
  // The step's budget keeps within the capacity; past it libllama would overrun its arrays.
  if (batch_.size() >= static_cast<std::size_t>(batch_capacity_)) throw engine::EngineError("batch is full");
  batch_.push_back({token, pos, seq, output});
  return static_cast<int>(batch_.size()) - 1;
}

}  // namespace clawbot::server
