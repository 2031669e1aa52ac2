#include "audio/resample.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace clawbot::audio {
namespace {

constexpr int kTableSteps = 256;  // table entries per input sample

double sinc(double x) {
  if (std::abs(x) < 1e-9) return 1.0;
  return std::sin(std::numbers::pi * x) / (std::numbers::pi * x);
}

double blackman(double x) {  // x in [-1, 1]
  const double a = std::numbers::pi * (x + 1.0);
  return 0.42 - 0.5 * std::cos(a) + 0.08 * std::cos(2 * a);
}

}  // namespace

Resampler::Resampler(int in_rate, int out_rate) {
  passthrough_ = in_rate == out_rate;
  step_ = static_cast<double>(in_rate) / out_rate;
  // The pass band ends at 90% of the lower Nyquist frequency: speech above it is lost anyway (whisper reads
  // up to 8 kHz), and what is kept does not alias.
  cutoff_ = 0.9 * std::min(1.0, 1.0 / step_);
  half_width_ = static_cast<int>(std::ceil(12.0 / cutoff_));
  table_.resize(static_cast<std::size_t>(half_width_) * kTableSteps + 2);
  for (std::size_t i = 0; i < table_.size(); ++i) {
    const double d = static_cast<double>(i) / kTableSteps;
    const double w = d >= half_width_ ? 0.0 : blackman(d / half_width_);
    table_[i] = static_cast<float>(cutoff_ * sinc(cutoff_ * d) * w);
  }
  buffer_.assign(static_cast<std::size_t>(half_width_), 0.0f);  // silence before the first sample
}

void Resampler::process(std::span<const float> in, std::vector<float>& out) {
  if (passthrough_) {
    out.insert(out.end(), in.begin(), in.end());
    return;
  }
  buffer_.insert(buffer_.end(), in.begin(), in.end());
  total_in_ += in.size();
  produce(out, static_cast<double>(total_in_));
}

void Resampler::finish(std::vector<float>& out) {
  if (passthrough_) return;
  buffer_.insert(buffer_.end(), static_cast<std::size_t>(half_width_) + 1, 0.0f);  // silence after the last
  produce(out, static_cast<double>(total_in_));
}

// Output samples at input positions below `end` whose taps are all in the buffer. buffer_[i] is input sample
// consumed_ + i - half_width_.
void Resampler::produce(std::vector<float>& out, double end) {
  const double first = static_cast<double>(consumed_) - half_width_;
  const double last = first + static_cast<double>(buffer_.size()) - 1;
  for (;;) {
    const double t = position_;
    if (t >= end || std::floor(t) + half_width_ > last) break;
    const auto centre = static_cast<long long>(std::floor(t));
    double sum = 0;
    for (long long j = centre - half_width_ + 1; j <= centre + half_width_; ++j) {
      const double d = std::abs(t - static_cast<double>(j)) * kTableSteps;
      const auto i = static_cast<std::size_t>(d);
      if (i + 1 >= table_.size()) continue;
      const double frac = d - static_cast<double>(i);
      const double h = table_[i] + (table_[i + 1] - table_[i]) * frac;
      sum += h * buffer_[static_cast<std::size_t>(j - static_cast<long long>(first))];
    }
    out.push_back(static_cast<float>(sum));
    position_ += step_;
  }
  // Drop the input no later output sample reaches.
  const double keep_from = std::floor(position_) - half_width_ + 1;
  if (keep_from > first) {
    const auto drop = std::min(buffer_.size(), static_cast<std::size_t>(keep_from - first));
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(drop));
    consumed_ += drop;
  }
}

}  // namespace clawbot::audio
