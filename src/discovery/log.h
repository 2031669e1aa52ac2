// Where discovery logs: the program's logger when it set one (serve and gateway log to stderr), else a
// stderr logger of its own at warning level, so that a client's stdout (`discover --json`, `ask --json`)
// stays clean.
#pragma once

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace clawbot::discovery {

inline spdlog::logger& log() {
  spdlog::logger* program = spdlog::default_logger_raw();
  if (!program->name().empty()) return *program;  // spdlog's own default is unnamed and writes to stdout
  static const std::shared_ptr<spdlog::logger> own = [] {
    auto l = spdlog::stderr_color_mt("clawbot-mdns");
    l->set_pattern("%^%l%$: %v");
    l->set_level(spdlog::level::warn);
    return l;
  }();
  return *own;
}

}  // namespace clawbot::discovery
