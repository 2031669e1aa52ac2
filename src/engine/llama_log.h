// Internal to the engine: the last error libllama logged, to put into our own messages.
#pragma once

#include <string>

namespace clawbot::engine::detail {

std::string take_last_llama_error();

}  // namespace clawbot::engine::detail
