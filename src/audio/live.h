// The live path's segmentation, without I/O: audio frames come in as they are spoken (16 kHz mono), an
// energy-based voice activity detector cuts them into speech segments, and the segmenter says what to
// transcribe and when: a partial hypothesis of the open segment about once a second, a final one when the
// segment ends (a pause, or max_segment_s of speech), so that the final text is stable and its lag after the
// end of speech is the pause plus one transcription. serve's WebSocket route drives it.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace clawbot::audio {

struct LiveOptions {
  double partial_interval_s = 1.0;  // a partial of the open segment at most this often
  double silence_s = 0.5;           // this much non-speech ends a segment
  double max_segment_s = 25.0;      // a segment longer than this is finalised (whisper's window is 30 s)
  double pre_roll_s = 0.2;          // audio kept before the detected start of speech
  float min_level = 0.005f;         // RMS below this is never speech
};

class LiveSegmenter {
 public:
  struct Work {
    bool final = false;
    int segment = 0;     // numbered from 0 in the stream
    double start_s = 0;  // of the audio in `samples`, from the start of the stream
    double end_s = 0;
    std::vector<float> samples;
  };

  explicit LiveSegmenter(LiveOptions options = {});
  // Takes more audio; returns what to transcribe now (partials only when `partial_idle`: the last partial is
  // done, so they never pile up behind a slow transcriber).
  std::vector<Work> feed(std::span<const float> samples, bool partial_idle = true);
  // The end of the stream: the open segment's final, if any.
  std::vector<Work> finish();
  double seconds() const noexcept;  // audio taken so far (not counting the padding of the last frame)
  bool in_speech() const noexcept { return in_speech_; }

 private:
  void frame(std::span<const float> frame, std::vector<Work>& out, bool partial_idle);
  Work cut(bool final) const;
  LiveOptions options_;
  std::vector<float> pending_;     // less than a frame
  std::vector<float> history_;     // recent audio (pre-roll) while silent; the segment while speaking
  std::size_t history_start_ = 0;  // stream sample index of history_[0]
  std::size_t samples_ = 0;        // stream samples framed so far (the last frame padded by finish())
  std::size_t received_ = 0;       // stream samples fed
  bool in_speech_ = false;
  int speech_frames_ = 0;
  int silent_frames_ = 0;
  std::size_t last_speech_end_ = 0;  // stream sample index after the last speech frame
  std::size_t last_partial_at_ = 0;
  int segment_ = 0;
  float noise_floor_ = 0;
};

// The live route's binary frames as samples: 16-bit little-endian mono PCM, in messages of any length. A
// message may end in the middle of a sample (an odd length): that byte is kept and completed by the next
// message, so the samples after it stay aligned.
class PcmFrames {
 public:
  // `out` gets the samples that `bytes` (after the byte kept from before) completes, in [-1, 1).
  void read(std::span<const unsigned char> bytes, std::vector<float>& out);
  bool holds_odd_byte() const noexcept { return has_odd_; }

 private:
  unsigned char odd_ = 0;
  bool has_odd_ = false;
};

}  // namespace clawbot::audio
