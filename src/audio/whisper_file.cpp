#include "audio/whisper_file.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "common/error.h"

namespace clawbot::audio {
namespace {

constexpr std::uint32_t kMagic = 0x67676d6c;  // "ggml", little-endian
constexpr std::int32_t kMaxVocab = 1 << 20;
constexpr std::int32_t kGenerator = 2;  // bump when synthetic files change
const std::string kSyntheticPrefix = "clawbot.synthetic ";

[[noreturn]] void bad_file(const std::filesystem::path& path, const std::string& why) {
  throw ClawbotError(ErrorKind::invalid_request, path.string() + ": not a whisper.cpp model file: " + why);
}

struct TensorSpec {
  std::string name;
  std::array<std::int64_t, 3> ne{1, 1, 1};
  int n_dims = 1;
  enum Kind { f32, weight, conv } kind = f32;
};

// whisper.cpp's tensors (src/whisper.cpp, whisper_model_load) in its order and shapes.
std::vector<TensorSpec> tensor_layout(const WhisperHparams& h) {
  std::vector<TensorSpec> t;
  const auto add = [&](std::string name, TensorSpec::Kind kind, std::initializer_list<std::int64_t> ne) {
    TensorSpec spec{std::move(name), {1, 1, 1}, static_cast<int>(ne.size()), kind};
    std::size_t i = 0;
    for (const auto n : ne) spec.ne[i++] = n;
    t.push_back(std::move(spec));
  };
  const std::int64_t as = h.n_audio_state, ts = h.n_text_state;
  add("encoder.positional_embedding", TensorSpec::f32, {as, h.n_audio_ctx});
  add("encoder.conv1.weight", TensorSpec::conv, {3, h.n_mels, as});
  add("encoder.conv1.bias", TensorSpec::f32, {1, as});
  add("encoder.conv2.weight", TensorSpec::conv, {3, as, as});
  add("encoder.conv2.bias", TensorSpec::f32, {1, as});
  add("encoder.ln_post.weight", TensorSpec::f32, {as});
  add("encoder.ln_post.bias", TensorSpec::f32, {as});
  const auto block = [&](const std::string& p, std::int64_t s, bool cross) {
    add(p + "mlp_ln.weight", TensorSpec::f32, {s});
    add(p + "mlp_ln.bias", TensorSpec::f32, {s});
    add(p + "mlp.0.weight", TensorSpec::weight, {s, 4 * s});
    add(p + "mlp.0.bias", TensorSpec::f32, {4 * s});
    add(p + "mlp.2.weight", TensorSpec::weight, {4 * s, s});
    add(p + "mlp.2.bias", TensorSpec::f32, {s});
    for (const std::string& attn :
         cross ? std::vector<std::string>{"attn", "cross_attn"} : std::vector<std::string>{"attn"}) {
      add(p + attn + "_ln.weight", TensorSpec::f32, {s});
      add(p + attn + "_ln.bias", TensorSpec::f32, {s});
      add(p + attn + ".query.weight", TensorSpec::weight, {s, s});
      add(p + attn + ".query.bias", TensorSpec::f32, {s});
      add(p + attn + ".key.weight", TensorSpec::weight, {s, s});
      add(p + attn + ".value.weight", TensorSpec::weight, {s, s});
      add(p + attn + ".value.bias", TensorSpec::f32, {s});
      add(p + attn + ".out.weight", TensorSpec::weight, {s, s});
      add(p + attn + ".out.bias", TensorSpec::f32, {s});
    }
  };
  for (int i = 0; i < h.n_audio_layer; ++i) block("encoder.blocks." + std::to_string(i) + ".", as, false);
  add("decoder.positional_embedding", TensorSpec::f32, {ts, h.n_text_ctx});
  add("decoder.token_embedding.weight", TensorSpec::weight, {ts, h.n_vocab});
  add("decoder.ln.weight", TensorSpec::f32, {ts});
  add("decoder.ln.bias", TensorSpec::f32, {ts});
  for (int i = 0; i < h.n_text_layer; ++i) block("decoder.blocks." + std::to_string(i) + ".", ts, true);
  return t;
}

// Bytes of `elements` values of ggml type `type`; 0 for a type this reader does not know.
std::uint64_t type_bytes(std::int32_t type, std::uint64_t elements) {
  struct Block {
    std::int32_t type;
    std::uint64_t block, bytes;
  };
  static constexpr Block blocks[] = {
      {0, 1, 4},   {1, 1, 2},     {2, 32, 18},    {3, 32, 20},    {6, 32, 22},    {7, 32, 24},    {8, 32, 34},
      {9, 32, 36}, {10, 256, 84}, {11, 256, 110}, {12, 256, 144}, {13, 256, 176}, {14, 256, 210}, {30, 1, 2}};
  for (const auto& b : blocks)
    if (b.type == type) return elements / b.block * b.bytes;
  return 0;
}

std::string ftype_name(std::int32_t ftype) {
  switch (ftype % 1000) {
    case 0:
      return "f32";
    case 1:
      return "f16";
    case 2:
      return "q4_0";
    case 3:
      return "q4_1";
    case 7:
      return "q8_0";
    case 8:
      return "q5_0";
    case 9:
      return "q5_1";
    case 10:
      return "q2_k";
    case 11:
      return "q3_k";
    case 12:
      return "q4_k";
    case 13:
      return "q5_k";
    case 14:
      return "q6_k";
    default:
      return "ftype " + std::to_string(ftype);
  }
}

std::string size_name(const WhisperHparams& h) {
  switch (h.n_audio_layer) {
    case 4:
      return "tiny";
    case 6:
      return "base";
    case 12:
      return "small";
    case 24:
      return "medium";
    case 32:
      return h.n_text_layer == 4 ? "large-v3-turbo" : (h.n_vocab == 51866 ? "large-v3" : "large");
    default:
      return std::to_string(h.n_audio_layer) + "-layer";
  }
}

std::uint16_t to_half(float value) {
  const auto bits = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const int exponent = static_cast<int>((bits >> 23) & 0xFF) - 127 + 15;
  std::uint32_t mantissa = bits & 0x7FFFFFu;
  if (exponent <= 0) return static_cast<std::uint16_t>(sign);  // tiny values: zero (random weights only)
  if (exponent >= 31) return static_cast<std::uint16_t>(sign | 0x7C00u);
  mantissa += 0x1000u;  // round to nearest
  if (mantissa & 0x800000u)
    return static_cast<std::uint16_t>(sign | (static_cast<std::uint32_t>(exponent + 1) << 10));
  return static_cast<std::uint16_t>(sign | (static_cast<std::uint32_t>(exponent) << 10) | (mantissa >> 13));
}

// Made-up words for the vocabulary, so that a synthetic model's (random) output reads as words.
std::string made_up_token(std::int32_t id) {
  static constexpr const char* syllables[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da",
                                              "fe", "go", "hi", "ju", "po", "re", "so", "tu", "wa", "ze"};
  if (id == 94) return " ";  // whisper.cpp looks " " up (suppress_blank)
  if (id < 94) return std::string(1, static_cast<char>('!' + id));  // printable ASCII first
  std::string word = id % 3 == 0 ? "" : " ";
  for (std::int32_t n = id; n > 0; n /= 20) word += syllables[n % 20];
  return word;
}

std::string special_token(const WhisperHparams& h, std::int32_t id) {
  const bool multilingual = h.n_vocab >= 51865;
  const std::int32_t eot = multilingual ? 50257 : 50256;
  const std::int32_t languages = h.n_vocab - 51765 - (multilingual ? 1 : 0);
  const std::int32_t sot = eot + 1;
  const std::int32_t translate = sot + languages + 1;
  const char* names[] = {"[_TRANSLATE_]", "[_TRANSCRIBE_]", "[_SOLM_]", "[_PREV_]",
                         "[_NOSP_]",      "[_NOT_]",        "[_BEG_]"};
  if (id == eot) return "[_EOT_]";
  if (id == sot) return "[_SOT_]";
  if (id > sot && id < translate) return "[_LANG_" + std::to_string(id - sot - 1) + "]";
  if (id >= translate && id < translate + 7) return names[id - translate];
  if (id >= translate + 7) return "[_TT_" + std::to_string(id - translate - 6) + "]";
  return made_up_token(id);
}

class Reader {
 public:
  explicit Reader(const std::filesystem::path& path) : path_(path), in_(path, std::ios::binary) {
    if (!in_) throw ClawbotError(ErrorKind::not_found, path.string() + ": cannot open");
    size_ = std::filesystem::file_size(path);
  }
  template <class T>
  T value(const char* what) {
    T v{};
    if (!in_.read(reinterpret_cast<char*>(&v), sizeof v))
      bad_file(path_, std::string("truncated in ") + what);
    return v;
  }
  void skip(std::uint64_t bytes, const char* what) {
    in_.seekg(static_cast<std::streamoff>(bytes), std::ios::cur);
    if (!in_ || static_cast<std::uint64_t>(static_cast<std::streamoff>(in_.tellg())) > size_)
      bad_file(path_, std::string("truncated in ") + what);
  }
  std::string text(std::uint32_t bytes, const char* what) {
    std::string s(bytes, '\0');
    if (!in_.read(s.data(), bytes)) bad_file(path_, std::string("truncated in ") + what);
    return s;
  }
  bool at_end() { return in_.peek() == std::char_traits<char>::eof(); }
  std::uint64_t size() const { return size_; }

 private:
  std::filesystem::path path_;
  std::ifstream in_;
  std::uint64_t size_ = 0;
};

}  // namespace

bool is_whisper_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::uint32_t magic = 0;
  return in.read(reinterpret_cast<char*>(&magic), sizeof magic) && magic == kMagic;
}

WhisperFileInfo read_whisper_file(const std::filesystem::path& path) {
  Reader r(path);
  if (r.value<std::uint32_t>("magic") != kMagic) bad_file(path, "no ggml magic");
  WhisperFileInfo info;
  auto& h = info.hparams;
  for (std::int32_t* field :
       {&h.n_vocab, &h.n_audio_ctx, &h.n_audio_state, &h.n_audio_head, &h.n_audio_layer, &h.n_text_ctx,
        &h.n_text_state, &h.n_text_head, &h.n_text_layer, &h.n_mels, &h.ftype})
    *field = r.value<std::int32_t>("hyper-parameters");
  for (const std::int32_t v : {h.n_vocab, h.n_audio_ctx, h.n_audio_state, h.n_audio_head, h.n_audio_layer,
                               h.n_text_ctx, h.n_text_state, h.n_text_head, h.n_text_layer, h.n_mels})
    if (v <= 0 || v > kMaxVocab) bad_file(path, "a hyper-parameter out of range (" + std::to_string(v) + ")");
  const auto n_mel = r.value<std::int32_t>("mel filters");
  const auto n_fft = r.value<std::int32_t>("mel filters");
  if (n_mel <= 0 || n_fft <= 0 || n_mel > 1024 || n_fft > 4096)
    bad_file(path, "mel filter size out of range");
  r.skip(static_cast<std::uint64_t>(n_mel) * static_cast<std::uint64_t>(n_fft) * 4, "mel filters");
  const auto n_tokens = r.value<std::int32_t>("vocabulary");
  if (n_tokens < 0 || n_tokens > kMaxVocab) bad_file(path, "vocabulary size out of range");
  // whisper.cpp pads a shorter vocabulary, but aborts the process on a longer one (an assertion while
  // decoding).
  if (n_tokens > h.n_vocab)
    bad_file(path, "the vocabulary has " + std::to_string(n_tokens) + " entries, more than n_vocab " +
                       std::to_string(h.n_vocab));
  for (std::int32_t i = 0; i < n_tokens; ++i) {
    const auto len = r.value<std::uint32_t>("vocabulary");
    if (len > 4096) bad_file(path, "a vocabulary entry longer than 4096 bytes");
    if (i >= 50256) {  // the special tokens, where a synthetic file's label is
      std::string token = r.text(len, "vocabulary");
      if (token.starts_with(kSyntheticPrefix)) info.synthetic = token.substr(kSyntheticPrefix.size());
    } else {
      r.skip(len, "vocabulary");
    }
  }
  while (!r.at_end()) {
    const auto n_dims = r.value<std::int32_t>("tensor header");
    const auto name_len = r.value<std::int32_t>("tensor header");
    const auto type = r.value<std::int32_t>("tensor header");
    if (n_dims < 1 || n_dims > 4 || name_len <= 0 || name_len > 512)
      bad_file(path, "a malformed tensor header");
    std::uint64_t elements = 1;
    for (int i = 0; i < n_dims; ++i) {
      const auto ne = r.value<std::int32_t>("tensor shape");
      if (ne <= 0) bad_file(path, "a tensor dimension out of range");
      elements *= static_cast<std::uint64_t>(ne);
    }
    const std::string name = r.text(static_cast<std::uint32_t>(name_len), "tensor name");
    const std::uint64_t bytes = type_bytes(type, elements);
    if (bytes == 0) bad_file(path, "tensor " + name + " has an unknown type " + std::to_string(type));
    r.skip(bytes, "tensor data");
    info.tensor_bytes += bytes;
    info.n_params += elements;
    ++info.n_tensors;
  }
  info.size_name = size_name(h);
  info.weight_type = ftype_name(h.ftype);
  info.multilingual = h.n_vocab >= 51865;
  info.file_bytes = r.size();
  return info;
}

std::uint64_t whisper_runtime_bytes(const WhisperHparams& h, int decoders) {
  const auto u = [](std::int32_t v) { return static_cast<std::uint64_t>(v); };
  const std::uint64_t kv_self = 2 * 2 * u(h.n_text_layer) * u(h.n_text_ctx) * u(h.n_text_state) * u(decoders);
  const std::uint64_t kv_cross = 2 * 2 * u(h.n_text_layer) * u(h.n_audio_ctx) * u(h.n_text_state);
  // The encoder's graph dominates the compute buffers: activations of the audio context, attention scores
  // per head, and the decoder's logits over the vocabulary for each decoder.
  const std::uint64_t encode = u(h.n_audio_ctx) * u(h.n_audio_state) * 4 * 16 +
                               u(h.n_audio_ctx) * u(h.n_audio_ctx) * u(h.n_audio_head) * 4;
  const std::uint64_t decode =
      u(h.n_vocab) * 4 * u(decoders) * 4 + u(h.n_text_ctx) * u(h.n_text_state) * 4 * 16;
  return kv_self + kv_cross + encode + decode;
}

const std::vector<WhisperShape>& whisper_shapes() {
  static const std::vector<WhisperShape> shapes = {
      {"whisper-tiny", {51865, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1}},
      {"whisper-base", {51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 1}},
      {"whisper-small", {51865, 1500, 768, 12, 12, 448, 768, 12, 12, 80, 1}},
  };
  return shapes;
}

const WhisperShape* find_whisper_shape(const std::string& name) {
  for (const auto& shape : whisper_shapes())
    if (shape.name == name) return &shape;
  return nullptr;
}

std::string synthetic_whisper_label(const WhisperShape& shape, bool f32, std::uint64_t seed) {
  return shape.name + " " + (f32 ? "f32" : "f16") + " seed " + std::to_string(seed) + " generator " +
         std::to_string(kGenerator);
}

void write_synthetic_whisper(const std::filesystem::path& path, const WhisperShape& shape, bool f32,
                             std::uint64_t seed) {
  WhisperHparams h = shape.hparams;
  h.ftype = f32 ? 0 : 1;
  const std::filesystem::path partial = path.string() + ".partial";
  std::ofstream out(partial, std::ios::binary | std::ios::trunc);
  if (!out) throw ClawbotError(ErrorKind::internal, "cannot write " + partial.string());
  const auto put = [&](const auto& v) { out.write(reinterpret_cast<const char*>(&v), sizeof v); };
  put(kMagic);
  for (const std::int32_t v :
       {h.n_vocab, h.n_audio_ctx, h.n_audio_state, h.n_audio_head, h.n_audio_layer, h.n_text_ctx,
        h.n_text_state, h.n_text_head, h.n_text_layer, h.n_mels, h.ftype})
    put(v);
  // Mel filters: triangles over the 201 FFT bins, as whisper's are in shape.
  const std::int32_t n_fft = 201;
  put(h.n_mels);
  put(n_fft);
  for (std::int32_t m = 0; m < h.n_mels; ++m) {
    const double centre = (m + 1) * static_cast<double>(n_fft - 1) / (h.n_mels + 1);
    for (std::int32_t f = 0; f < n_fft; ++f)
      put(static_cast<float>(std::max(0.0, 1.0 - std::abs(f - centre) / 2.5) * 0.02));
  }
  // Vocabulary: every id named (exactly n_vocab entries, as whisper.cpp checks). The label is the text of the
  // no-op special token (token_not), which whisper.cpp never emits: its logit is always -inf.
  put(h.n_vocab);
  const auto put_token = [&](const std::string& token) {
    put(static_cast<std::uint32_t>(token.size()));
    out.write(token.data(), static_cast<std::streamsize>(token.size()));
  };
  const std::string label = kSyntheticPrefix + synthetic_whisper_label(shape, f32, seed);
  for (std::int32_t id = 0; id < h.n_vocab; ++id) {
    const std::string token = special_token(h, id);
    put_token(token == "[_NOT_]" ? label : token);
  }
  // Tensors: layer norms at 1 and 0, the rest normal with a small deviation (stable activations).
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<char> data;
  for (const auto& t : tensor_layout(h)) {
    const bool half = t.kind != TensorSpec::f32 && !f32;
    const std::int64_t n = t.ne[0] * t.ne[1] * t.ne[2];
    put(static_cast<std::int32_t>(t.n_dims));
    put(static_cast<std::int32_t>(t.name.size()));
    put(static_cast<std::int32_t>(half ? 1 : 0));
    for (int i = 0; i < t.n_dims; ++i) put(static_cast<std::int32_t>(t.ne[static_cast<std::size_t>(i)]));
    out.write(t.name.data(), static_cast<std::streamsize>(t.name.size()));
    const bool norm_weight = t.name.ends_with("ln.weight") || t.name.ends_with("ln_post.weight");
    const bool norm_bias = t.name.ends_with("ln.bias") || t.name.ends_with("ln_post.bias");
    data.resize(static_cast<std::size_t>(n) * (half ? 2 : 4));
    for (std::int64_t i = 0; i < n; ++i) {
      const float v = norm_weight ? 1.0f : norm_bias ? 0.0f : normal(rng);
      if (half) {
        const std::uint16_t hv = to_half(v);
        std::memcpy(data.data() + i * 2, &hv, 2);
      } else {
        std::memcpy(data.data() + i * 4, &v, 4);
      }
    }
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
  }
  out.close();
  if (!out) throw ClawbotError(ErrorKind::internal, "writing " + partial.string() + " failed (disk full?)");
  std::filesystem::rename(partial, path);
}

}  // namespace clawbot::audio
