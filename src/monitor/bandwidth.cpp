#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "monitor/metrics.h"

namespace clawbot::monitor {

double measure_read_bandwidth(std::size_t bytes, int threads, int repeats) {
  threads = std::max(1, threads);
  const std::size_t words = bytes / sizeof(std::uint64_t);
  auto data = std::make_unique_for_overwrite<std::uint64_t[]>(words);
  std::iota(data.get(), data.get() + words, std::uint64_t{1});  // touch every page first
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    std::vector<std::uint64_t> sums(static_cast<std::size_t>(threads));
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::jthread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const std::size_t begin = words * static_cast<std::size_t>(t) / static_cast<std::size_t>(threads);
        const std::size_t end = words * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(threads);
        // Four accumulators keep the loop bound by loads, not by one add chain.
        std::uint64_t a = 0, b = 0, c = 0, d = 0;
        std::size_t i = begin;
        for (; i + 4 <= end; i += 4) {
          a += data[i];
          b += data[i + 1];
          c += data[i + 2];
          d += data[i + 3];
        }
        for (; i < end; ++i) a += data[i];
        sums[static_cast<std::size_t>(t)] = a + b + c + d;
      });
    }
    workers.clear();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (std::accumulate(sums.begin(), sums.end(), std::uint64_t{0}) == 0) return 0;  // keeps the loads alive
    best = std::max(best, static_cast<double>(words * sizeof(std::uint64_t)) / seconds);
  }
  return best;
}

}  // namespace clawbot::monitor
