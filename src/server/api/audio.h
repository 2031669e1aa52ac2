// OpenAI's audio routes on the node: POST /v1/audio/transcriptions and /v1/audio/translations (multipart
// form: file, model, language, prompt, temperature, response_format, timestamp_granularities[]), answered by
// the TranscriptionService (whisper.cpp) in json, text, srt, vtt or verbose_json.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "server/api/wire.h"
#include "server/openai_routes.h"

namespace clawbot::server::api {

void add_audio_routes(const ServeContext& ctx, const AddRoute& add);

// The node's TranscriptionService; a 404 saying how to get one when the node has no speech model.
audio::TranscriptionService& require_transcription(const ServeContext& ctx);

// GET /v1/audio/live: the WebSocket of live transcription (audio_live.cpp).
boost::asio::awaitable<void> live_transcription(const ServeContext& ctx, http::Exchange& ex);

// The whisper model's entry in GET /v1/models (meta.task "transcription": what a gateway routes audio by).
nlohmann::json audio_model_entry(const ServeContext& ctx);

}  // namespace clawbot::server::api
