// Sample-rate conversion for speech: a windowed-sinc low-pass (Blackman window, cut-off just under the lower
// Nyquist frequency) evaluated from a table, streaming, so that a file is converted window by window with
// the same result as all at once.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace clawbot::audio {

class Resampler {
 public:
  Resampler(int in_rate, int out_rate);
  // Converts `in` (mono), appending to `out` what can be computed so far.
  void process(std::span<const float> in, std::vector<float>& out);
  // The end of the input: appends the samples still held back.
  void finish(std::vector<float>& out);

 private:
  void produce(std::vector<float>& out, double end);
  double step_;     // input samples per output sample
  double cutoff_;   // of the input's Nyquist frequency
  int half_width_;  // taps on each side, in input samples
  std::vector<float> table_;
  std::vector<float> buffer_;  // input not yet consumed; buffer_[0] is input sample `base_`
  double position_ = 0;        // of the next output sample, relative to buffer_[0]
  std::size_t total_in_ = 0;
  std::size_t consumed_ = 0;  // input samples dropped from the front of buffer_
  bool passthrough_ = false;
};

}  // namespace clawbot::audio
