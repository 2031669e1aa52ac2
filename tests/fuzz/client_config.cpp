// clawbot.json (src/client/config.cpp): any text is a ClientConfig or a ConfigError naming the problem,
// never another exception or a crash (comments are allowed, so the depth check must see through them).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "client/config.h"
#include "client/endpoint_auto.h"
#include "seed_writer.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // The commented file `config init` writes.
  clawbot::fuzz::write_seeds_if_asked([](const std::filesystem::path& dir) {
    clawbot::fuzz::write_file(dir / "starter", clawbot::client::starter_config_text());
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto config = clawbot::client::parse_config(text, "fuzz.json");
    (void)config;
  } catch (const clawbot::client::ConfigError& e) {
    if (std::string_view(e.what()).empty()) __builtin_trap();
  }
  return 0;
}

// `model_endpoint: "auto"` is resolved by `config show` and the commands, never by parse_config: this target
// links no discovery, and a parse that tried to resolve would stop here.
namespace clawbot::client {
AutoEndpoint resolve_auto_endpoint(const AutoOptions&) {
  __builtin_trap();
}
std::string AutoEndpoint::describe() const {
  __builtin_trap();
}
nlohmann::json AutoEndpoint::to_json() const {
  __builtin_trap();
}
}  // namespace clawbot::client
