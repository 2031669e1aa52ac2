#include "server/api/pooled.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "server/generation.h"

namespace clawbot::server::api {

namespace asio = boost::asio;

asio::awaitable<std::optional<std::vector<GenerationEvent>>> run_pooled(
    const ServeContext& ctx, http::Exchange& ex, std::vector<std::vector<engine::Token>> inputs, bool rank) {
  Generation gen;
  gen.events = std::make_shared<EventChannel>(ex.executor(), inputs.size() + 1);
  std::vector<GenerationJob> jobs;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    GenerationJob job;
    job.prompt = std::move(inputs[i]);
    job.embedding = true;
    job.rank = rank;
    job.choice = static_cast<int>(i);
    job.events = gen.events;
    job.cancelled = gen.cancelled;
    jobs.push_back(std::move(job));
  }
  const std::size_t count = jobs.size();
  if (!ctx.scheduler.submit(std::move(jobs))) co_return std::nullopt;
  std::vector<GenerationEvent> results(count);
  for (std::size_t received = 0; received < count;) {
    auto [ec, event] = co_await gen.events->async_receive(asio::as_tuple(asio::use_awaitable));
    if (ec) throw ClawbotError({ErrorKind::unavailable, "the server is shutting down", {}, {}});
    if (event.error) throw ClawbotError(*event.error);
    if (!event.done) continue;
    ++received;
    const auto at = static_cast<std::size_t>(event.choice);
    results[at] = std::move(event);
  }
  co_return results;
}

}  // namespace clawbot::server::api
