// Fill-in-the-middle prompts for POST /infill (llama-server's route, which code editors such as llama.vscode
// call): the model's FIM tokens around the code before and after the cursor, with optional context files.
//
//   [BOS] [FIM_REP]myproject\n [FIM_SEP]name\n text ... [FIM_SEP]filename\n   (extra context, when given)
//         [FIM_PRE] prefix prompt [FIM_SUF] suffix [FIM_MID]                  (the model writes the middle)
//
// Without FIM_REP/FIM_SEP (most vocabularies) extra chunks are separated by a plain-text marker instead.
// When the parts are longer than the budget the prefix loses its start and the suffix its end, 3:1, so the
// code nearest the cursor stays; extra context only fills what room is left, the latest chunks first.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace clawbot::server {

struct InfillChunk {
  std::string filename;
  std::string text;
};

struct InfillInput {
  std::string prefix;  // code before the cursor
  std::string suffix;  // code after it
  std::string prompt;  // text already typed at the cursor (kept whole)
  std::vector<InfillChunk> extra;
};

// The token parts, before assembly; `extra` is already framed (FIM_REP/FIM_SEP and file names, or markers).
struct InfillParts {
  std::vector<engine::Token> prefix;
  std::vector<engine::Token> suffix;
  std::vector<engine::Token> prompt;
  std::vector<engine::Token> extra;
};

struct InfillPrompt {
  std::vector<engine::Token> tokens;
  int prefix_dropped = 0;  // tokens cut from the start of the prefix
  int suffix_dropped = 0;  // tokens cut from the end of the suffix
  int extra_dropped = 0;   // tokens of extra context left out
  bool fits = true;        // false: even the FIM tokens and the prompt exceed the budget (tokens is empty)
  bool truncated() const noexcept { return prefix_dropped > 0 || suffix_dropped > 0 || extra_dropped > 0; }
};

// Puts the parts together within `budget` tokens. Pure: no model needed (the unit tests use made-up ids).
InfillPrompt assemble_infill(const engine::FimTokens& fim, std::optional<engine::Token> bos,
                             InfillParts parts, int budget);

// Tokenizes the input (code as plain text: a "<fim_prefix>" written in the code stays text) and assembles it.
InfillPrompt build_infill_prompt(const engine::Tokenizer& tokenizer, const engine::FimTokens& fim,
                                 const InfillInput& input, int budget);

}  // namespace clawbot::server
