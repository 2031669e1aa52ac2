// gateway.json (src/gateway/config.cpp): any text is a GatewayConfig or a ConfigError naming the problem,
// never another exception or a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gateway/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto config = clawbot::gateway::parse_config(text, "fuzz.json", "/nonexistent-fuzz-dir");
    (void)config;
  } catch (const clawbot::gateway::ConfigError& e) {
    if (std::string_view(e.what()).empty()) __builtin_trap();
  }
  return 0;
}
