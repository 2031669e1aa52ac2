// whisper.cpp's model files (ggml-tiny.bin, ggml-large-v3-turbo-q5_0.bin, ...): the legacy ggml format that
// whisper.cpp reads (magic "ggml", eleven int32 hyper-parameters, mel filters, vocabulary, tensors). Read
// without whisper.cpp (for `clawbot models`, plan, verify), and written with random weights in the shape of
// a real model (`clawbot models synth whisper-tiny`), labelled synthetic.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace clawbot::audio {

struct WhisperHparams {
  std::int32_t n_vocab = 0;
  std::int32_t n_audio_ctx = 0;
  std::int32_t n_audio_state = 0;
  std::int32_t n_audio_head = 0;
  std::int32_t n_audio_layer = 0;
  std::int32_t n_text_ctx = 0;
  std::int32_t n_text_state = 0;
  std::int32_t n_text_head = 0;
  std::int32_t n_text_layer = 0;
  std::int32_t n_mels = 0;
  std::int32_t ftype =
      0;  // 0 f32, 1 f16, 2 q4_0, 3 q4_1, 7 q8_0, 8 q5_0, 9 q5_1 (+ 1000 × quantization version)
};

struct WhisperFileInfo {
  WhisperHparams hparams;
  std::string size_name;    // tiny, base, small, medium, large (by encoder layers), "large-v3-turbo", ...
  std::string weight_type;  // f32, f16, q5_0, ...
  bool multilingual = false;
  std::uint64_t file_bytes = 0;
  std::uint64_t tensor_bytes = 0;
  std::uint64_t n_params = 0;
  std::size_t n_tensors = 0;
  std::string synthetic;  // the label of a file `models synth` wrote ("whisper-tiny f16 seed 1"), else empty
};

// True when `path` starts with whisper.cpp's magic (a .bin that is a whisper model).
bool is_whisper_file(const std::filesystem::path& path);
// Reads and checks the whole layout (bounded; no tensor data read). Throws ClawbotError invalid_request
// naming what is wrong.
WhisperFileInfo read_whisper_file(const std::filesystem::path& path);

// What whisper.cpp allocates besides the weights for one transcription (self and cross-attention caches for
// `decoders`, compute buffers): an estimate for the planner.
std::uint64_t whisper_runtime_bytes(const WhisperHparams& hparams, int decoders = 1);

struct WhisperShape {
  std::string name;  // whisper-tiny, whisper-base, ...
  WhisperHparams hparams;
};
const std::vector<WhisperShape>& whisper_shapes();
const WhisperShape* find_whisper_shape(const std::string& name);

// Writes `shape` with random weights (f16, or f32 with `f32`) and a vocabulary of made-up words; the label
// is the text of a special token whisper.cpp never emits.
// The label write_synthetic_whisper gives (what WhisperFileInfo::synthetic reads back).
std::string synthetic_whisper_label(const WhisperShape& shape, bool f32, std::uint64_t seed);
void write_synthetic_whisper(const std::filesystem::path& path, const WhisperShape& shape, bool f32,
                             std::uint64_t seed);

}  // namespace clawbot::audio
