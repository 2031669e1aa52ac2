// The knowledge base's own search cost, in process: what `POST /v1/kb/NAME/search` spends besides the query's
// embedding and HTTP. Run by bench/kb.mjs on its 100,000-chunk knowledge base, or by hand:
//   build/bench/kb_search_bench FILE.kb QUERIES.txt [ROUNDS]
// QUERIES.txt: one query a line. Vector and hybrid search use a random unit vector per query (seeded) of the
// knowledge base's dimension. Prints P50 and P99 per mode, the first search (vectors loaded) apart;
// KB_BENCH_SLOW_MS=N also prints each search slower than N ms.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kb/kb.h"

using namespace clawbot::kb;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s FILE.kb QUERIES.txt [ROUNDS]\n", argv[0]);
    return 2;
  }
  try {
    KnowledgeBase kb = KnowledgeBase::open(argv[1]);
    // A line: the query, then optionally a tab, the end of the expected chunk's source, a tab and the end of
    // its heading path: "found" counts the searches with that chunk in their top 5.
    std::vector<std::string> queries;
    std::vector<std::pair<std::string, std::string>> expected;
    std::ifstream in(argv[2]);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const auto tab = line.find('\t');
      const auto tab2 = tab == std::string::npos ? tab : line.find('\t', tab + 1);
      queries.push_back(line.substr(0, tab));
      if (tab2 != std::string::npos)
        expected.emplace_back(line.substr(tab + 1, tab2 - tab - 1), line.substr(tab2 + 1));
      else
        expected.emplace_back();
    }
    const int rounds = argc > 3 ? std::stoi(argv[3]) : 1;
    // $KB_BENCH_SLOW_MS: the searches slower than that are printed (stderr), to see what the tail is made of.
    const char* slow = std::getenv("KB_BENCH_SLOW_MS");
    const double slow_ms = slow != nullptr ? std::atof(slow) : 0;
    const auto dim = static_cast<std::size_t>(kb.info().dimension);
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    std::vector<std::vector<float>> vectors(queries.size(), std::vector<float>(dim));
    for (auto& v : vectors)
      for (auto& x : v) x = normal(rng);
    using clock = std::chrono::steady_clock;
    const auto ms = [](clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
    for (const auto mode : {SearchMode::hybrid, SearchMode::vector, SearchMode::bm25}) {
      if (mode != SearchMode::bm25 && dim == 0) continue;
      std::vector<double> times;
      double first = -1;
      std::size_t found = 0, judged = 0;
      for (int r = 0; r < rounds; ++r) {
        for (std::size_t i = 0; i < queries.size(); ++i) {
          const auto t = clock::now();
          const auto hits =
              kb.search(queries[i], mode == SearchMode::bm25 ? nullptr : &vectors[i], {mode, 5, 50});
          const double took = ms(clock::now() - t);
          if (slow_ms > 0 && took > slow_ms)
            std::fprintf(stderr, "slow %s search, %.1f ms: %s\n", std::string(search_mode_name(mode)).c_str(),
                         took, queries[i].c_str());
          if (!expected[i].first.empty()) {
            ++judged;
            if (std::any_of(hits.begin(), hits.end(), [&](const SearchHit& h) {
                  return h.source.ends_with(expected[i].first) &&
                         h.heading_path.ends_with(expected[i].second);
                }))
              ++found;
          }
          if (first < 0) {
            first = took;
          } else {
            times.push_back(took);
          }
        }
      }
      std::sort(times.begin(), times.end());
      const auto at = [&](double p) {
        return times.empty() ? 0.0 : times[std::min(times.size() - 1, std::size_t(p * double(times.size())))];
      };
      std::printf("%s: P50 %.1f ms, P99 %.1f ms over %zu searches (the first: %.0f ms)",
                  std::string(search_mode_name(mode)).c_str(), at(0.5), at(0.99), times.size(), first);
      if (mode == SearchMode::bm25 && judged > 0)
        std::printf("; the query's chunk in the top 5: %zu of %zu", found, judged);
      std::printf("\n");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kb_search_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
