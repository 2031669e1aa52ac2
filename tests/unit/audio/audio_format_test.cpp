// The audio part without whisper.cpp: resampling, decoding, response formats, the multipart form, WER and
// whisper model files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numbers>

#include <nlohmann/json.hpp>

#include "audio/decode.h"
#include "audio/live.h"
#include "audio/multipart.h"
#include "audio/resample.h"
#include "audio/transcript.h"
#include "audio/wer.h"
#include "audio/whisper_file.h"
#include "common/error.h"

namespace clawbot::audio {
namespace {

using nlohmann::json;

std::vector<float> sine(double frequency, int rate, double seconds, int channels = 1) {
  std::vector<float> out;
  const auto frames = static_cast<std::size_t>(rate * seconds);
  for (std::size_t i = 0; i < frames; ++i)
    for (int c = 0; c < channels; ++c)
      out.push_back(static_cast<float>(
          0.5 * std::sin(2 * std::numbers::pi * frequency * static_cast<double>(i) / rate)));
  return out;
}

// Crossings of zero upwards per second: the frequency of a pure tone.
double tone_frequency(const std::vector<float>& samples, int rate, std::size_t skip) {
  std::size_t crossings = 0;
  for (std::size_t i = skip + 1; i + skip < samples.size(); ++i)
    if (samples[i - 1] < 0 && samples[i] >= 0) ++crossings;
  return static_cast<double>(crossings) * rate / static_cast<double>(samples.size() - 2 * skip);
}

// A 16-bit PCM WAV file in memory.
std::string wav(const std::vector<float>& interleaved, int rate, int channels,
                std::uint32_t claimed_data = 0) {
  const auto data_bytes = static_cast<std::uint32_t>(interleaved.size() * 2);
  std::string out;
  const auto put32 = [&](std::uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  const auto put16 = [&](std::uint16_t v) { out.append(reinterpret_cast<const char*>(&v), 2); };
  out += "RIFF";
  put32(36 + (claimed_data ? claimed_data : data_bytes));
  out += "WAVEfmt ";
  put32(16);
  put16(1);
  put16(static_cast<std::uint16_t>(channels));
  put32(static_cast<std::uint32_t>(rate));
  put32(static_cast<std::uint32_t>(rate * channels * 2));
  put16(static_cast<std::uint16_t>(channels * 2));
  put16(16);
  out += "data";
  put32(claimed_data ? claimed_data : data_bytes);
  for (const float s : interleaved) put16(static_cast<std::uint16_t>(static_cast<std::int16_t>(s * 32767)));
  return out;
}

std::string error_code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ClawbotError& e) {
    return e.error().code;
  }
  return "no error";
}

TEST(Resampler, KeepsATonesFrequencyAndLength) {
  for (const int rate : {8000, 22050, 44100, 48000}) {
    Resampler resampler(rate, 16000);
    std::vector<float> out;
    const auto in = sine(440, rate, 2.0);
    // in pieces, as a decoder feeds it
    for (std::size_t at = 0; at < in.size(); at += 1000)
      resampler.process(std::span(in).subspan(at, std::min<std::size_t>(1000, in.size() - at)), out);
    resampler.finish(out);
    EXPECT_NEAR(static_cast<double>(out.size()), 32000, 2) << rate;
    EXPECT_NEAR(tone_frequency(out, 16000, 200), 440, 2) << rate;
    float peak = 0;
    for (std::size_t i = 200; i + 200 < out.size(); ++i) peak = std::max(peak, std::abs(out[i]));
    EXPECT_NEAR(peak, 0.5, 0.02) << rate;  // the pass band keeps its level
  }
}

TEST(Resampler, RemovesWhatWouldAlias) {
  Resampler resampler(48000, 16000);
  std::vector<float> out;
  resampler.process(sine(12000, 48000, 1.0), out);  // above 8 kHz: nothing of it may come through
  resampler.finish(out);
  float peak = 0;
  for (std::size_t i = 200; i + 200 < out.size(); ++i) peak = std::max(peak, std::abs(out[i]));
  EXPECT_LT(peak, 0.01);
}

TEST(Decoder, WavStereoAt44kBecomesMono16k) {
  const std::string file = wav(sine(300, 44100, 1.5, 2), 44100, 2);
  Decoder decoder(file, {});
  EXPECT_EQ(decoder.info().format, "WAV");
  EXPECT_EQ(decoder.info().channels, 2);
  EXPECT_NEAR(decoder.info().duration_s, 1.5, 1e-6);
  std::vector<float> out;
  while (decoder.read(out, 4000) > 0) {
  }
  EXPECT_NEAR(static_cast<double>(out.size()), 24000, 2);
  EXPECT_NEAR(tone_frequency(out, 16000, 200), 300, 2);
}

TEST(Decoder, RefusesBadInputNamingTheProblem) {
  EXPECT_EQ(error_code_of([] { Decoder("", {}); }), "empty_file");
  EXPECT_EQ(error_code_of([] { Decoder("this is a text file, not audio\n", {}); }), "invalid_audio");
  EXPECT_EQ(error_code_of([] {
              Decoder(std::string("\0\0\0\x20"
                                  "ftypM4A ",
                                  12) +
                          std::string(64, '\0'),
                      {});
            }),
            "unsupported_audio_format");
  const std::string long_file = wav(sine(300, 8000, 3.0), 8000, 1);
  EXPECT_EQ(error_code_of([&] { Decoder(long_file, {.max_seconds = 2}); }), "audio_too_long");
  try {
    Decoder("", {});
  } catch (const ClawbotError& e) {
    EXPECT_EQ(e.error().kind, ErrorKind::invalid_request);
    EXPECT_EQ(e.error().param, "file");
  }
}

Transcript sample_transcript() {
  Transcript t;
  t.language = "english";
  t.duration = 5.0;
  t.segments.push_back({0.0,
                        2.5,
                        " Hello there.",
                        {1, 2},
                        -0.5,
                        0.1,
                        0,
                        {{" Hello", 0.0, 1.0, 0.9}, {" there.", 1.0, 2.5, 0.8}}});
  t.segments.push_back({2.5, 7.0, " General\nKenobi --> yes", {3}, -0.2, 0.0, 0, {}});  // ends past the audio
  t.segments.push_back({3.0, 3.5, "   ", {}, 0, 0, 0, {}});                             // empty: dropped
  tidy(t);
  return t;
}

TEST(Transcript, TidyClampsToTheAudioAndDropsEmptySegments) {
  const Transcript t = sample_transcript();
  ASSERT_EQ(t.segments.size(), 2u);
  EXPECT_EQ(t.segments[0].text, "Hello there.");
  EXPECT_DOUBLE_EQ(t.segments[1].end, 5.0);
  EXPECT_EQ(t.segments[0].words[1].word, "there.");
}

TEST(Transcript, SrtAndVtt) {
  const Transcript t = sample_transcript();
  EXPECT_EQ(to_srt(t),
            "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
            "2\n00:00:02,500 --> 00:00:05,000\nGeneral Kenobi -> yes\n\n");
  EXPECT_EQ(to_vtt(t),
            "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n\n"
            "00:00:02.500 --> 00:00:05.000\nGeneral Kenobi -> yes\n\n");
  EXPECT_EQ(clock_time(3723.4567, ','), "01:02:03,457");
}

TEST(Transcript, JsonFormats) {
  const Transcript t = sample_transcript();
  const auto plain = json::parse(render(t, ResponseFormat::json, {}).body);
  EXPECT_EQ(plain["text"], "Hello there. General\nKenobi --> yes");
  EXPECT_EQ(plain["usage"]["seconds"], 5);
  const auto verbose = json::parse(render(t, ResponseFormat::verbose_json, {true, true}).body);
  EXPECT_EQ(verbose["task"], "transcribe");
  EXPECT_EQ(verbose["language"], "english");
  EXPECT_EQ(verbose["segments"].size(), 2u);
  EXPECT_EQ(verbose["segments"][1]["end"], 5.0);
  EXPECT_EQ(verbose["words"].size(), 2u);
  const auto words_only = json::parse(render(t, ResponseFormat::verbose_json, {false, true}).body);
  EXPECT_FALSE(words_only.contains("segments"));
  EXPECT_EQ(render(t, ResponseFormat::text, {}).body, "Hello there. General\nKenobi --> yes\n");
  EXPECT_FALSE(parse_response_format("xml"));
  // A character split across windows' tokens is not UTF-8 on its own: replaced, not an exception.
  Transcript broken = t;
  broken.segments[0].text = "caf\xC3";
  EXPECT_NO_THROW(render(broken, ResponseFormat::json, {}));
}

TEST(Multipart, ReadsWhatBuildFormWrites) {
  const std::string audio("RIFF\0\r\n--not-the-boundary\r\n", 27);
  const FormBody form =
      build_form({{"model", "whisper-1"}, {"response_format", "srt"}}, "a \"b\".wav", audio);
  const auto parts = parse_form(form.body, form_boundary(form.content_type));
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].name, "model");
  EXPECT_EQ(parts[0].data, "whisper-1");
  EXPECT_EQ(parts[2].name, "file");
  EXPECT_EQ(parts[2].filename, "a \"b\".wav");
  EXPECT_EQ(parts[2].data, audio);
  EXPECT_EQ(find_part(parts, "response_format")->data, "srt");
}

TEST(Multipart, RefusesMalformedBodies) {
  const auto code = [](std::string_view content_type, std::string_view body) {
    return error_code_of([&] { parse_form(body, form_boundary(content_type)); });
  };
  EXPECT_EQ(code("application/json", "{}"), "invalid_content_type");
  EXPECT_EQ(code("multipart/form-data", ""), "invalid_content_type");
  const std::string type = "multipart/form-data; boundary=XyZ";
  EXPECT_EQ(code(type, "no boundary here"), "invalid_multipart");
  EXPECT_EQ(code(type, "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\ndata without end"),
            "invalid_multipart");  // truncated
  EXPECT_EQ(code(type, "--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--"), "invalid_multipart");
  EXPECT_EQ(code(type, "--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--XyZ--"),
            "invalid_multipart");
  std::string many;
  for (int i = 0; i < 100; ++i) many += "--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nx\r\n";
  EXPECT_EQ(code(type, many + "--XyZ--"), "invalid_multipart");
  EXPECT_EQ(code(type, "--XyZ\r\n" + std::string(10000, 'h') + "\r\n\r\nx\r\n--XyZ--"), "invalid_multipart");
  // a preamble and a quoted boundary are fine
  const auto parts =
      parse_form("preamble\r\n--a b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--a b--",
                 form_boundary("multipart/form-data; boundary=\"a b\""));
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, "1");
}

TEST(WordErrorRate, KnownPairs) {
  EXPECT_EQ(word_errors("the cat sat", "the cat sat").errors(), 0u);
  const auto substitution = word_errors("the cat sat on the mat", "the cat sat on a mat");
  EXPECT_EQ(substitution.substitutions, 1u);
  EXPECT_NEAR(substitution.rate(), 1.0 / 6, 1e-12);
  const auto mixed = word_errors("a b c d", "a x c d e");  // one substitution, one insertion
  EXPECT_EQ(mixed.substitutions, 1u);
  EXPECT_EQ(mixed.insertions, 1u);
  EXPECT_EQ(mixed.deletions, 0u);
  EXPECT_DOUBLE_EQ(mixed.rate(), 0.5);
  const auto deleted = word_errors("one two three", "two");
  EXPECT_EQ(deleted.deletions, 2u);
  EXPECT_NEAR(deleted.rate(), 2.0 / 3, 1e-12);
  // case and punctuation do not count; apostrophes inside words do
  EXPECT_EQ(word_errors("Hello, World! It's me.", "hello world it's me").errors(), 0u);
  EXPECT_EQ(word_errors("it's", "its").errors(), 1u);
  EXPECT_DOUBLE_EQ(word_errors("", "").rate(), 0.0);
  EXPECT_DOUBLE_EQ(word_errors("", "extra words").rate(), 2.0);
  EXPECT_DOUBLE_EQ(word_errors("all gone here", "").rate(), 1.0);
}

TEST(WordErrorRate, SphinxTranscriptions) {
  const auto pairs = parse_sphinx_transcription(
      "<s> and mister john dashwood </s> (utt-0870)\n<s> he was not </s> (utt-0880)\r\nno id here\n");
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].first, "utt-0870");
  EXPECT_EQ(pairs[0].second, "and mister john dashwood");
  EXPECT_EQ(pairs[1].second, "he was not");
}

TEST(WhisperFile, SynthesizedTinyHasTheRealShape) {
  const auto path =
      std::filesystem::temp_directory_path() / ("whisper-tiny-test-" + std::to_string(::getpid()) + ".bin");
  write_synthetic_whisper(path, *find_whisper_shape("whisper-tiny"), /*f32=*/false, 7);
  const WhisperFileInfo info = read_whisper_file(path);
  std::filesystem::remove(path);
  EXPECT_EQ(info.size_name, "tiny");
  EXPECT_EQ(info.weight_type, "f16");
  EXPECT_TRUE(info.multilingual);
  EXPECT_EQ(info.hparams.n_audio_state, 384);
  EXPECT_EQ(info.n_tensors, 7u + 15 * 4 + 4 + 24 * 4);  // globals and blocks of encoder and decoder
  EXPECT_NEAR(static_cast<double>(info.n_params), 37.8e6,
              0.5e6);  // OpenAI's tiny: 39M with its 51865-token head
  EXPECT_EQ(info.synthetic, "whisper-tiny f16 seed 7 generator 2");
  EXPECT_GT(whisper_runtime_bytes(info.hparams), 10u << 20);
}

TEST(WhisperFile, RefusesAVocabularyLongerThanNVocab) {
  // whisper.cpp asserts (the process aborts) on such a file: it is refused before whisper.cpp reads it
  const auto path =
      std::filesystem::temp_directory_path() / ("whisper-vocab-test-" + std::to_string(::getpid()) + ".bin");
  write_synthetic_whisper(path, *find_whisper_shape("whisper-tiny"), /*f32=*/false, 7);
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(4 + 11 * 4 + 8 + 80 * 201 * 4);  // magic, hyper-parameters, mel filter sizes and data
    const std::int32_t longer = 51865 + 1;
    file.write(reinterpret_cast<const char*>(&longer), sizeof longer);
  }
  try {
    read_whisper_file(path);
    ADD_FAILURE() << "read";
  } catch (const ClawbotError& e) {
    EXPECT_NE(std::string(e.what()).find("more than n_vocab 51865"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

TEST(WhisperFile, RefusesOtherFiles) {
  const auto path =
      std::filesystem::temp_directory_path() / ("not-whisper-" + std::to_string(::getpid()) + ".bin");
  std::ofstream(path) << "lmgg";  // the magic, then nothing
  EXPECT_TRUE(is_whisper_file(path));
  EXPECT_THROW(read_whisper_file(path), ClawbotError);
  std::ofstream(path) << "GGUF....";
  EXPECT_FALSE(is_whisper_file(path));
  std::filesystem::remove(path);
}

// Silence, then `speech_s` of a loud tone (what the energy detector calls speech), then silence.
std::vector<float> spoken(double silence_s, double speech_s, double after_s) {
  std::vector<float> out(static_cast<std::size_t>(silence_s * kSampleRate), 0.0005f);
  const auto tone = sine(220, kSampleRate, speech_s);
  out.insert(out.end(), tone.begin(), tone.end());
  out.resize(out.size() + static_cast<std::size_t>(after_s * kSampleRate), 0.0005f);
  return out;
}

TEST(LiveSegmenter, PartialsWhileSpeakingThenOneFinalAfterThePause) {
  LiveSegmenter segmenter;
  const auto audio = spoken(1.0, 3.0, 1.5);
  std::vector<LiveSegmenter::Work> work;
  for (std::size_t at = 0; at < audio.size(); at += 1600) {  // 100 ms frames, as a client sends them
    auto more = segmenter.feed(std::span(audio).subspan(at, std::min<std::size_t>(1600, audio.size() - at)));
    for (auto& w : more) work.push_back(std::move(w));
  }
  for (auto& w : segmenter.finish()) work.push_back(std::move(w));
  const auto finals = std::count_if(work.begin(), work.end(), [](const auto& w) { return w.final; });
  ASSERT_EQ(finals, 1);
  const auto& final = *std::find_if(work.begin(), work.end(), [](const auto& w) { return w.final; });
  EXPECT_NEAR(final.start_s, 1.0 - 0.2, 0.1);  // the speech's start, less the pre-roll
  EXPECT_NEAR(final.end_s, 4.0, 0.05);         // the end of speech
  EXPECT_NEAR(static_cast<double>(final.samples.size()) / kSampleRate, 3.4, 0.15);
  const auto partials = std::count_if(work.begin(), work.end(), [](const auto& w) { return !w.final; });
  EXPECT_GE(partials, 2);  // about one a second of speech
  EXPECT_LE(partials, 3);
  EXPECT_FALSE(work.back().samples.empty());
}

TEST(LiveSegmenter, NoPartialWhileOneIsBusyAndLongSpeechIsCut) {
  LiveSegmenter segmenter({.max_segment_s = 5});
  const auto audio = spoken(0.5, 12.0, 1.0);
  std::vector<LiveSegmenter::Work> work;
  for (std::size_t at = 0; at < audio.size(); at += 1600) {
    auto more = segmenter.feed(std::span(audio).subspan(at, std::min<std::size_t>(1600, audio.size() - at)),
                               /*partial_idle=*/false);
    for (auto& w : more) work.push_back(std::move(w));
  }
  for (const auto& w : work) EXPECT_TRUE(w.final);
  ASSERT_EQ(work.size(), 3u);  // cut at 5 s, at 10 s, and the rest at the pause
  EXPECT_EQ(work[1].segment, 1);
  EXPECT_NEAR(work[1].start_s, work[0].end_s, 0.05);  // a forced cut continues without a gap
  EXPECT_TRUE(segmenter.finish().empty());
  EXPECT_NEAR(segmenter.seconds(), 13.5, 0.05);
}

TEST(LiveSegmenter, SilenceGivesNothing) {
  LiveSegmenter segmenter;
  const std::vector<float> quiet(5 * kSampleRate, 0.001f);
  EXPECT_TRUE(segmenter.feed(quiet).empty());
  EXPECT_TRUE(segmenter.finish().empty());
}

// The live route's frames split at odd offsets: every sample comes out once, aligned, in order.
TEST(PcmFrames, FramesSplitAtOddOffsetsKeepTheSamplesAligned) {
  std::vector<std::int16_t> pcm;
  for (int i = 0; i < 1000; ++i) pcm.push_back(static_cast<std::int16_t>((i * 131 % 65536) - 32768));
  std::vector<unsigned char> bytes;
  for (const std::int16_t v : pcm) {
    bytes.push_back(static_cast<unsigned char>(static_cast<std::uint16_t>(v) & 0xFF));
    bytes.push_back(static_cast<unsigned char>(static_cast<std::uint16_t>(v) >> 8));
  }
  PcmFrames frames;
  std::vector<float> got, out;
  std::size_t at = 0;
  for (std::size_t n = 1; at < bytes.size(); n = n % 7 + 2) {  // lengths 1, 3, 5, 7, 2, 4, ...
    const std::size_t take = std::min(n, bytes.size() - at);
    frames.read(std::span(bytes).subspan(at, take), out);
    got.insert(got.end(), out.begin(), out.end());
    at += take;
  }
  EXPECT_FALSE(frames.holds_odd_byte());
  ASSERT_EQ(got.size(), pcm.size());
  for (std::size_t i = 0; i < pcm.size(); ++i)
    ASSERT_EQ(got[i], static_cast<float>(pcm[i]) / 32768.0f) << "sample " << i;
  // a lone byte completes nothing until its partner comes
  const unsigned char one[] = {0x34};
  const unsigned char two[] = {0x12};
  frames.read(one, out);
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(frames.holds_odd_byte());
  frames.read(two, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], static_cast<float>(0x1234) / 32768.0f);
}

}  // namespace
}  // namespace clawbot::audio
