#include "audio/decode.h"

#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "audio/resample.h"
#include "common/error.h"

namespace clawbot::audio {
namespace {

[[noreturn]] void refuse(const std::string& code, const std::string& message) {
  throw ClawbotError(Error{ErrorKind::invalid_request, message, "file", code});
}

std::string seconds_text(double s) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", s);
  return text;
}

// libsndfile reads the upload from memory through its virtual I/O.
struct MemoryFile {
  std::string_view bytes;
  sf_count_t position = 0;
};

sf_count_t memory_length(void* user) {
  return static_cast<sf_count_t>(static_cast<MemoryFile*>(user)->bytes.size());
}

sf_count_t memory_seek(sf_count_t offset, int whence, void* user) {
  auto* file = static_cast<MemoryFile*>(user);
  const auto size = static_cast<sf_count_t>(file->bytes.size());
  sf_count_t target = offset;
  if (whence == SEEK_CUR) target = file->position + offset;
  if (whence == SEEK_END) target = size + offset;
  file->position = std::clamp<sf_count_t>(target, 0, size);
  return file->position;
}

sf_count_t memory_read(void* destination, sf_count_t count, void* user) {
  auto* file = static_cast<MemoryFile*>(user);
  const auto size = static_cast<sf_count_t>(file->bytes.size());
  const sf_count_t n = std::clamp<sf_count_t>(size - file->position, 0, std::max<sf_count_t>(count, 0));
  std::memcpy(destination, file->bytes.data() + file->position, static_cast<std::size_t>(n));
  file->position += n;
  return n;
}

sf_count_t memory_write(const void*, sf_count_t, void*) {
  return 0;
}

sf_count_t memory_tell(void* user) {
  return static_cast<MemoryFile*>(user)->position;
}

std::string format_name(int format) {
  switch (format & SF_FORMAT_TYPEMASK) {
    case SF_FORMAT_WAV:
    case SF_FORMAT_WAVEX:
    case SF_FORMAT_RF64:
      return "WAV";
    case SF_FORMAT_FLAC:
      return "FLAC";
    case SF_FORMAT_OGG:
      return (format & SF_FORMAT_SUBMASK) == SF_FORMAT_OPUS ? "OGG/Opus" : "OGG/Vorbis";
    case SF_FORMAT_MPEG:
      return "MP3";
    case SF_FORMAT_AIFF:
      return "AIFF";
    case SF_FORMAT_AU:
      return "AU";
    case SF_FORMAT_CAF:
      return "CAF";
    default:
      return "audio";
  }
}

constexpr std::size_t kBlockFrames = 4096;

}  // namespace

std::string sniff_container(std::string_view b) {
  const auto at = [&](std::size_t offset, std::string_view magic) {
    return b.size() >= offset + magic.size() && b.substr(offset, magic.size()) == magic;
  };
  if (at(0, "RIFF") && at(8, "WAVE")) return "wav";
  if (at(0, "fLaC")) return "flac";
  if (at(0, "OggS")) return "ogg";
  if (at(0, "ID3") || (b.size() >= 2 && static_cast<unsigned char>(b[0]) == 0xFF &&
                       (static_cast<unsigned char>(b[1]) & 0xE0) == 0xE0))
    return "mp3";
  if (at(4, "ftyp")) return "mp4";
  if (at(0, "\x1A\x45\xDF\xA3")) return "webm";
  if (at(0, "#!AMR")) return "amr";
  if (at(0, "FORM")) return "aiff";
  return "";
}

struct Decoder::State {
  MemoryFile file;
  SF_VIRTUAL_IO io{memory_length, memory_seek, memory_read, memory_write, memory_tell};
  SF_INFO sf_info{};
  SNDFILE* handle = nullptr;
  AudioInfo info;
  DecodeLimits limits;
  std::unique_ptr<Resampler> resampler;
  std::vector<float> block;    // interleaved frames as read
  std::vector<float> mono;     // one block averaged
  std::vector<float> pending;  // resampled, not yet handed out
  std::size_t pending_from = 0;
  sf_count_t frames_read = 0;
  std::size_t samples_out = 0;
  bool at_end = false;

  ~State() {
    if (handle) sf_close(handle);
  }

  // Reads one block into `pending`; false at the end of the data.
  bool decode_block() {
    const auto channels = static_cast<std::size_t>(sf_info.channels);
    block.resize(kBlockFrames * channels);
    const sf_count_t got = sf_readf_float(handle, block.data(), static_cast<sf_count_t>(kBlockFrames));
    if (got <= 0) {
      if (const int err = sf_error(handle); err != SF_ERR_NO_ERROR)
        refuse("invalid_audio", "the " + info.format + " data is corrupt after " +
                                    seconds_text(static_cast<double>(frames_read) / sf_info.samplerate) +
                                    " s: " + sf_error_number(err));
      // A header that announced more frames than the data holds: an upload cut short.
      if (sf_info.frames > 0 && sf_info.frames != std::numeric_limits<sf_count_t>::max() &&
          frames_read + sf_info.samplerate / 10 < sf_info.frames)
        refuse("truncated_audio", "the " + info.format + " data ends at " +
                                      seconds_text(static_cast<double>(frames_read) / sf_info.samplerate) +
                                      " s, before the " + seconds_text(info.duration_s) +
                                      " s its header announces: the file is truncated");
      resampler->finish(pending);
      at_end = true;
      return false;
    }
    frames_read += got;
    if (static_cast<double>(frames_read) / sf_info.samplerate > limits.max_seconds)
      refuse("audio_too_long", "the audio is longer than this node's limit of " +
                                   seconds_text(limits.max_seconds) + " s (--audio-max-seconds)");
    mono.resize(static_cast<std::size_t>(got));
    for (std::size_t i = 0; i < mono.size(); ++i) {
      float sum = 0;
      for (std::size_t c = 0; c < channels; ++c) sum += block[i * channels + c];
      mono[i] = sum / static_cast<float>(channels);
    }
    resampler->process(mono, pending);
    return true;
  }
};

Decoder::Decoder(std::string_view bytes, DecodeLimits limits) : state_(std::make_unique<State>()) {
  if (bytes.empty()) refuse("empty_file", "the audio file is empty");
  const std::string container = sniff_container(bytes);
  if (container == "mp4" || container == "webm" || container == "amr")
    refuse("unsupported_audio_format",
           "this node does not decode " + container + " audio; send WAV, FLAC, OGG (Vorbis or Opus) or MP3");
  auto& s = *state_;
  s.file.bytes = bytes;
  s.limits = limits;
  s.handle = sf_open_virtual(&s.io, SFM_READ, &s.sf_info, &s.file);
  if (!s.handle) {
    const std::string why = sf_strerror(nullptr);
    if (container.empty())
      refuse("invalid_audio",
             "the file is not audio this node can decode (WAV, FLAC, OGG Vorbis/Opus, MP3): " + why);
    refuse("invalid_audio", "the " + container + " file cannot be decoded: " + why);
  }
  // 384 kHz is the highest rate real recordings use; a header claiming more would size the resampler's
  // table from it (gigabytes at 2^31 Hz).
  if (s.sf_info.samplerate <= 0 || s.sf_info.samplerate > 384000 || s.sf_info.channels <= 0 ||
      s.sf_info.channels > 64)
    refuse("invalid_audio", "the audio header is invalid (" + std::to_string(s.sf_info.samplerate) + " Hz, " +
                                std::to_string(s.sf_info.channels) +
                                " channels; this node reads 1 to 384000 Hz and 1 to 64 channels)");
  s.info.format = format_name(s.sf_info.format);
  s.info.sample_rate = s.sf_info.samplerate;
  s.info.channels = s.sf_info.channels;
  if (s.sf_info.frames > 0 && s.sf_info.frames != std::numeric_limits<sf_count_t>::max())
    s.info.duration_s = static_cast<double>(s.sf_info.frames) / s.sf_info.samplerate;
  if (s.info.duration_s > limits.max_seconds)
    refuse("audio_too_long", "the audio is " + seconds_text(s.info.duration_s) +
                                 " s long; this node's limit is " + seconds_text(limits.max_seconds) +
                                 " s (--audio-max-seconds)");
  s.resampler = std::make_unique<Resampler>(s.sf_info.samplerate, kSampleRate);
}

Decoder::~Decoder() = default;

const AudioInfo& Decoder::info() const noexcept {
  return state_->info;
}

double Decoder::seconds_read() const noexcept {
  return static_cast<double>(state_->samples_out) / kSampleRate;
}

std::size_t Decoder::read(std::vector<float>& out, std::size_t max_samples) {
  auto& s = *state_;
  while (s.pending.size() - s.pending_from < max_samples && !s.at_end) s.decode_block();
  const std::size_t n = std::min(max_samples, s.pending.size() - s.pending_from);
  const auto from = s.pending.begin() + static_cast<std::ptrdiff_t>(s.pending_from);
  out.insert(out.end(), from, from + static_cast<std::ptrdiff_t>(n));
  s.pending_from += n;
  if (s.pending_from > (1u << 16)) {  // keep the held-back samples small
    s.pending.erase(s.pending.begin(), s.pending.begin() + static_cast<std::ptrdiff_t>(s.pending_from));
    s.pending_from = 0;
  }
  s.samples_out += n;
  return n;
}

std::vector<float> decode_all(std::string_view bytes, DecodeLimits limits) {
  Decoder decoder(bytes, limits);
  std::vector<float> out;
  while (decoder.read(out, 1u << 20) > 0) {
  }
  return out;
}

}  // namespace clawbot::audio
