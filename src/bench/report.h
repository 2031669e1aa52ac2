// The benchmark's report: a table for people, a JSON object for scripts, and the command that reproduces it.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "bench/bench.h"
#include "bench/runner.h"
#include "bench/stats.h"

namespace clawbot::bench {

// `clawbot bench ...` with every setting that shapes the run spelled out (the model resolved, the seed).
std::string reproduce_command(const BenchOptions& used);

nlohmann::ordered_json report_json(const BenchOptions& used, const Summary& summary, const RunResult& run);
std::string report_text(const BenchOptions& used, const Summary& summary, const RunResult& run);

// Quotes a word for a POSIX shell where it needs it.
std::string shell_quote(const std::string& word);

}  // namespace clawbot::bench
