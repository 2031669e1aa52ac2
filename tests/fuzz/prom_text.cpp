// src/monitor/prom_text.h, the reader of what a remote server's /metrics sends (`clawbot top`): any bytes are
// a Scrape within its limits or an error naming the line (bounded, printable), never a crash; the histograms
// it yields are monotonic; `top`'s figures and screen made from it (bucket deltas, histogram_quantile) do
// not crash either.
//
// Input: byte 0 = limits (0x01: small ones), then the text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "monitor/prom_text.h"
#include "monitor/top_figures.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace clawbot::monitor;
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  prom::Limits limits;
  if (data[0] & 1)
    limits = {
        .max_bytes = 4096, .max_line_bytes = 256, .max_samples = 40, .max_families = 8, .max_labels = 4};
  const auto parsed = prom::parse(text, limits);
  if (!parsed.scrape) {
    if (parsed.error.empty() || parsed.error.size() > 400) std::abort();
    for (const char c : parsed.error)
      if ((static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f)) std::abort();
    return 0;
  }
  const prom::Scrape& scrape = *parsed.scrape;
  if (scrape.families.size() > limits.max_families || scrape.index.size() != scrape.families.size())
    std::abort();
  std::size_t samples = 0;
  for (const auto& family : scrape.families) {
    if (scrape.family(family.name) != &family) std::abort();
    samples += family.samples.size();
    for (const auto& sample : family.samples)
      if (sample.labels.size() > limits.max_labels || sample.name.empty()) std::abort();
    for (const auto& h : prom::histograms(family)) {
      if (h.upper_bounds.size() != h.cumulative.size()) std::abort();
      for (std::size_t i = 1; i < h.cumulative.size(); ++i)
        if (h.cumulative[i] < h.cumulative[i - 1] || !(h.upper_bounds[i] > h.upper_bounds[i - 1]))
          std::abort();
      if (!h.cumulative.empty() && h.count < h.cumulative.back()) std::abort();
    }
  }
  if (samples > limits.max_samples) std::abort();

  // Twice, as two successive scrapes, then after an empty one (a restart): figures and the screen.
  top::Tracker tracker;
  tracker.add(scrape, 0);
  (void)top::render(tracker.figures(), {.url = "http://127.0.0.1:1"}, 80);
  tracker.add(scrape, 1);
  tracker.add(prom::Scrape{}, 2);
  tracker.add(scrape, 3);
  (void)top::render(tracker.figures(), {.url = "http://127.0.0.1:1"}, 40);
  return 0;
}
