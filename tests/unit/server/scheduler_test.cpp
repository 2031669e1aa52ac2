// The scheduler's rules against a fake engine (fake_batch_engine.h), one pass of its loop at a time and on a
// clock the test moves: which step each token goes in, which slot a request takes, what the cold tier keeps,
// what a cancel frees, when the queue is full, when a generation ends and why, slow readers, embeddings.
#include <gtest/gtest.h>

#include <cmath>

#include <boost/asio/io_context.hpp>

#include "fake_batch_engine.h"
#include "server/scheduler.h"

namespace clawbot::server {
namespace {

using namespace std::chrono_literals;
using fake::end_token;
using fake::FakeBatchEngine;
using fake::FakeEngineState;
using fake::tok;
using fake::toks;

// One request's events as its client would read them.
struct Client {
  std::shared_ptr<EventChannel> events;
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
  std::vector<GenerationEvent> received;  // heartbeats left out
  int heartbeats = 0;

  // Takes everything the channel holds now.
  void read() {
    while (events->try_receive([this](boost::system::error_code, GenerationEvent e) {
      if (e.done || !e.text.empty() || !e.embedding.empty()) {
        received.push_back(std::move(e));
      } else {
        ++heartbeats;
      }
    })) {
    }
  }
  std::string text() const {
    std::string all;
    for (const auto& e : received) all += e.text;
    return all;
  }
  const GenerationEvent* done() const {
    for (const auto& e : received) {
      if (e.done) return &e;
    }
    return nullptr;
  }
};

GenerationJob job(std::string_view prompt, int max_tokens) {
  GenerationJob j;
  j.prompt = toks(prompt);
  j.max_tokens = max_tokens;
  j.sampling.temperature = 0;
  return j;
}

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() {
    options.parallel = 2;
    options.ctx_per_request = 256;
    options.prefill_chunk = 8;
    options.queue_max = 4;
    options.cache_ram_bytes = 0;
    options.min_cached_tokens = 4;
    options.heartbeat = std::chrono::hours(1);
    options.slow_reader_timeout = 10s;
  }

  // After the engine's facts and the options are set.
  Scheduler& start() {
    scheduler = std::make_unique<Scheduler>(std::make_unique<FakeBatchEngine>(engine), options,
                                            Scheduler::ManualDrive{[this] { return now; }});
    return *scheduler;
  }

  // A request of one or more jobs; `room`: events its channel holds before the scheduler must wait.
  std::shared_ptr<Client> submit(std::vector<GenerationJob> jobs, std::size_t room = 64,
                                 bool* accepted = nullptr) {
    auto client = std::make_shared<Client>();
    client->events = std::make_shared<EventChannel>(io.get_executor(), room);
    for (auto& j : jobs) {
      j.events = client->events;
      j.cancelled = client->cancelled;
    }
    const bool ok = scheduler->submit(std::move(jobs));
    if (accepted) *accepted = ok;
    return client;
  }
  std::shared_ptr<Client> submit(GenerationJob j, std::size_t room = 64) {
    std::vector<GenerationJob> jobs;
    jobs.push_back(std::move(j));
    return submit(std::move(jobs), room);
  }

  void step(int passes = 1) {
    for (int i = 0; i < passes; ++i) scheduler->step_for_test();
  }
  // Passes until the client's done event arrives (at most `limit`).
  void run_until_done(Client& client, int limit = 100) {
    for (int i = 0; i < limit && !client.done(); ++i) {
      step();
      client.read();
    }
    ASSERT_NE(client.done(), nullptr) << "no done event after " << limit << " passes";
  }
  // Submits one job and runs the scheduler until its answer ends.
  std::shared_ptr<Client> answer(GenerationJob j) {
    auto client = submit(std::move(j));
    run_until_done(*client);
    return client;
  }
  static void expect_answer(const Client& client, std::string_view text, FinishReason reason, int tokens) {
    ASSERT_NE(client.done(), nullptr);
    EXPECT_EQ(client.text(), text);
    EXPECT_EQ(client.done()->finish_reason, reason);
    EXPECT_EQ(client.done()->completion_tokens, tokens);
  }
  std::size_t steps() const { return engine->steps.size(); }
  std::vector<engine::Token> tokens_of(std::size_t step, int seq) const {
    return engine->tokens_of(step, seq);
  }
  std::vector<int> positions_of(std::size_t step, int seq) const {
    std::vector<int> out;
    for (const auto& t : engine->steps.at(step)) {
      if (t.seq == seq) out.push_back(t.pos);
    }
    return out;
  }

  void TearDown() override {
    EXPECT_EQ(engine->position_errors, 0) << "a token was decoded away from the end of its sequence";
    EXPECT_EQ(engine->unsampled_rows, 0) << "a row was sampled whose logits were not asked for";
  }

  std::shared_ptr<FakeEngineState> engine = std::make_shared<FakeEngineState>();
  SchedulerOptions options;
  Scheduler::Clock::time_point now = Scheduler::Clock::time_point{} + std::chrono::hours(1);
  boost::asio::io_context io;
  std::unique_ptr<Scheduler> scheduler;
};

// ---------------------------------------------------------------- which step each token goes in

TEST_F(SchedulerTest, APromptAloneGoesInWholeThenOneTokenPerStep) {
  options.parallel = 1;
  start();
  auto a = answer(job("abcdefghij", 3));
  ASSERT_EQ(steps(), 3u);
  EXPECT_EQ(tokens_of(0, 0), toks("abcdefghij"));  // no stream decodes: not cut into chunks of 8
  EXPECT_EQ(tokens_of(1, 0), toks("k"));
  EXPECT_EQ(tokens_of(2, 0), toks("l"));
  EXPECT_EQ(a->text(), "klm");
  EXPECT_EQ(a->done()->finish_reason, FinishReason::length);
  EXPECT_EQ(a->done()->prompt_tokens, 10);
  EXPECT_EQ(a->done()->completion_tokens, 3);
  const auto stats = scheduler->stats();
  EXPECT_EQ(stats.engine_steps, 3u);
  EXPECT_EQ(stats.prefill_steps, 1u);
  EXPECT_EQ(stats.generated_tokens, 3u);
}

TEST_F(SchedulerTest, ALongPromptIsChunkedBetweenTheStreamsTokens) {
  options.prefill_chunk = 4;
  start();
  auto a = submit(job("ab", 50));
  step();  // a is decoding from here on
  auto b = submit(job("klmnopqrst", 2));
  step(3);
  ASSERT_EQ(steps(), 4u);
  for (std::size_t s = 1; s < 4; ++s) EXPECT_EQ(tokens_of(s, 0).size(), 1u) << "step " << s;
  EXPECT_EQ(tokens_of(1, 1), toks("klmn"));
  EXPECT_EQ(tokens_of(2, 1), toks("opqr"));
  EXPECT_EQ(tokens_of(3, 1), toks("st"));
  EXPECT_EQ(positions_of(2, 1), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(scheduler->stats().prefill_steps, 4u);
  EXPECT_EQ(scheduler->stats().prompts_first_steps, 0u);
  b->read();
  EXPECT_EQ(b->text(), "u");  // its first token came with the last chunk
}

TEST_F(SchedulerTest, MorePromptsWaitingThanStreamsDecodingGrowTheStep) {
  options.parallel = 3;
  options.prefill_chunk = 4;
  start();
  auto a = submit(job("ab", 50));
  step();
  auto b = submit(job("klmnopqrst", 2));
  auto c = submit(job("mnopqrstuv", 2));
  step();
  // Two prompts wait, one stream decodes: 2 x 4 prompt tokens, oldest admission first.
  EXPECT_EQ(tokens_of(1, 0).size(), 1u);
  EXPECT_EQ(tokens_of(1, 1), toks("klmnopqr"));
  EXPECT_EQ(tokens_of(1, 2), toks(""));
}

TEST_F(SchedulerTest, AShortPromptGetsAStepAheadOfTheStreamsButNeverTwoInARow) {
  options.parallel = 3;
  start();
  auto a = submit(job("ab", 50));
  step();
  auto b = submit(job("klm", 50));
  step();
  EXPECT_EQ(tokens_of(1, 0), toks(""));  // the stream sat this step out
  EXPECT_EQ(tokens_of(1, 1), toks("klm"));
  EXPECT_EQ(scheduler->stats().prompts_first_steps, 1u);
  auto c = submit(job("xyz", 50));
  step();
  EXPECT_EQ(tokens_of(2, 0), toks("c"));  // not a second prompts-only step: the streams and c's prompt
  EXPECT_EQ(tokens_of(2, 1), toks("n"));
  EXPECT_EQ(tokens_of(2, 2), toks("xyz"));
  EXPECT_EQ(scheduler->stats().prompts_first_steps, 1u);
}

TEST_F(SchedulerTest, PromptsFirstOffMixesAShortPromptWithTheStreams) {
  options.prompts_first = false;
  start();
  auto a = submit(job("ab", 50));
  step();
  auto b = submit(job("klm", 50));
  step();
  EXPECT_EQ(tokens_of(1, 0), toks("c"));
  EXPECT_EQ(tokens_of(1, 1), toks("klm"));
  EXPECT_EQ(scheduler->stats().prompts_first_steps, 0u);
}

// ---------------------------------------------------------------- which slot a request takes

TEST_F(SchedulerTest, ARequestTakesTheIdleSlotSharingTheLongestPrefixElseAnEmptyOneElseTheLeastRecent) {
  start();
  auto a = answer(job("abcdefgh", 1));  // slot 0 holds abcdefgh
  auto b = answer(job("xyzxyzxy", 1));  // an empty slot rather than overwrite slot 0: slot 1
  EXPECT_EQ(engine->cells[1], toks("xyzxyzxy"));
  const std::size_t before = steps();
  auto c = answer(job("abcdeqrs", 1));
  EXPECT_EQ(tokens_of(before, 0), toks("qrs"));  // slot 0, the five shared tokens kept
  EXPECT_EQ(positions_of(before, 0), (std::vector<int>{5, 6, 7}));
  EXPECT_EQ(c->done()->cached_tokens, 5);
  // Nothing shared: the slot used least recently (1, by b) rather than 0 (by c).
  auto d = answer(job("mmmm", 1));
  EXPECT_EQ(tokens_of(steps() - 1, 1), toks("mmmm"));
  const auto stats = scheduler->stats();
  EXPECT_EQ(stats.cache_lookups, 4u);
  EXPECT_EQ(stats.cache_hits, 1u);
  EXPECT_EQ(stats.prompt_tokens_cached, 5u);
}

TEST_F(SchedulerTest, ARequestSharingAPrefixWithABusySlotCopiesItsCells) {
  start();
  auto a = submit(job("abcdefgh", 50));
  step();  // a decodes on slot 0
  auto b = submit(job("abcdefxy", 2));
  step();
  ASSERT_EQ(engine->copies.size(), 1u);
  EXPECT_EQ(engine->copies[0].src, 0);
  EXPECT_EQ(engine->copies[0].dst, 1);
  EXPECT_EQ(engine->copies[0].length, 6);
  EXPECT_EQ(tokens_of(1, 1), toks("xy"));
  EXPECT_EQ(positions_of(1, 1), (std::vector<int>{6, 7}));
  run_until_done(*b);
  EXPECT_EQ(b->done()->cached_tokens, 6);
}

TEST_F(SchedulerTest, WithTheCacheOffNothingIsReused) {
  options.cache_enabled = false;
  options.parallel = 1;
  start();
  auto a = answer(job("abcdefgh", 1));
  auto b = answer(job("abcdefxy", 1));
  EXPECT_EQ(tokens_of(steps() - 1, 0), toks("abcdefxy"));
  EXPECT_EQ(b->done()->cached_tokens, 0);
}

TEST_F(SchedulerTest, ACacheThatCannotBeCutBackIsReusedOnlyWhole) {
  engine->can_truncate = false;  // a recurrent model
  options.parallel = 1;
  options.cache_ram_bytes = 4096;
  start();
  auto a = answer(job("abcdefgh", 1));
  auto b = answer(job("abcdefghij", 1));  // the whole state is a prefix: kept
  EXPECT_EQ(b->done()->cached_tokens, 8);
  EXPECT_EQ(tokens_of(steps() - 1, 0), toks("ij"));
  // Only part of it, and no checkpoint (saved at the end of each prompt) is a prefix: start over, as a cut
  // state would not be the state of the prefix.
  auto c = answer(job("abcdxy", 1));
  EXPECT_EQ(c->done()->cached_tokens, 0);
  EXPECT_EQ(tokens_of(steps() - 1, 0), toks("abcdxy"));
  EXPECT_EQ(scheduler->stats().cold_saves, 3u) << "a checkpoint at the end of every prompt";
}

// ---------------------------------------------------------------- the cold tier

TEST_F(SchedulerTest, ASequenceSavedToTheColdTierIsRestoredForItsNextTurn) {
  options.parallel = 1;
  options.cache_ram_bytes = 1024;
  start();
  auto a = answer(job("abcdefgh", 1));
  auto b = answer(job("mnopqrst", 1));  // a's sequence is saved before its slot is reused
  EXPECT_EQ(scheduler->stats().cold_saves, 1u);
  auto a2 = answer(job("abcdefghij", 1));
  EXPECT_EQ(engine->restores, 1);
  EXPECT_EQ(scheduler->stats().cold_restores, 1u);
  EXPECT_EQ(scheduler->stats().cold_saves, 2u);  // b's, before a's came back
  EXPECT_EQ(a2->done()->cached_tokens, 8);
  EXPECT_EQ(tokens_of(steps() - 1, 0), toks("ij"));
  EXPECT_EQ(positions_of(steps() - 1, 0), (std::vector<int>{8, 9}));
}

TEST_F(SchedulerTest, AFullColdTierEvictsItsOldestEntry) {
  options.parallel = 1;
  options.min_cached_tokens = 8;  // the probes below (6 tokens) are not saved, so they evict nothing
  // A saved 8-token sequence takes (8 + 1) x 4 bytes in the fake: room for three.
  options.cache_ram_bytes = 3 * 36 + 2;
  start();
  for (const char* prompt : {"aaaaaaaa", "bbbbbbbb", "cccccccc", "dddddddd", "eee"}) {
    auto r = answer(job(prompt, 1));
  }
  // a, b and c were saved; saving d took a's bytes.
  EXPECT_EQ(scheduler->stats().cold_saves, 4u);
  EXPECT_EQ(scheduler->stats().cold_evictions, 1u);
  auto a = answer(job("aaaaxy", 1));
  EXPECT_EQ(a->done()->cached_tokens, 0) << "a was the oldest: evicted";
  auto b = answer(job("bbbbxy", 1));
  EXPECT_EQ(b->done()->cached_tokens, 4) << "b was kept";
  EXPECT_EQ(scheduler->stats().cold_restores, 1u);
  EXPECT_EQ(scheduler->stats().cold_evictions, 1u);
}

// ---------------------------------------------------------------- cancellation and the queue

TEST_F(SchedulerTest, ACancelFreesTheSlotForTheNextQueuedRequest) {
  options.parallel = 1;
  start();
  auto a = submit(job("ab", 100));
  step(2);
  auto b = submit(job("mn", 2));
  step();
  EXPECT_EQ(scheduler->stats().queued, 1u);  // no slot for b
  const std::size_t before = steps();
  a->cancelled->store(true);
  step();
  EXPECT_EQ(steps(), before) << "the cancelled stream decoded again";
  EXPECT_EQ(scheduler->stats().slots_busy, 0u);
  step();  // b is admitted into the freed slot
  EXPECT_EQ(scheduler->stats().queued, 0u);
  EXPECT_EQ(scheduler->stats().slots_busy, 1u);
  EXPECT_EQ(tokens_of(before, 0), toks("mn"));
  EXPECT_EQ(positions_of(before, 0), (std::vector<int>{0, 1}));
  a->read();
  EXPECT_EQ(a->done(), nullptr) << "a cancelled request gets no answer";
  run_until_done(*b);
}

TEST_F(SchedulerTest, ARequestCancelledWhileQueuedIsNeverAdmitted) {
  options.parallel = 1;
  start();
  auto a = submit(job("ab", 3));
  auto b = submit(job("mn", 3));
  b->cancelled->store(true);
  run_until_done(*a);
  step(3);
  EXPECT_FALSE(b->events->is_open());
  EXPECT_EQ(scheduler->stats().cache_lookups, 1u) << "b took a slot";
}

TEST_F(SchedulerTest, AFullQueueRefusesARequestAndItsChoicesCountOnce) {
  options.parallel = 1;
  options.queue_max = 2;
  start();
  bool accepted = false;
  std::vector<GenerationJob> two;
  two.push_back(job("ab", 2));
  two.push_back(job("ab", 2));
  submit(std::move(two), 64, &accepted);  // n = 2: one request
  EXPECT_TRUE(accepted);
  std::vector<GenerationJob> one;
  one.push_back(job("cd", 2));
  submit(std::move(one), 64, &accepted);
  EXPECT_TRUE(accepted);
  std::vector<GenerationJob> third;
  third.push_back(job("ef", 2));
  submit(std::move(third), 64, &accepted);
  EXPECT_FALSE(accepted) << "the queue holds two requests";
  step();  // the first choice takes the only slot; the request still waits with its second
  EXPECT_EQ(scheduler->stats().queued, 2u);
  std::vector<GenerationJob> again;
  again.push_back(job("ef", 2));
  submit(std::move(again), 64, &accepted);
  EXPECT_FALSE(accepted);
}

// ---------------------------------------------------------------- when and why a generation ends

TEST_F(SchedulerTest, ThePerRequestContextLimitsAnAnswerWithoutMaxTokens) {
  options.ctx_per_request = 12;
  start();
  expect_answer(*answer(job("abcdefghij", 0)), "kl", FinishReason::length, 2);
}

TEST_F(SchedulerTest, AnEndOfGenerationTokenStopsAndMinTokensHoldsItBack) {
  // After 'c' the fake model ends every answer.
  engine->next = [](engine::Token last) { return last >= tok('c') ? end_token : last + 1; };
  start();
  expect_answer(*answer(job("ab", 20)), "c", FinishReason::stop, 1);
  auto j = job("ab", 20);
  j.min_tokens = 3;
  expect_answer(*answer(std::move(j)), "cde", FinishReason::stop, 3);
}

TEST_F(SchedulerTest, AStopStringEndsTheAnswerBeforeIt) {
  start();
  auto j = job("ab", 20);
  j.stop = {"ef"};
  expect_answer(*answer(std::move(j)), "cd", FinishReason::stop, 4);
}

TEST_F(SchedulerTest, TextHeldBackForAStopStringIsSentWhenTheLimitEndsTheAnswer) {
  start();
  auto j = job("ab", 3);
  j.stop = {"ez"};
  const auto a = answer(std::move(j));
  expect_answer(*a, "cde", FinishReason::length, 3);
  EXPECT_EQ(a->done()->text, "e");  // held back until the end
}

TEST_F(SchedulerTest, AFailedDecodeEndsTheRequestsInTheStepWithAnError) {
  start();
  auto a = submit(job("ab", 20));
  step();
  engine->fail_next_decode = engine::DecodeStatus::failed;
  step();
  a->read();
  ASSERT_NE(a->done(), nullptr);
  EXPECT_EQ(a->done()->finish_reason, FinishReason::error);
  ASSERT_TRUE(a->done()->error.has_value());
  EXPECT_EQ(a->done()->error->kind, ErrorKind::internal);
  EXPECT_EQ(scheduler->stats().slots_busy, 0u);
}

TEST_F(SchedulerTest, AGrammarTheEngineRefusesFailsThatRequestAloneAndTakesNoSlot) {
  options.parallel = 1;
  start();
  auto bad = job("ab", 5);
  bad.sampling.grammar = "refused";
  auto a = submit(std::move(bad));
  auto b = submit(job("ab", 2));  // queued behind it: gets the slot the refused one never held
  step();
  a->read();
  ASSERT_NE(a->done(), nullptr);
  EXPECT_EQ(a->done()->finish_reason, FinishReason::error);
  ASSERT_TRUE(a->done()->error.has_value());
  EXPECT_EQ(a->done()->error->kind, ErrorKind::invalid_request);
  EXPECT_EQ(a->done()->error->param, "grammar");
  run_until_done(*b);
  expect_answer(*b, "cd", FinishReason::length, 2);
}

TEST_F(SchedulerTest, AGrammarThatAllowsNoNextTokenEndsTheAnswerWithAnError) {
  start();
  auto dead = job("ab", 20);
  dead.sampling.grammar = "dead after 3";
  auto a = submit(std::move(dead));
  run_until_done(*a);
  EXPECT_EQ(a->text(), "cde");
  EXPECT_EQ(a->done()->finish_reason, FinishReason::error);
  ASSERT_TRUE(a->done()->error.has_value());
  EXPECT_EQ(a->done()->error->param, "grammar");
  EXPECT_EQ(scheduler->stats().slots_busy, 0u);
  const auto b = answer(job("ab", 2));  // the scheduler goes on
  expect_answer(*b, "cd", FinishReason::length, 2);
}

// ---------------------------------------------------------------- slow readers

TEST_F(SchedulerTest, AStreamWhoseClientReadsNothingGivesUpItsSlotOnlyWhenOthersWait) {
  options.parallel = 1;
  start();
  auto a = submit(job("ab", 100), 1);  // room for one event, never read
  step(3);
  const std::size_t before = steps();
  now += 11s;
  step(2);
  EXPECT_EQ(steps(), before) << "a blocked stream decoded";
  EXPECT_EQ(scheduler->stats().slots_busy, 1u) << "cut with nobody waiting";
  auto b = submit(job("mn", 2));
  step();
  EXPECT_EQ(scheduler->stats().slow_readers_cut, 1u);
  run_until_done(*b);
  // Its client, reading again, gets what was generated, then why it ended.
  for (int i = 0; i < 4; ++i) {
    a->read();
    step();
  }
  a->read();
  EXPECT_EQ(a->text(), "cd");
  ASSERT_NE(a->done(), nullptr);
  EXPECT_EQ(a->done()->finish_reason, FinishReason::error);
  ASSERT_TRUE(a->done()->error.has_value());
  EXPECT_EQ(a->done()->error->code, "slow_reader");
}

TEST_F(SchedulerTest, AStreamThatReadsKeepsItsSlot) {
  options.parallel = 1;
  start();
  auto a = submit(job("ab", 100), 1);
  step();
  auto b = submit(job("mn", 2));
  for (int i = 0; i < 5; ++i) {
    now += 11s;  // slow, but it reads
    a->read();
    step();
  }
  a->read();
  EXPECT_EQ(scheduler->stats().slow_readers_cut, 0u);
  EXPECT_EQ(a->text(), "cdefgh");
}

// ---------------------------------------------------------------- heartbeats

TEST_F(SchedulerTest, AQueuedRequestGetsHeartbeatsAndAStreamThatShowsTextDoesNot) {
  options.parallel = 1;
  options.heartbeat = 2s;  // checked every second
  start();
  auto a = submit(job("ab", 100));
  step();
  auto b = submit(job("mn", 2));
  now += 1s;
  step();
  a->read();
  b->read();
  EXPECT_EQ(b->heartbeats, 1);
  EXPECT_EQ(a->heartbeats, 0) << "a stream that just sent text";
  now += 500ms;
  step();
  b->read();
  EXPECT_EQ(b->heartbeats, 1) << "half a period has not passed";
}

// ---------------------------------------------------------------- embeddings

// One request's inputs to embed, each its own choice as the routes number them.
std::vector<GenerationJob> embedding_inputs(std::initializer_list<std::string_view> texts) {
  std::vector<GenerationJob> inputs;
  for (const auto text : texts) {
    auto j = job(text, 0);
    j.embedding = true;
    j.choice = static_cast<int>(inputs.size());
    inputs.push_back(std::move(j));
  }
  return inputs;
}

TEST_F(SchedulerTest, EmbeddingInputsShareOneDecodeAndComeBackNormalised) {
  start();
  auto r = submit(embedding_inputs({"ab", "cde"}));
  step();
  r->read();
  ASSERT_EQ(steps(), 1u);
  EXPECT_EQ(tokens_of(0, 0), toks("ab"));
  EXPECT_EQ(tokens_of(0, 1), toks("cde"));
  ASSERT_EQ(r->received.size(), 2u);
  // The fake's vector is {tokens, sum of tokens}: {2, 3} and {3, 12}.
  EXPECT_EQ(r->received[0].choice, 0);
  EXPECT_EQ(r->received[0].prompt_tokens, 2);
  ASSERT_EQ(r->received[0].embedding.size(), 2u);
  EXPECT_FLOAT_EQ(r->received[0].embedding[0], 2.0f / std::sqrt(13.0f));
  EXPECT_FLOAT_EQ(r->received[0].embedding[1], 3.0f / std::sqrt(13.0f));
  EXPECT_EQ(r->received[1].choice, 1);
  EXPECT_FLOAT_EQ(r->received[1].embedding[0], 3.0f / std::sqrt(153.0f));
  EXPECT_EQ(engine->cells.size(), 0u) << "the embedding sequences stay in the cache";
}

TEST_F(SchedulerTest, EmbeddingInputsBeyondTheSequenceLimitTakeAnotherDecode) {
  engine->max_sequences = 1;
  start();
  auto r = submit(embedding_inputs({"ab", "cde"}));
  step();
  r->read();
  ASSERT_EQ(steps(), 2u);
  EXPECT_EQ(tokens_of(1, 0), toks("cde"));
  EXPECT_EQ(r->received.size(), 2u);
}

}  // namespace
}  // namespace clawbot::server
