// The front-end's microphone, through PortAudio (ALSA, PulseAudio or PipeWire underneath): 16 kHz mono
// samples for the live path, whatever rate the device runs at (resampled here).
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace clawbot::audio {

struct CaptureDevice {
  int index = 0;
  std::string name;
  int channels = 0;
  double sample_rate = 0;
  bool is_default = false;
};

// The devices that can record; throws ClawbotError when PortAudio cannot start.
std::vector<CaptureDevice> capture_devices();

class Microphone {
 public:
  explicit Microphone(int device = -1);  // -1: the default input
  ~Microphone();
  Microphone(const Microphone&) = delete;
  Microphone& operator=(const Microphone&) = delete;
  // Blocks until about 100 ms have been recorded; appends them at 16 kHz mono.
  void read(std::vector<float>& out);
  std::string device_name() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace clawbot::audio
