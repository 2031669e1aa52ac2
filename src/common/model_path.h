// Where model files are found: a path as given, else the directories of CLAWBOT_MODELS (colon-separated),
// or, when it is unset, the user's own: ${XDG_DATA_HOME:-~/.local/share}/clawbot/models (where `models pull`
// puts files) and ${XDG_CACHE_HOME:-~/.cache}/clawbot/models (what `models synth` writes). Never relative to
// the current directory unless CLAWBOT_MODELS says so. One rule for `serve --model`, `models synth
// --vocab-from` and the rest.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace clawbot {

// The file to use for `name`, or nullopt when it is neither a path nor in any model directory.
std::optional<std::string> find_model_file(const std::string& name);

// The file find_model_file gives, or ClawbotError (not_found) with model_not_found_message(name).
std::string require_model_file(const std::string& name);

// The directories of CLAWBOT_MODELS in order (the defaults when unset); empty entries dropped.
std::vector<std::string> model_dirs();

// "CLAWBOT_MODELS=<dirs>", or the default directories and that CLAWBOT_MODELS is unset: for messages that say
// where we looked.
std::string model_dirs_description();

// The .gguf files in the model directories whose names are close to `name` (a typo, a missing extension),
// best first; empty when none is.
std::vector<std::string> similar_model_names(const std::string& name);

// "no model file 'NAME' in the current directory nor in <where>; did you mean 'a.gguf'?" (the suggestion
// when there is one): the message for a name that find_model_file did not find.
std::string model_not_found_message(const std::string& name);

}  // namespace clawbot
