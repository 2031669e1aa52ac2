// Grammar sampling cost alone, ours against llama.cpp's common_sampler (what llama-server runs), on one
// model's real logits: each decodes the same prompt and draws max_tokens tokens greedily under a JSON grammar
// (and without), timing only the sampling call of every token. Decode time, HTTP and the machine's other load
// stay out of the figure, which an end-to-end comparison on a shared machine cannot keep out
// (bench/grammar_compare.sh gives that one). Both must draw the same tokens: greedy under a grammar has one
// answer.
//
//   build/bench/grammar_sampling_bench MODEL.gguf [max_tokens=128] [rounds=5]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <llama.h>

#include "engine/engine.h"

using namespace clawbot::engine;

namespace {

// The grammar of bench/grammar_compare.sh: an array of objects of one shape, never complete.
const char* const json_grammar = R"(root ::= "[" ws item ("," ws item)*
item ::= "{" ws "\"name\"" ws ":" ws string "," ws "\"age\"" ws ":" ws number "," ws "\"tags\"" ws ":" ws "[" ws (string ("," ws string)*)? "]" ws "}"
string ::= "\"" ([a-zA-Z0-9 _.-] | "\\" ["\\/bfnrt])* "\"" ws
number ::= "-"? [0-9]+ ("." [0-9]+)? ws
ws ::= [ \t\n]{0,4}
)";

// llama.cpp's common_sampler at temperature 0 as llama-server builds it (ignore_eos as a logit bias), and its
// common_sampler_sample: the chain draws, the grammar checks that one token, and only if it refuses is the
// grammar applied to every candidate and the chain run again.
class CommonSampler {
 public:
  CommonSampler(const Model& model, bool grammar) : n_vocab_(model.info().n_vocab) {
    chain_ = llama_sampler_chain_init(llama_sampler_chain_default_params());
    std::vector<llama_logit_bias> never;
    for (const Token t : model.info().end_of_generation) never.push_back({t, -INFINITY});
    llama_sampler_chain_add(
        chain_, llama_sampler_init_logit_bias(n_vocab_, static_cast<int32_t>(never.size()), never.data()));
    llama_sampler_chain_add(chain_, llama_sampler_init_penalties(n_vocab_, 64, 1.0f, 0.0f, 0.0f));
    llama_sampler_chain_add(chain_, llama_sampler_init_top_k(40));
    llama_sampler_chain_add(chain_, llama_sampler_init_top_p(0.95f, 1));
    llama_sampler_chain_add(chain_, llama_sampler_init_min_p(0.05f, 1));
    llama_sampler_chain_add(chain_, llama_sampler_init_temp_ext(0.0f, 0.0f, 1.0f));
    llama_sampler_chain_add(chain_, llama_sampler_init_dist(1));
    if (grammar) grammar_ = llama_sampler_init_grammar(model.vocab(), json_grammar, "root");
  }
  ~CommonSampler() {
    llama_sampler_free(chain_);
    if (grammar_) llama_sampler_free(grammar_);
  }
  CommonSampler(const CommonSampler&) = delete;
  CommonSampler& operator=(const CommonSampler&) = delete;

  Token sample(Context& context) {
    const float* logits = llama_get_logits_ith(context.get(), -1);
    set_logits(logits);
    llama_sampler_apply(chain_, &cur_p_);
    Token id = cur_p_.data[cur_p_.selected].id;
    if (grammar_) {
      llama_token_data single{id, 1.0f, 0.0f};
      llama_token_data_array one{&single, 1, -1, false};
      llama_sampler_apply(grammar_, &one);
      if (single.logit == -INFINITY) {
        set_logits(logits);
        llama_sampler_apply(grammar_, &cur_p_);
        llama_sampler_apply(chain_, &cur_p_);
        id = cur_p_.data[cur_p_.selected].id;
      }
      llama_sampler_accept(grammar_, id);
    }
    llama_sampler_accept(chain_, id);
    return id;
  }

 private:
  void set_logits(const float* logits) {
    cur_.resize(static_cast<std::size_t>(n_vocab_));
    for (Token t = 0; t < n_vocab_; ++t) cur_[static_cast<std::size_t>(t)] = {t, logits[t], 0.0f};
    cur_p_ = {cur_.data(), cur_.size(), -1, false};
  }
  int n_vocab_;
  llama_sampler* chain_ = nullptr;
  llama_sampler* grammar_ = nullptr;
  std::vector<llama_token_data> cur_;
  llama_token_data_array cur_p_{};
};

struct Run {
  std::vector<Token> tokens;
  double sample_us = 0;  // per token
};

template <typename Draw>
Run generate(Context& context, const std::vector<Token>& prompt, int max_tokens, Draw&& draw) {
  context.clear();
  if (context.decode(prompt, 0) != DecodeStatus::ok) std::exit(1);
  Run run;
  double total = 0;
  int pos = static_cast<int>(prompt.size());
  for (int i = 0; i < max_tokens; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const Token t = draw();
    total += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    run.tokens.push_back(t);
    const Token one[] = {t};
    if (context.decode(one, pos++) != DecodeStatus::ok) std::exit(1);
  }
  run.sample_us = total / max_tokens;
  return run;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [max_tokens=128] [rounds=5]\n", argv[0]);
    return 2;
  }
  const int max_tokens = argc > 2 ? std::atoi(argv[2]) : 128;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
  init_backend(false);
  const Model model = Model::load({.path = argv[1]});
  Context context(model,
                  {.n_ctx = static_cast<std::uint32_t>(max_tokens + 64), .n_batch = 64, .n_threads = 1});
  const auto prompt = Tokenizer(model).tokenize("A list of people as JSON:", true, false);
  std::printf("%s, %d tokens, greedy, ignore_eos, %d rounds: sampling time per token (median)\n",
              model.info().name.c_str(), max_tokens, rounds);
  for (const bool grammar : {false, true}) {
    std::vector<double> ours_us, common_us;
    bool same = true;
    std::string text;
    for (int r = 0; r < rounds; ++r) {
      SamplingParams p;
      p.temperature = 0;
      p.ignore_eos = true;
      if (grammar) p.grammar = json_grammar;
      Sampler ours(p, model);
      const Run a = generate(context, prompt, max_tokens, [&] { return ours.sample(context); });
      CommonSampler common(model, grammar);
      const Run b = generate(context, prompt, max_tokens, [&] { return common.sample(context); });
      ours_us.push_back(a.sample_us);
      common_us.push_back(b.sample_us);
      same = same && a.tokens == b.tokens;
      text = Tokenizer(model).detokenize(a.tokens);
    }
    std::printf("  %-12s clawbot %8.1f us   common_sampler %8.1f us   ratio %.2fx   same tokens: %s\n",
                grammar ? "JSON grammar" : "no grammar", median(ours_us), median(common_us),
                median(common_us) / median(ours_us), same ? "yes" : "NO");
    if (grammar) std::printf("  output: %.100s...\n", text.c_str());
  }
  return 0;
}
