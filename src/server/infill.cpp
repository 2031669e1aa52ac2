#include "server/infill.h"

#include <algorithm>

namespace clawbot::server {

using engine::Token;

InfillPrompt assemble_infill(const engine::FimTokens& fim, std::optional<Token> bos, InfillParts parts,
                             int budget) {
  InfillPrompt out;
  const int fixed = 3 + (bos ? 1 : 0) + static_cast<int>(parts.prompt.size());  // PRE, SUF, MID, BOS, prompt
  if (fixed > budget) {
    out.fits = false;
    return out;
  }
  const int room = budget - fixed;
  const int n_prefix = static_cast<int>(parts.prefix.size());
  const int n_suffix = static_cast<int>(parts.suffix.size());
  // Prefix 3 : suffix 1; a share one side does not need goes to the other.
  int take_suffix = std::min(n_suffix, room / 4);
  const int take_prefix = std::min(n_prefix, room - take_suffix);
  take_suffix = std::min(n_suffix, room - take_prefix);
  const int take_extra = std::min(static_cast<int>(parts.extra.size()), room - take_prefix - take_suffix);

  out.prefix_dropped = n_prefix - take_prefix;
  out.suffix_dropped = n_suffix - take_suffix;
  out.extra_dropped = static_cast<int>(parts.extra.size()) - take_extra;

  auto& t = out.tokens;
  t.reserve(static_cast<std::size_t>(fixed + take_prefix + take_suffix + take_extra));
  if (bos) t.push_back(*bos);
  t.insert(t.end(), parts.extra.end() - take_extra, parts.extra.end());
  t.push_back(fim.pre);
  t.insert(t.end(), parts.prefix.end() - take_prefix, parts.prefix.end());
  t.insert(t.end(), parts.prompt.begin(), parts.prompt.end());
  t.push_back(fim.suf);
  t.insert(t.end(), parts.suffix.begin(), parts.suffix.begin() + take_suffix);
  t.push_back(fim.mid);
  return out;
}

InfillPrompt build_infill_prompt(const engine::Tokenizer& tokenizer, const engine::FimTokens& fim,
                                 const InfillInput& input, int budget) {
  auto text = [&](const std::string& s) {
    return tokenizer.tokenize(s, /*add_special=*/false, /*parse_special=*/false);
  };
  InfillParts parts{text(input.prefix), text(input.suffix), text(input.prompt), {}};
  auto append = [&parts](const std::vector<Token>& tokens) {
    parts.extra.insert(parts.extra.end(), tokens.begin(), tokens.end());
  };
  // Repository-level format (Qwen2.5-Coder, arXiv 2409.12186) when the vocabulary has its tokens.
  const bool has_sep = fim.sep >= 0;
  if (!input.extra.empty() || has_sep) {
    if (fim.rep >= 0) {
      parts.extra.push_back(fim.rep);
      append(text("myproject\n"));
    }
    for (const auto& chunk : input.extra) {
      if (has_sep) {
        parts.extra.push_back(fim.sep);
        append(text((chunk.filename.empty() ? std::string("tmp") : chunk.filename) + "\n"));
      } else {
        append(text("\n\n--- snippet ---\n\n"));
      }
      append(text(chunk.text));
    }
    if (has_sep) {
      parts.extra.push_back(fim.sep);
      append(text("filename\n"));
    }
  }
  std::optional<Token> bos;
  if (tokenizer.adds_bos() && tokenizer.bos() >= 0) bos = tokenizer.bos();
  return assemble_infill(fim, bos, std::move(parts), budget);
}

}  // namespace clawbot::server
