// The engine: RAII over libllama. Knows nothing of HTTP or JSON.
// Errors are thrown as engine::EngineError (or ModelFileError for a bad file) with a message for people.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

struct llama_model;
struct llama_context;
struct llama_vocab;
struct llama_sampler;

namespace clawbot::engine {

using Token = std::int32_t;

class EngineError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A model file that is missing, not GGUF, damaged or truncated. The message names the file and the problem.
class ModelFileError : public EngineError {
 public:
  using EngineError::EngineError;
};

// Once per process: libllama backends and log routing. verbose=false keeps only warnings and errors.
void init_backend(bool verbose);
std::string llama_release();  // the llama.cpp release the engine was built from

// Reads only the GGUF header and tensor table and checks the file against it; throws ModelFileError.
void check_gguf_file(const std::string& path);

struct ModelInfo {
  std::string path;
  std::string name;           // file name without .gguf
  std::string architecture;   // general.architecture
  std::string description;    // llama_model_desc, e.g. "llama ?B all F32"
  std::string chat_template;  // the model's own template; empty when it has none
  std::int64_t n_ctx_train = 0;
  std::uint64_t n_params = 0;
  std::uint64_t size_bytes = 0;
  std::int32_t n_vocab = 0;
  std::int32_t n_layer = 0;
  std::int32_t n_embd = 0;
  bool is_embedding = false;  // an encoder / non-causal model meant for embeddings
};

struct ModelOptions {
  std::string path;
  bool vocab_only = false;     // tokenizer and metadata only (no weights)
  bool show_progress = false;  // a progress bar on stderr
  int n_gpu_layers = -1;       // -1: as many as the backend takes
};

class Model {
 public:
  static Model load(const ModelOptions& options);
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelInfo& info() const noexcept { return info_; }
  std::optional<std::string> meta(const std::string& key) const;
  llama_model* get() const noexcept { return model_.get(); }
  const llama_vocab* vocab() const noexcept;

 private:
  struct Deleter {
    void operator()(llama_model* m) const noexcept;
  };
  Model() = default;
  std::unique_ptr<llama_model, Deleter> model_;
  ModelInfo info_;
};

class Tokenizer {
 public:
  explicit Tokenizer(const Model& model);
  // add_special: BOS/EOS as the model wants them; parse_special: "<|im_start|>" becomes its token.
  std::vector<Token> tokenize(std::string_view text, bool add_special, bool parse_special) const;
  std::string piece(Token token, bool render_special = false) const;
  std::string detokenize(std::span<const Token> tokens, bool render_special = false) const;
  bool is_end_of_generation(Token token) const;
  Token bos() const;
  Token eos() const;
  std::int32_t n_vocab() const;

 private:
  const llama_vocab* vocab_;
};

// Turns token pieces into text that is always whole UTF-8: a character split across tokens is held back
// until its last byte arrives.
class Utf8StreamDecoder {
 public:
  std::string push(std::string_view bytes);
  // What is left at the end; an incomplete sequence becomes U+FFFD.
  std::string flush();

 private:
  std::string pending_;
};

struct ChatMessage {
  std::string role;
  std::string content;
};

class ChatTemplate {
 public:
  // The model's own template; throws EngineError naming the built-ins when the model has none.
  static ChatTemplate from_model(const Model& model);
  // A built-in template by name (chatml, llama3, phi3, ...); throws EngineError listing the names.
  static ChatTemplate builtin(std::string_view name);
  static std::vector<std::string> builtin_names();

  std::string apply(std::span<const ChatMessage> messages, bool add_assistant_prefix) const;
  const std::string& source() const noexcept { return source_; }
  const std::string& name() const noexcept { return name_; }

 private:
  ChatTemplate(std::string name, std::string source) : name_(std::move(name)), source_(std::move(source)) {}
  std::string name_;
  std::string source_;
};

inline constexpr std::uint32_t random_seed = 0xFFFFFFFF;

struct SamplingParams {
  float temperature = 0.8f;  // 0 = greedy
  float top_p = 0.95f;
  int top_k = 40;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;  // 1 = off
  int repeat_last_n = 64;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  std::uint32_t seed = random_seed;
};

class Context;

class Sampler {
 public:
  Sampler(const SamplingParams& params, const Model& model);
  Sampler(Sampler&&) noexcept;
  Sampler& operator=(Sampler&&) noexcept;
  ~Sampler();
  // Samples from the logits of batch row `row` (-1: the last) and accepts the token.
  Token sample(Context& context, int row = -1);

 private:
  struct Deleter {
    void operator()(llama_sampler* s) const noexcept;
  };
  std::unique_ptr<llama_sampler, Deleter> chain_;
};

struct ContextOptions {
  std::uint32_t n_ctx = 0;  // 0: the model's training context
  std::uint32_t n_batch = 512;
  int n_threads = 0;  // 0: all hardware threads
};

enum class DecodeStatus { ok, no_kv_slot, aborted, failed };

class Context {
 public:
  Context(const Model& model, const ContextOptions& options);
  Context(Context&&) noexcept;
  Context& operator=(Context&&) noexcept;
  ~Context();

  std::uint32_t n_ctx() const noexcept { return n_ctx_; }
  std::uint32_t n_batch() const noexcept { return n_batch_; }
  void clear();  // forget every cached token
  // Decodes tokens at positions start_pos.. of sequence 0, in chunks of n_batch; logits for the last one.
  DecodeStatus decode(std::span<const Token> tokens, int start_pos);
  llama_context* get() const noexcept { return context_.get(); }

 private:
  struct Deleter {
    void operator()(llama_context* c) const noexcept;
  };
  std::unique_ptr<llama_context, Deleter> context_;
  std::uint32_t n_ctx_ = 0;
  std::uint32_t n_batch_ = 0;
};

}  // namespace clawbot::engine
