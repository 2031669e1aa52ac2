// OpenAI's audio upload (src/audio/multipart.cpp, src/audio/decode.cpp): the Content-Type header's first
// line, then the multipart body. Any bytes are parts or a ClawbotError naming the problem, never a crash or
// another exception; a part named "file" goes through the decoder (libsndfile and our resampler) to its end.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "audio/decode.h"
#include "audio/multipart.h"
#include "common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t eol = input.find('\n');
  if (eol == std::string_view::npos) return 0;
  try {
    const std::string boundary = clawbot::audio::form_boundary(input.substr(0, eol));
    const auto parts = clawbot::audio::parse_form(input.substr(eol + 1), boundary);
    for (const auto& part : parts) {
      if (part.data.data() < input.data() ||
          part.data.data() + part.data.size() > input.data() + input.size())
        std::abort();  // a part is a view into the body
      if (part.name != "file") continue;
      try {
        clawbot::audio::Decoder decoder(part.data, {.max_seconds = 20});
        std::vector<float> samples;
        while (decoder.read(samples, 16000) > 0) {
          if (samples.size() > 20u * 16000 + 16000) std::abort();  // the limit holds
          samples.clear();
        }
      } catch (const clawbot::ClawbotError& e) {
        if (e.error().param != "file" || e.error().code.empty()) std::abort();  // names the field and problem
      }
    }
  } catch (const clawbot::ClawbotError& e) {
    if (e.error().message.empty()) std::abort();
  }
  return 0;
}
