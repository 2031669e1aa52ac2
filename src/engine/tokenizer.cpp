#include <climits>
#include <string>

#include <llama.h>

#include "engine/engine.h"

namespace clawbot::engine {

Tokenizer::Tokenizer(const Model& model) : vocab_(model.vocab()) {}

std::vector<Token> Tokenizer::tokenize(std::string_view text, bool add_special, bool parse_special) const {
  if (text.size() > static_cast<size_t>(INT32_MAX)) throw EngineError("text too long to tokenize");
  const auto len = static_cast<int32_t>(text.size());
  std::vector<Token> tokens(text.size() / 2 + 8);
  int32_t n = llama_tokenize(vocab_, text.data(), len, tokens.data(), static_cast<int32_t>(tokens.size()),
                             add_special, parse_special);
  if (n == INT32_MIN) throw EngineError("text too long to tokenize");
  if (n < 0) {
    tokens.resize(static_cast<size_t>(-n));
    n = llama_tokenize(vocab_, text.data(), len, tokens.data(), static_cast<int32_t>(tokens.size()),
                       add_special, parse_special);
    if (n < 0) throw EngineError("tokenization failed");
  }
  tokens.resize(static_cast<size_t>(n));
  return tokens;
}

std::string Tokenizer::piece(Token token, bool render_special) const {
  std::string out(16, '\0');
  int32_t n =
      llama_token_to_piece(vocab_, token, out.data(), static_cast<int32_t>(out.size()), 0, render_special);
  if (n < 0) {
    out.resize(static_cast<size_t>(-n));
    n = llama_token_to_piece(vocab_, token, out.data(), static_cast<int32_t>(out.size()), 0, render_special);
  }
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

std::string Tokenizer::detokenize(std::span<const Token> tokens, bool render_special) const {
  std::string out(tokens.size() * 4 + 16, '\0');
  const auto count = static_cast<int32_t>(tokens.size());
  int32_t n = llama_detokenize(vocab_, tokens.data(), count, out.data(), static_cast<int32_t>(out.size()),
                               false, render_special);
  if (n < 0) {
    out.resize(static_cast<size_t>(-n));
    n = llama_detokenize(vocab_, tokens.data(), count, out.data(), static_cast<int32_t>(out.size()), false,
                         render_special);
  }
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

bool Tokenizer::is_end_of_generation(Token token) const {
  return llama_vocab_is_eog(vocab_, token);
}
Token Tokenizer::bos() const {
  return llama_vocab_bos(vocab_);
}
Token Tokenizer::eos() const {
  return llama_vocab_eos(vocab_);
}
std::int32_t Tokenizer::n_vocab() const {
  return llama_vocab_n_tokens(vocab_);
}
bool Tokenizer::adds_bos() const {
  return llama_vocab_get_add_bos(vocab_);
}

std::vector<Token> Tokenizer::rerank_pair(const Model& model, std::string_view query,
                                          std::string_view document) const {
  if (const char* rerank_template = llama_model_chat_template(model.get(), "rerank")) {
    std::string prompt = rerank_template;
    auto replace_all = [&prompt](std::string_view what, std::string_view with) {
      for (std::size_t at = prompt.find(what); at != std::string::npos;
           at = prompt.find(what, at + with.size())) {
        prompt.replace(at, what.size(), with);
      }
    };
    replace_all("{query}", query);
    replace_all("{document}", document);
    return tokenize(prompt, /*add_special=*/false, /*parse_special=*/true);
  }
  Token end = llama_vocab_eos(vocab_);
  if (end == LLAMA_TOKEN_NULL) end = llama_vocab_sep(vocab_);
  const bool adds_eos = llama_vocab_get_add_eos(vocab_);
  std::vector<Token> out;
  if (llama_vocab_get_add_bos(vocab_)) out.push_back(llama_vocab_bos(vocab_));
  const auto q = tokenize(query, false, false);
  out.insert(out.end(), q.begin(), q.end());
  if (adds_eos) out.push_back(end);
  if (llama_vocab_get_add_sep(vocab_)) out.push_back(llama_vocab_sep(vocab_));
  const auto d = tokenize(document, false, false);
  out.insert(out.end(), d.begin(), d.end());
  if (adds_eos) out.push_back(end);
  return out;
}
std::optional<FimTokens> Tokenizer::fim() const {
  FimTokens fim{llama_vocab_fim_pre(vocab_), llama_vocab_fim_suf(vocab_), llama_vocab_fim_mid(vocab_),
                llama_vocab_fim_pad(vocab_), llama_vocab_fim_rep(vocab_), llama_vocab_fim_sep(vocab_)};
  if (fim.pre == LLAMA_TOKEN_NULL || fim.suf == LLAMA_TOKEN_NULL || fim.mid == LLAMA_TOKEN_NULL)
    return std::nullopt;
  return fim;
}

namespace {

// Length of the UTF-8 sequence a lead byte starts; 0 for a continuation or invalid byte.
size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 0;
}

constexpr std::string_view replacement_char = "\xEF\xBF\xBD";

}  // namespace

std::string Utf8StreamDecoder::push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const size_t len = utf8_sequence_length(static_cast<unsigned char>(pending_[i]));
    // Continuation bytes that follow the lead, up to the sequence's length.
    size_t continuation = 0;
    while (len > 1 && continuation + 1 < len && i + 1 + continuation < pending_.size() &&
           (static_cast<unsigned char>(pending_[i + 1 + continuation]) & 0xC0) == 0x80) {
      ++continuation;
    }
    if (len != 0 && continuation + 1 == len) {  // a whole character
      out.append(pending_, i, len);
      i += len;
      continue;
    }
    if (len > 1 && i + 1 + continuation == pending_.size()) break;  // incomplete so far: wait for more
    // A stray byte, or a sequence cut short: one U+FFFD for the whole broken part, never invalid UTF-8.
    out.append(replacement_char);
    i += 1 + continuation;
  }
  pending_.erase(0, i);
  return out;
}

std::string Utf8StreamDecoder::flush() {
  // Whatever is held back is one incomplete sequence.
  std::string out = pending_.empty() ? std::string() : std::string(replacement_char);
  pending_.clear();
  return out;
}

}  // namespace clawbot::engine
