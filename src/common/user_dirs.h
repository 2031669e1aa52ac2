// Where a user's files go: one rule for configs, data, caches and state, after the XDG Base Directory spec.
// ${XDG_CONFIG_HOME}, ${XDG_DATA_HOME}, ${XDG_CACHE_HOME}, ${XDG_STATE_HOME} when it is an absolute path (the
// spec says a relative one is invalid and must be ignored), else $HOME/.config, $HOME/.local/share,
// $HOME/.cache, $HOME/.local/state; none when neither is set. The directories returned are the base ones:
// callers add "clawbot/...".
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace clawbot::user_dirs {

enum class Kind { config, data, cache, state };

// $HOME when it is set and not empty.
std::optional<std::filesystem::path> home();

// The base directory of `kind` by the rule above; nullopt when neither its variable nor HOME is set.
std::optional<std::filesystem::path> find(Kind kind);

// "neither XDG_DATA_HOME nor HOME is set": what to say when find() has nothing.
std::string missing(Kind kind);

// find(kind), or ClawbotError "neither XDG_..._HOME nor HOME is set" followed by `hint` when not empty
// ("neither XDG_CACHE_HOME nor HOME is set; name the file with -o").
std::filesystem::path require(Kind kind, std::string_view hint = {});

}  // namespace clawbot::user_dirs
