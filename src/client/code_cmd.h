// `clawbot code`: the code assistant on the front-end.
//
//   complete FILE --line L [--col C]   the code to insert at the cursor, and nothing else, on stdout:
//                                      POST /infill (fill-in-the-middle) when the model has FIM tokens,
//                                      an instruction through /v1/chat/completions otherwise
//   review FILE [--json]               likely errors as FILE:LINE: reason (or JSON for editors)
//   tests FILE [-o OUT]                unit tests in the language's usual framework, to stdout or OUT
//
// A file larger than the model's context is cut to whole lines around the point of interest (the cursor,
// or --line for review and tests), and stderr says which lines were sent.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "client/assistant.h"

namespace CLI {
class App;
}

namespace clawbot::client {

enum class CompletionMode { automatic, fim, instruct };

struct CodeOptions {
  std::string action;  // complete | review | tests
  ConfigSearch search;
  ClientOverrides overrides;
  std::string file;
  int line = 0;            // complete: the cursor's line; review, tests: the line to keep when cutting (0: 1)
  std::optional<int> col;  // complete: the cursor's column (default: the end of the line)
  CompletionMode mode = CompletionMode::automatic;
  bool json = false;     // review: one JSON object on stdout
  std::string output;    // tests: the file to write (default: stdout)
  bool force = false;    // tests: replace an existing output file
  bool verbose = false;  // which route, what was cut, on stderr
};

// Exit status: 0 done; 1 the request failed; 2 bad usage, config or input file; 3 review: the model's
// answer could not be read as LINE: reason (its text is shown).
int run_code(const CodeOptions& options);

// Registers `code complete|review|tests` on `app`. After parsing, the returned function runs the one that
// was given and returns its exit status, or nullopt when `code` was not given.
std::function<std::optional<int>()> add_code_command(CLI::App& app);

}  // namespace clawbot::client
