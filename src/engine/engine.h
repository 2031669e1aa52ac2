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

#include "common/error.h"

struct llama_model;
struct llama_context;
struct llama_vocab;
struct llama_sampler;
struct llama_token_data;
struct llama_batch;
struct ggml_threadpool;

namespace clawbot::engine {

using Token = std::int32_t;

class EngineError : public ClawbotError {
 public:
  explicit EngineError(const std::string& message) : ClawbotError(ErrorKind::internal, message) {}
};

// A model file that is missing, not GGUF, damaged or truncated. The message names the file and the problem.
class ModelFileError : public EngineError {
 public:
  using EngineError::EngineError;
};

// Once per process: libllama backends and log routing. verbose=false keeps only warnings and errors.
void init_backend(bool verbose);
std::string llama_release();  // the llama.cpp release the engine was built from

// A GPU libllama can offload layers to (CUDA, Vulkan, Metal; integrated GPUs too), with its memory as the
// backend reports it now. Empty on a CPU-only build.
struct Accelerator {
  std::string name;         // the backend's device name, e.g. CUDA0
  std::string description;  // e.g. NVIDIA H200
  std::uint64_t free_bytes = 0;
  std::uint64_t total_bytes = 0;
};
std::vector<Accelerator> accelerators();

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
  bool is_embedding = false;             // an encoder / non-causal model meant for embeddings
  bool is_recurrent = false;             // state that cannot be cut back to an earlier position
  bool is_hybrid = false;                // recurrent and attention layers
  std::int32_t n_swa = 0;                // sliding-window size, 0 when none
  std::int32_t pooling = -1;             // llama_pooling_type from the metadata (-1: unspecified)
  std::vector<Token> end_of_generation;  // every token that ends a generation (EOS, end of turn, ...)
  // Whether the cache of a sequence can be cut back to any earlier position (plain attention).
  bool can_truncate_cache() const noexcept { return !is_recurrent && !is_hybrid && n_swa == 0; }
};

struct ModelOptions {
  std::string path;
  bool vocab_only = false;     // tokenizer and metadata only (no weights)
  bool show_progress = false;  // a progress bar on stderr
  int n_gpu_layers = -1;       // layers on the GPU (the output layer counts as one more); -1: all
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
  // Bytes of KV cache one token position takes in every layer (keys and values), for a cache type
  // (f16, q8_0, q4_0). An estimate for recurrent layers, whose state does not grow with the context.
  double kv_bytes_per_cell(const std::string& kv_type) const;

 private:
  struct Deleter {
    void operator()(llama_model* m) const noexcept;
  };
  Model() = default;
  std::unique_ptr<llama_model, Deleter> model_;
  ModelInfo info_;
};

// The fill-in-the-middle tokens of a code model (<fim_prefix>, <|fim_suffix|>, <PRE>, ...); pre, suf and mid
// are always set, the others are absent (-1) in many vocabularies.
struct FimTokens {
  Token pre = -1;
  Token suf = -1;
  Token mid = -1;
  Token pad = -1;
  Token rep = -1;  // repository name (Qwen2.5-Coder's repo-level format)
  Token sep = -1;  // file separator
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
  bool adds_bos() const;  // whether tokenize(add_special=true) puts BOS first
  std::int32_t n_vocab() const;
  // nullopt when the vocabulary lacks any of the prefix, suffix and middle tokens: no fill-in-the-middle.
  std::optional<FimTokens> fim() const;

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
  bool ignore_eos = false;  // never end on an end-of-generation token (benchmarks run to max_tokens)
  // A GBNF grammar the output must follow (tool calls, structured output; llama.cpp's grammar sampler);
  // empty: none. Lazy: free text until a trigger appears (a token, or text matching a pattern), then the
  // grammar from the trigger on (tool calls with tool_choice "auto").
  std::string grammar;
  bool grammar_lazy = false;
  std::vector<std::string> grammar_trigger_patterns;  // regexes, as llama_sampler_init_grammar_lazy_patterns
  std::vector<Token> grammar_trigger_tokens;
};

// A grammar (or its trigger patterns or tokens) that libllama cannot use, or one that allows no next token:
// the request's fault, a 400 naming the field ("grammar" unless a trigger is at fault).
class GrammarError : public ClawbotError {
 public:
  explicit GrammarError(const std::string& message, std::string param = "grammar")
      : ClawbotError(Error{ErrorKind::invalid_request, message, std::move(param), "invalid_grammar"}) {}
};

// Parses the grammar of `params` (and checks its triggers) as Sampler would; throws GrammarError. For routes,
// which must refuse a bad grammar before their answer starts.
void check_grammar(const Model& model, const SamplingParams& params);

class Context;

class Sampler {
 public:
  // Throws GrammarError for a grammar libllama cannot use.
  Sampler(const SamplingParams& params, const Model& model);
  Sampler(Sampler&&) noexcept;
  Sampler& operator=(Sampler&&) noexcept;
  ~Sampler();
  // Samples from the logits of batch row `row` (-1: the last) and accepts the token; `banned` tokens are
  // never drawn (min_tokens keeps end-of-generation tokens out until then). With a grammar: throws
  // GrammarError when the grammar allows no token; when it allows only the end of generation (it is
  // complete) that token comes, banned or not.
  Token sample(Context& context, int row = -1, std::span<const Token> banned = {});

 private:
  struct Deleter {
    void operator()(llama_sampler* s) const noexcept;
  };
  Token sample_with_grammar(const float* logits);
  bool grammar_allows(Token token);
  Token draw(const float* logits, bool constrained);  // the chain's pick (first applying the grammar)
  Token greedy_allowed(const float* logits);          // the best token the grammar allows
  Token end_if_complete();                            // when the grammar allows nothing else
  void fill_candidates(const float* logits);

  std::unique_ptr<llama_sampler, Deleter> chain_;
  std::unique_ptr<llama_sampler, Deleter> grammar_;  // null: no grammar
  // Greedy without penalties keeps no state, so sample() takes the row's argmax itself rather than have the
  // chain copy all n_vocab logits into candidates every token (tens of microseconds at a 50K vocabulary).
  // With a grammar the argmax is then checked against it, as llama.cpp's common_sampler checks its draw.
  bool plain_greedy_ = false;
  std::span<const Token> never_;  // ignore_eos: the model's end-of-generation tokens, banned like `banned`
  std::span<const Token> end_of_generation_;
  std::int32_t n_vocab_ = 0;
  int generated_ = 0;                         // tokens accepted, for errors
  std::vector<llama_token_data> candidates_;  // the row's logits, reused (grammar sampling)
};

enum class FlashAttention { automatic, on, off };

struct ContextOptions {
  std::uint32_t n_ctx = 0;  // total KV cells; 0: the model's training context
  std::uint32_t n_batch = 512;
  std::uint32_t n_seq_max = 1;  // sequences that may live in the cache together
  int n_threads = 0;            // 0: all hardware threads
  FlashAttention flash_attn = FlashAttention::automatic;
  std::string kv_type = "f16";  // f16, q8_0 or q4_0, for keys and values
  bool embeddings = false;      // pooled embeddings instead of logits
  // One cache for all sequences (a shared prefix is stored once) or one stream per sequence (each token
  // attends only to its own sequence's cells: faster when many sequences decode together).
  bool kv_unified = false;
};

enum class DecodeStatus { ok, no_kv_slot, aborted, failed };

// A batch of tokens for one llama_decode; each token belongs to one sequence.
class Batch {
 public:
  explicit Batch(std::uint32_t capacity);
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  ~Batch();
  // Returns the row of this token; its logits (or embedding) are read by that row when `output` is set.
  int add(Token token, int pos, int seq, bool output);
  void clear() noexcept;
  int size() const noexcept;
  std::uint32_t capacity() const noexcept { return capacity_; }
  llama_batch& get() noexcept { return *batch_; }

 private:
  std::unique_ptr<llama_batch> batch_;  // its arrays are freed by llama_batch_free in ~Batch
  std::uint32_t capacity_;
};

class Context {
 public:
  Context(const Model& model, const ContextOptions& options);
  Context(Context&&) noexcept;
  Context& operator=(Context&&) noexcept;
  ~Context();

  std::uint32_t n_ctx() const noexcept { return n_ctx_; }
  std::uint32_t n_batch() const noexcept { return n_batch_; }
  std::uint32_t n_seq_max() const noexcept { return n_seq_max_; }
  bool kv_unified() const noexcept { return kv_unified_; }
  void clear();  // forget every cached token
  // Decodes tokens at positions start_pos.. of sequence 0, in chunks of n_batch; logits for the last one.
  DecodeStatus decode(std::span<const Token> tokens, int start_pos);
  DecodeStatus decode(Batch& batch);

  // Per-sequence cache operations (positions [p0, p1), p1 < 0: to the end).
  bool seq_remove(int seq, int p0, int p1 = -1);
  // Makes dst hold src's first `length` positions (shared cells in a unified cache, a copy across streams).
  void seq_copy_prefix(int src, int dst, int length);
  int seq_pos_max(int seq) const;  // -1 when empty
  // Saves and restores one sequence's cache (the cold tier).
  std::size_t seq_state_size(int seq) const;
  std::size_t seq_state_save(int seq, std::span<std::uint8_t> out) const;
  bool seq_state_restore(int seq, std::span<const std::uint8_t> data);
  // Pooled embedding of a sequence after decode (nullptr when none).
  const float* seq_embedding(int seq) const;
  llama_context* get() const noexcept { return context_.get(); }

 private:
  struct Deleter {
    void operator()(llama_context* c) const noexcept;
  };
  struct ThreadpoolDeleter {
    void operator()(ggml_threadpool* t) const noexcept;
  };
  // Declared before the context: destroyed after it.
  std::unique_ptr<ggml_threadpool, ThreadpoolDeleter> threadpool_;
  std::unique_ptr<llama_context, Deleter> context_;
  std::uint32_t n_ctx_ = 0;
  std::uint32_t n_batch_ = 0;
  std::uint32_t n_seq_max_ = 1;
  bool kv_unified_ = false;
};

}  // namespace clawbot::engine
