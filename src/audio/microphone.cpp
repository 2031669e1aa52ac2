#include "audio/microphone.h"

#include <portaudio.h>

#include "audio/decode.h"
#include "audio/resample.h"
#include "common/error.h"

namespace clawbot::audio {
namespace {

[[noreturn]] void portaudio_failed(const std::string& what, PaError error) {
  throw ClawbotError(ErrorKind::internal, what + ": " + Pa_GetErrorText(error));
}

// PortAudio's library, initialised while one of these lives.
struct PortAudio {
  PortAudio() {
    if (const PaError e = Pa_Initialize(); e != paNoError) portaudio_failed("cannot start PortAudio", e);
  }
  ~PortAudio() { Pa_Terminate(); }
  PortAudio(const PortAudio&) = delete;
  PortAudio& operator=(const PortAudio&) = delete;
};

}  // namespace

std::vector<CaptureDevice> capture_devices() {
  PortAudio library;
  std::vector<CaptureDevice> out;
  const PaDeviceIndex count = Pa_GetDeviceCount();
  if (count < 0) portaudio_failed("cannot list audio devices", count);
  const PaDeviceIndex default_input = Pa_GetDefaultInputDevice();
  for (PaDeviceIndex i = 0; i < count; ++i) {
    const PaDeviceInfo* info = Pa_GetDeviceInfo(i);
    if (!info || info->maxInputChannels <= 0) continue;
    out.push_back({i, info->name ? info->name : "", info->maxInputChannels, info->defaultSampleRate,
                   i == default_input});
  }
  return out;
}

struct Microphone::State {
  PortAudio library;
  PaStream* stream = nullptr;
  std::unique_ptr<Resampler> resampler;
  std::vector<float> block;
  unsigned long frames = 0;
  std::string name;
  ~State() {
    if (stream) {
      Pa_StopStream(stream);
      Pa_CloseStream(stream);
    }
  }
};

Microphone::Microphone(int device) : state_(std::make_unique<State>()) {
  auto& s = *state_;
  const PaDeviceIndex index = device < 0 ? Pa_GetDefaultInputDevice() : device;
  const PaDeviceInfo* info = index == paNoDevice ? nullptr : Pa_GetDeviceInfo(index);
  if (!info || info->maxInputChannels <= 0)
    throw ClawbotError(ErrorKind::not_found, device < 0
                                                 ? "no default microphone (clawbot transcribe --list-devices)"
                                                 : "device " + std::to_string(device) +
                                                       " cannot record (clawbot transcribe --list-devices)");
  s.name = info->name ? info->name : "";
  PaStreamParameters input{};
  input.device = index;
  input.channelCount = 1;
  input.sampleFormat = paFloat32;
  input.suggestedLatency = info->defaultLowInputLatency;
  // 16 kHz when the device takes it; its own rate otherwise, resampled here.
  double rate = kSampleRate;
  if (Pa_IsFormatSupported(&input, nullptr, rate) != paFormatIsSupported) rate = info->defaultSampleRate;
  s.frames = static_cast<unsigned long>(rate / 10);
  if (const PaError e = Pa_OpenStream(&s.stream, &input, nullptr, rate, s.frames, paNoFlag, nullptr, nullptr);
      e != paNoError)
    portaudio_failed("cannot open " + s.name, e);
  if (const PaError e = Pa_StartStream(s.stream); e != paNoError)
    portaudio_failed("cannot record from " + s.name, e);
  s.resampler = std::make_unique<Resampler>(static_cast<int>(rate), kSampleRate);
  s.block.resize(s.frames);
}

Microphone::~Microphone() = default;

std::string Microphone::device_name() const {
  return state_->name;
}

void Microphone::read(std::vector<float>& out) {
  auto& s = *state_;
  // An overflow (the reader fell behind) loses samples but not the stream: not an error here.
  const PaError e = Pa_ReadStream(s.stream, s.block.data(), s.frames);
  if (e != paNoError && e != paInputOverflowed) portaudio_failed("recording from " + s.name + " failed", e);
  s.resampler->process(s.block, out);
}

}  // namespace clawbot::audio
