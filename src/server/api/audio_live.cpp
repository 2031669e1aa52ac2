// GET /v1/audio/live: live transcription over a WebSocket. The client sends audio as it is spoken (binary
// messages of 16-bit little-endian mono PCM at 16 kHz; a text message {"type":"stop"} ends the stream), the
// node answers with JSON text messages: {"type":"partial"|"final","segment","start","end","text"} (a partial
// about once a second while a segment is open, the final when it ends), {"type":"error","message"}, and
// {"type":"done","audio_seconds"} before it closes. Query: ?language=en&translate=true.
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <span>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/websocket.hpp>

#include "audio/live.h"
#include "audio/transcriber.h"
#include "audio/transcription_service.h"
#include "common/json_read.h"
#include "common/url_query.h"
#include "common/websocket.h"
#include "server/api/audio.h"
#include "server/api/fields.h"

namespace clawbot::server::api {
namespace {

using nlohmann::json;
namespace asio = boost::asio;
namespace websocket = boost::beast::websocket;

// What the transcriber's thread hands back to the session: messages to send, and work still out.
struct LiveOutbox {
  std::mutex mutex;
  std::deque<std::string> messages;
  int outstanding = 0;
  bool partial_busy = false;
  // Set when a final is due: the partial still running is abandoned (its text would be stale), so that the
  // final waits for no one.
  std::shared_ptr<std::atomic<bool>> partial_cancel;
};

std::string message(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

void submit_live(audio::TranscriptionService& service, const std::shared_ptr<LiveOutbox>& outbox,
                 audio::LiveSegmenter::Work work, const audio::TranscribeOptions& options) {
  const bool final = work.final;
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  {
    std::lock_guard lock(outbox->mutex);
    ++outbox->outstanding;
    if (final && outbox->partial_cancel) *outbox->partial_cancel = true;  // the partial before it ends
    if (!final) {
      outbox->partial_busy = true;
      outbox->partial_cancel = cancel;
    }
  }
  auto done = [outbox, final](std::string text) {
    std::lock_guard lock(outbox->mutex);
    if (!text.empty()) outbox->messages.push_back(std::move(text));
    --outbox->outstanding;
    if (!final) outbox->partial_busy = false;
  };
  auto shared_work = std::make_shared<audio::LiveSegmenter::Work>(std::move(work));
  const bool queued = service.submit_task(
      [&service, shared_work, options, done, cancel](audio::Transcriber& transcriber) {
        const auto start = std::chrono::steady_clock::now();
        std::string text;
        try {
          if (cancel->load()) return done({});
          const audio::Transcript transcript =
              transcriber.transcribe_samples(shared_work->samples, shared_work->start_s, options,
                                             shared_work->final ? nullptr : cancel.get());
          if (cancel->load()) return done({});
          json segments = json::array();
          for (const auto& s : transcript.segments)
            segments.push_back({{"start", s.start}, {"end", s.end}, {"text", s.text}});
          text = message({{"type", shared_work->final ? "final" : "partial"},
                          {"segment", shared_work->segment},
                          {"start", shared_work->start_s},
                          {"end", shared_work->end_s},
                          {"text", transcript.text()},
                          {"segments", std::move(segments)}});
        } catch (const std::exception& e) {
          text = message({{"type", "error"}, {"message", e.what()}});
        }
        if (shared_work->final)
          service.count_audio(
              shared_work->end_s - shared_work->start_s,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        done(std::move(text));
      },
      [done] {
        done(message({{"type", "error"}, {"message", "the node is shutting down"}}));
      });
  if (!queued)
    done(final ? message(
                     {{"type", "error"}, {"message", "the transcription queue is full; a segment was lost"}})
               : std::string());
}

}  // namespace

asio::awaitable<void> live_transcription(const ServeContext& ctx, http::Exchange& ex) {
  if (co_await refused_while_draining(ctx, ex)) co_return;
  auto& service = require_transcription(ctx);
  if (!websocket::is_upgrade(ex.request()))
    throw_invalid(
        "/v1/audio/live is a WebSocket: connect with Upgrade: websocket and send 16-bit mono PCM at "
        "16 kHz (clawbot transcribe --live does)",
        {}, "websocket_required");
  const std::string_view target(ex.request().target().data(), ex.request().target().size());
  audio::TranscribeOptions options;
  options.language = std::string(http::query_param(target, "language").value_or(""));
  // Refused here, before the upgrade: a 400 naming the parameter, not an error on every segment later.
  audio::check_language(options.language);
  options.translate = http::query_param(target, "translate") == "true";
  options.threads = service.options().threads;
  options.live = true;
  ex.log_fields()["live"] = true;

  websocket::stream<tls::PlainOrTlsStream&> ws(ex.take_over());
  ws.set_option(websocket::stream_base::timeout::suggested(boost::beast::role_type::server));
  ws.read_message_max(1u << 20);
  auto [accept_error] = co_await ws.async_accept(ex.request(), asio::as_tuple(asio::use_awaitable));
  if (accept_error) co_return;

  auto outbox = std::make_shared<LiveOutbox>();
  audio::LiveSegmenter segmenter;
  boost::beast::flat_buffer buffer;
  audio::PcmFrames pcm;
  std::vector<float> samples;
  ws.text(true);
  const auto send_ready = [&]() -> asio::awaitable<bool> {
    for (;;) {
      std::string next;
      {
        std::lock_guard lock(outbox->mutex);
        if (outbox->messages.empty()) co_return true;
        next = std::move(outbox->messages.front());
        outbox->messages.pop_front();
      }
      auto [ec, n] = co_await ws.async_write(asio::buffer(next), asio::as_tuple(asio::use_awaitable));
      if (ec) co_return false;
    }
  };
  bool stop = false;
  while (!stop) {
    buffer.clear();
    auto [ec, n] = co_await ws.async_read(buffer, asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;  // the client went away: nothing to finish for it
    const auto bytes = static_cast<const unsigned char*>(buffer.data().data());
    if (ws.got_text()) {
      const auto parsed = json_read::parse(std::string_view(reinterpret_cast<const char*>(bytes), n));
      stop = parsed && parsed.value->is_object() && parsed.value->value("type", "") == "stop";
    } else {
      pcm.read(std::span(bytes, n), samples);
      bool idle = false;
      {
        std::lock_guard lock(outbox->mutex);
        idle = !outbox->partial_busy;
      }
      for (auto& work : segmenter.feed(samples, idle)) submit_live(service, outbox, std::move(work), options);
    }
    if (!co_await send_ready()) co_return;
  }
  for (auto& work : segmenter.finish()) submit_live(service, outbox, std::move(work), options);
  asio::steady_timer wait(ws.get_executor());
  for (;;) {  // what is still being transcribed, then the end
    if (!co_await send_ready()) co_return;
    {
      std::lock_guard lock(outbox->mutex);
      if (outbox->outstanding == 0 && outbox->messages.empty()) break;
    }
    wait.expires_after(std::chrono::milliseconds(10));
    co_await wait.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  const std::string done = message({{"type", "done"}, {"audio_seconds", segmenter.seconds()}});
  ex.log_fields()["audio_seconds"] = segmenter.seconds();
  auto [write_error, written] =
      co_await ws.async_write(asio::buffer(done), asio::as_tuple(asio::use_awaitable));
  if (write_error) co_return;
  co_await ws.async_close(websocket::close_code::normal, asio::as_tuple(asio::use_awaitable));
}

}  // namespace clawbot::server::api
