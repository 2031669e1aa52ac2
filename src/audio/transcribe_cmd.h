// `clawbot transcribe`: the front-end's speech to text. The node transcribes (POST /v1/audio/transcriptions
// through a node or a gateway, with clawbot.json's endpoint and key); this side reads files and prints.
//   clawbot transcribe FILE [--format txt|json|srt|vtt|verbose_json] [-o OUT]
//   clawbot transcribe --eval DIR   (audio + reference transcripts -> word error rate)
#pragma once

#include <functional>
#include <optional>

namespace CLI {
class App;
}

namespace clawbot::audio {

std::function<std::optional<int>()> add_transcribe_command(CLI::App& app);

}  // namespace clawbot::audio
