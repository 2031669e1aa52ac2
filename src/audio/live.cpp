#include "audio/live.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "audio/decode.h"

namespace clawbot::audio {
namespace {

constexpr std::size_t kFrame = kSampleRate / 100 * 3;  // 30 ms
constexpr int kStartFrames = 3;                        // 90 ms of speech opens a segment

std::size_t samples_of(double seconds) {
  return static_cast<std::size_t>(std::max(0.0, seconds) * kSampleRate);
}

}  // namespace

void PcmFrames::read(std::span<const unsigned char> bytes, std::vector<float>& out) {
  const auto sample = [](unsigned char low, unsigned char high) {
    return static_cast<float>(static_cast<std::int16_t>(low | (high << 8))) / 32768.0f;
  };
  out.clear();
  if (bytes.empty()) return;
  out.reserve((bytes.size() + (has_odd_ ? 1 : 0)) / 2);
  if (has_odd_) {
    out.push_back(sample(odd_, bytes[0]));
    bytes = bytes.subspan(1);
    has_odd_ = false;
  }
  const std::size_t whole = bytes.size() / 2;
  for (std::size_t i = 0; i < whole; ++i) out.push_back(sample(bytes[2 * i], bytes[2 * i + 1]));
  if (bytes.size() % 2 != 0) {
    odd_ = bytes.back();
    has_odd_ = true;
  }
}

LiveSegmenter::LiveSegmenter(LiveOptions options) : options_(options) {}

double LiveSegmenter::seconds() const noexcept {
  return static_cast<double>(received_) / kSampleRate;
}

std::vector<LiveSegmenter::Work> LiveSegmenter::feed(std::span<const float> samples, bool partial_idle) {
  std::vector<Work> out;
  received_ += samples.size();
  pending_.insert(pending_.end(), samples.begin(), samples.end());
  std::size_t at = 0;
  for (; at + kFrame <= pending_.size(); at += kFrame)
    frame(std::span(pending_).subspan(at, kFrame), out, partial_idle);
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(at));
  return out;
}

std::vector<LiveSegmenter::Work> LiveSegmenter::finish() {
  std::vector<Work> out;
  if (!pending_.empty()) {
    std::vector<float> last = std::move(pending_);
    last.resize(kFrame, 0.0f);
    pending_.clear();
    frame(last, out, false);
  }
  if (in_speech_) {
    last_speech_end_ = samples_;
    out.push_back(cut(true));
    in_speech_ = false;
    ++segment_;
  }
  return out;
}

LiveSegmenter::Work LiveSegmenter::cut(bool final) const {
  Work work;
  work.final = final;
  work.segment = segment_;
  // A final ends with the speech (plus a little of the pause); a partial takes all there is.
  const std::size_t end =
      final ? std::min(history_start_ + history_.size(), last_speech_end_ + samples_of(options_.pre_roll_s))
            : history_start_ + history_.size();
  work.samples.assign(history_.begin(), history_.begin() + static_cast<std::ptrdiff_t>(end - history_start_));
  work.start_s = static_cast<double>(history_start_) / kSampleRate;
  work.end_s = static_cast<double>(final ? last_speech_end_ : end) / kSampleRate;
  return work;
}

void LiveSegmenter::frame(std::span<const float> frame, std::vector<Work>& out, bool partial_idle) {
  double energy = 0;
  for (const float s : frame) energy += static_cast<double>(s) * s;
  const auto rms = static_cast<float>(std::sqrt(energy / static_cast<double>(frame.size())));
  // The noise floor follows quiet frames quickly and loud ones slowly; speech stands well above it.
  noise_floor_ = noise_floor_ == 0    ? rms
                 : rms < noise_floor_ ? 0.9f * noise_floor_ + 0.1f * rms
                                      : 0.9999f * noise_floor_ + 0.0001f * rms;
  const bool speech = rms > options_.min_level && rms > 3.0f * noise_floor_;
  history_.insert(history_.end(), frame.begin(), frame.end());
  samples_ += frame.size();

  if (!in_speech_) {
    speech_frames_ = speech ? speech_frames_ + 1 : 0;
    if (speech_frames_ >= kStartFrames) {
      in_speech_ = true;
      silent_frames_ = 0;
      last_speech_end_ = samples_;
      last_partial_at_ = samples_;
    }
    // While silent, only the pre-roll before the speech that may come is kept.
    const std::size_t keep = samples_of(options_.pre_roll_s) + kStartFrames * kFrame;
    if (!in_speech_ && history_.size() > keep) {
      const std::size_t drop = history_.size() - keep;
      history_.erase(history_.begin(), history_.begin() + static_cast<std::ptrdiff_t>(drop));
      history_start_ += drop;
    }
    return;
  }
  if (speech) {
    silent_frames_ = 0;
    last_speech_end_ = samples_;
  } else {
    ++silent_frames_;
  }
  const bool pause = static_cast<double>(silent_frames_ * kFrame) / kSampleRate >= options_.silence_s;
  const bool too_long = static_cast<double>(history_.size()) / kSampleRate >= options_.max_segment_s;
  if (pause || too_long) {
    if (too_long) last_speech_end_ = samples_;
    out.push_back(cut(true));
    ++segment_;
    in_speech_ = false;
    speech_frames_ = 0;
    // The next segment starts after this one's end (a forced cut continues without a gap).
    const std::size_t next =
        too_long ? samples_ : std::max(history_start_, samples_ - samples_of(options_.pre_roll_s));
    history_.erase(history_.begin(), history_.begin() + static_cast<std::ptrdiff_t>(next - history_start_));
    history_start_ = next;
    if (too_long) {
      in_speech_ = true;  // still speaking
      last_partial_at_ = samples_;
    }
    return;
  }
  if (partial_idle &&
      static_cast<double>(samples_ - last_partial_at_) / kSampleRate >= options_.partial_interval_s) {
    out.push_back(cut(false));
    last_partial_at_ = samples_;
  }
}

}  // namespace clawbot::audio
