// Test helper: converts an audio file into the format its output name says (.mp3, .opus, .ogg, .flac, .wav)
// with libsndfile, for the tests' fixtures (Debian's sox writes no MP3 and no Opus).
//   audio_encode IN OUT   (Opus takes 8, 12, 16, 24 or 48 kHz input: resample with sox first)
#include <sndfile.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: audio_encode IN OUT\n");
    return 2;
  }
  SF_INFO in_info{};
  SNDFILE* in = sf_open(argv[1], SFM_READ, &in_info);
  if (!in) {
    std::fprintf(stderr, "audio_encode: %s: %s\n", argv[1], sf_strerror(nullptr));
    return 1;
  }
  const std::string out_name = argv[2];
  const std::string ext = out_name.substr(out_name.rfind('.') + 1);
  SF_INFO out_info{};
  out_info.channels = in_info.channels;
  out_info.samplerate = in_info.samplerate;
  if (ext == "mp3")
    out_info.format = SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III;
  else if (ext == "opus")
    out_info.format = SF_FORMAT_OGG | SF_FORMAT_OPUS;
  else if (ext == "ogg")
    out_info.format = SF_FORMAT_OGG | SF_FORMAT_VORBIS;
  else if (ext == "flac")
    out_info.format = SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
  else
    out_info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE* out = sf_open(argv[2], SFM_WRITE, &out_info);
  if (!out) {
    std::fprintf(stderr, "audio_encode: %s: %s\n", argv[2], sf_strerror(nullptr));
    return 1;
  }
  std::vector<float> block(4096 * static_cast<std::size_t>(in_info.channels));
  sf_count_t got = 0;
  while ((got = sf_readf_float(in, block.data(), 4096)) > 0) sf_writef_float(out, block.data(), got);
  sf_close(in);
  sf_close(out);
  return 0;
}
