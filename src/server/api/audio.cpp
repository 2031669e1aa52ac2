#include "server/api/audio.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <memory>

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "audio/multipart.h"
#include "audio/transcriber.h"
#include "audio/transcription_service.h"
#include "server/api/fields.h"
#include "server/generation.h"

namespace clawbot::server::api {
namespace {

using nlohmann::json;
namespace asio = boost::asio;

struct AudioRequest {
  audio::TranscriptionJob job;
  audio::ResponseFormat format = audio::ResponseFormat::json;
  audio::Granularities granularities;
};

std::string field_text(const audio::FormPart& part, std::size_t max_bytes) {
  if (!part.filename.empty())
    throw_invalid("'" + part.name + "' must be a form field, not a file", part.name);
  if (part.data.size() > max_bytes)
    throw_invalid("'" + part.name + "' is longer than " + std::to_string(max_bytes) + " bytes", part.name);
  return std::string(part.data);
}

float temperature_field(const audio::FormPart& part) {
  const std::string text = field_text(part, 32);
  float value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value) || value < 0 ||
      value > 1)
    throw_invalid("'temperature' must be a number from 0 to 1, got '" + text.substr(0, 32) + "'",
                  "temperature");
  return value;
}

// The form, read and checked before the job waits in the queue: every mistake is a 400 naming the field.
AudioRequest read_form(const ServeContext& ctx, http::Exchange& ex, bool translate) {
  const auto& request = ex.request();
  const auto content_type = request[boost::beast::http::field::content_type];
  const std::string boundary =
      audio::form_boundary(std::string_view(content_type.data(), content_type.size()));
  // The body moves into the job (no copy of the upload); the parts are views into it.
  auto body = std::make_shared<const std::string>(ex.take_body());
  const auto parts = audio::parse_form(*body, boundary);
  AudioRequest out;
  out.job.options.translate = translate;
  const audio::FormPart* file = nullptr;
  bool granularities_given = false;
  audio::Granularities granularities{false, false};
  for (const auto& part : parts) {
    if (part.name == "file") {
      if (file) throw_invalid("more than one 'file' part", "file");
      file = &part;
    } else if (part.name == "language" && !translate) {
      out.job.options.language = field_text(part, 16);
      audio::check_language(out.job.options.language);  // before the file is read
    } else if (part.name == "prompt") {
      out.job.options.prompt = field_text(part, 4096);
    } else if (part.name == "temperature") {
      out.job.options.temperature = temperature_field(part);
    } else if (part.name == "response_format") {
      const std::string name = field_text(part, 32);
      const auto format = audio::parse_response_format(name);
      if (!format)
        throw_invalid("'response_format' must be json, text, srt, vtt or verbose_json, not '" + name + "'",
                      "response_format");
      out.format = *format;
    } else if (part.name == "timestamp_granularities[]" || part.name == "timestamp_granularities") {
      const std::string name = field_text(part, 16);
      if (name == "word") {
        granularities.word = true;
      } else if (name == "segment") {
        granularities.segment = true;
      } else {
        throw_invalid("'timestamp_granularities[]' takes word and segment, not '" + name + "'",
                      "timestamp_granularities");
      }
      granularities_given = true;
    } else if (part.name == "stream") {
      if (field_text(part, 8) == "true")
        throw_invalid("streamed transcriptions are not supported here; use the live WebSocket route",
                      "stream");
    } else if (part.name == "model") {
      field_text(part, 256);  // any name: a node has one speech model (noted in the access log)
      ex.log_fields()["audio_model_asked"] = std::string(part.data);
    }
    // other fields (chunking_strategy, include[], ...) are accepted and ignored, as llama-server does
  }
  if (!file) throw_invalid("the form has no 'file' part (the audio to transcribe)", "file", "missing_file");
  out.granularities = granularities_given ? granularities : audio::Granularities{};
  out.job.options.word_timestamps =
      out.format == audio::ResponseFormat::verbose_json && out.granularities.word;
  out.job.audio = file->data;
  out.job.owner = std::move(body);
  // The header now, so that a file that is not audio, or too long, is refused without waiting in the queue;
  // the job decodes on with this decoder (the file is opened once).
  out.job.decoder = std::make_unique<audio::Decoder>(out.job.audio, ctx.transcription->options().limits);
  return out;
}

// Runs a job on the transcriber's thread and completes on `executor` (the exchange's) with its result; with
// use_awaitable its error is rethrown in the coroutine.
template <class Token>
auto async_transcription(audio::TranscriptionService& service, audio::TranscriptionJob job,
                         asio::any_io_executor executor, Token&& token) {
  return asio::async_initiate<Token, void(std::exception_ptr, audio::TranscriptionResult)>(
      [&service, executor](auto handler, audio::TranscriptionJob queued_job) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        const bool queued =
            service.submit(std::move(queued_job),
                           [shared, executor](std::exception_ptr error, audio::TranscriptionResult result) {
                             asio::post(executor, [shared, error, result = std::move(result)]() mutable {
                               (*shared)(error, std::move(result));
                             });
                           });
        if (!queued)
          asio::post(executor, [shared] {
            (*shared)(std::make_exception_ptr(ClawbotError(queue_full_error())),
                      audio::TranscriptionResult{});
          });
      },
      token, std::move(job));
}

asio::awaitable<void> transcribe(const ServeContext& ctx, http::Exchange& ex, bool translate) {
  if (co_await refused_while_draining(ctx, ex)) co_return;
  require_transcription(ctx);
  AudioRequest request = read_form(ctx, ex, translate);
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  request.job.cancelled = cancelled;
  ex.watch_for_close([cancelled] { *cancelled = true; });
  std::optional<audio::TranscriptionResult> result;
  std::optional<Error> busy;
  try {
    result = co_await async_transcription(*ctx.transcription, std::move(request.job), ex.executor(),
                                          asio::use_awaitable);
  } catch (const ClawbotError& e) {
    if (e.error().code != "queue_full") throw;
    busy = e.error();
  }
  ex.stop_watching();
  if (busy) {
    co_await respond_busy(ex, *busy);
    co_return;
  }
  if (cancelled->load()) co_return;  // the client left: nobody to answer (the access log says 499)
  const auto& transcript = result->transcript;
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.3f", transcript.duration);
  ex.log_fields()["audio_seconds"] = std::round(transcript.duration * 1000) / 1000;
  ex.log_fields()["audio_format"] = result->info.format;
  ex.log_fields()["real_time_factor"] =
      transcript.duration > 0 ? std::round(result->processing_s / transcript.duration * 1000) / 1000 : 0.0;
  audio::Rendered rendered = audio::render(transcript, request.format, request.granularities);
  // The audio's length on every format (text, srt and vtt have no usage field): what a gateway counts.
  std::vector<std::pair<std::string, std::string>> headers{{"X-Audio-Seconds", seconds}};
  co_await ex.respond_text(200, std::move(rendered.body), rendered.content_type, std::move(headers));
}

}  // namespace

audio::TranscriptionService& require_transcription(const ServeContext& ctx) {
  if (!ctx.transcription)
    throw ClawbotError(
        Error{ErrorKind::not_found,
              "this node has no speech-to-text model (start it with serve --whisper-model FILE)", "model",
              "model_not_found"});
  return *ctx.transcription;
}

json audio_model_entry(const ServeContext& ctx) {
  return {
      {"id", ctx.audio_model_id},
      {"object", "model"},
      {"created", ctx.created},
      {"owned_by", "clawbot"},
      {"meta",
       {{"task", "transcription"},
        {"engine", "whisper.cpp"},
        {"whisper_type", ctx.audio_model_type},
        {"max_audio_seconds", ctx.transcription ? ctx.transcription->options().limits.max_seconds : 0.0}}}};
}

void add_audio_routes(const ServeContext& ctx, const AddRoute& add) {
  const ServeContext* c = &ctx;
  add(http::Verb::post, "/v1/audio/transcriptions",
      [c](http::Exchange& ex) { return transcribe(*c, ex, /*translate=*/false); });
  add(http::Verb::post, "/v1/audio/translations",
      [c](http::Exchange& ex) { return transcribe(*c, ex, /*translate=*/true); });
  add(http::Verb::get, "/v1/audio/live", [c](http::Exchange& ex) { return live_transcription(*c, ex); });
}

}  // namespace clawbot::server::api
