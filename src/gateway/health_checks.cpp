// Health checks: each upstream's /health on an interval, its model list now and then, and what its /health
// says of its memory.
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "gateway/gateway_internal.h"

namespace clawbot::gateway::detail {

http::ClientOptions Gateway::health_check_options(const Upstream& u) const {
  http::ClientOptions options;
  options.connect_timeout = config_.health_checks.timeout;
  options.read_timeout = config_.health_checks.timeout;
  options.max_body_bytes = 2 * max_model_list_bytes;  // what an upstream's answer may make the gateway hold
  options.tls_ca_file = u.tls_ca_file;
  options.tls_insecure = u.tls_insecure;
  if (!u.api_key.empty()) options.headers.emplace_back("Authorization", "Bearer " + u.api_key);
  return options;
}

asio::awaitable<bool> Gateway::answers_health_check(Worker& worker, std::size_t index) {
  const Upstream& u = config_.upstreams[index];
  http::Client client(worker.io.get_executor(), u.parsed, health_check_options(u));
  auto answer = co_await client.get(config_.health_checks.path);
  co_return answer && answer->ok();
}

asio::awaitable<void> Gateway::check_upstream(Worker& worker, std::size_t index) {
  const Upstream& u = config_.upstreams[index];
  http::Client client(worker.io.get_executor(), u.parsed, health_check_options(u));
  asio::steady_timer timer(worker.io);
  std::size_t round = 0;
  while (!stopping_) {
    auto answer = co_await client.get(config_.health_checks.path);
    bool ok = answer && answer->ok();
    std::string error;
    if (!answer) {
      error = answer.error().message;
    } else if (!answer->ok()) {
      error = config_.health_checks.path + " answered " + std::to_string(answer->status);
    }
    std::vector<std::string> names;
    if (ok) {
      json memory = read_reported_memory(answer->body);
      std::lock_guard lock(models_mutex_);
      upstream_memory_[index] = std::move(memory);
    }
    // The model list: at the first success, then every tenth check (models rarely change).
    bool models_known = false;
    {
      std::lock_guard lock(models_mutex_);  // the request threads read the lists too
      models_known = !upstream_models_[index].entries.empty();
    }
    if (ok && (round % 10 == 0 || !models_known)) {
      auto listed = co_await client.get("/v1/models");
      if (!listed || listed->ok()) {
        // An upstream's answer is untrusted input: read within bounds, only the models' facts kept.
        ModelList read;
        if (listed)
          read = read_model_list(listed->body);
        else
          read.error = listed.error().message;
        std::lock_guard lock(models_mutex_);
        if (read.error.empty()) {
          names = read.ids;
          upstream_models_[index] = std::move(read);
          models_read_[index] = 1;
        } else {
          std::string unreadable = "/v1/models: " + read.error;
          if (unreadable != upstream_models_[index].error)
            spdlog::warn("the model list of {} is unreadable: {}", u.name, unreadable);
          upstream_models_[index].error = std::move(unreadable);
        }
      }
    }
    if (!ok) spdlog::debug("health check of {} failed: {}", u.name, error);
    pool_.health(index, ok, error, std::move(names), Clock::now());
    ++round;
    timer.expires_after(config_.health_checks.interval);
    co_await timer.async_wait(use_tuple);
  }
}

asio::awaitable<void> Gateway::health_loop(Worker& worker) {
  for (std::size_t i = 0; i < config_.upstreams.size(); ++i)
    asio::co_spawn(worker.io, check_upstream(worker, i), asio::detached);
  co_return;
}

}  // namespace clawbot::gateway::detail
