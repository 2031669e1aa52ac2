// Where model files are found: a path as given, else the directories of CLAWBOT_MODELS (colon-separated,
// default ../shared/models). One rule for `serve --model`, `models synth --vocab-from` and the rest.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace clawbot {

// The file to use for `name`, or nullopt when it is neither a path nor in any model directory.
std::optional<std::string> find_model_file(const std::string& name);

// The directories of CLAWBOT_MODELS in order (the default when unset); empty entries dropped.
std::vector<std::string> model_dirs();

// "CLAWBOT_MODELS=<dirs>" with "(the default)" when unset: for messages that say where we looked.
std::string model_dirs_description();

}  // namespace clawbot
