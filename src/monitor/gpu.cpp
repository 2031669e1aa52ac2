#include "monitor/gpu.h"

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string_view>
#include <system_error>
#include <utility>

#include "monitor/metrics.h"

namespace clawbot::monitor {

namespace fs = std::filesystem;

namespace {

// A sysfs attribute is a short line; anything longer is not one we know.
constexpr std::size_t kMaxAttributeBytes = 256;

std::optional<std::string> read_attribute(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text(kMaxAttributeBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  const auto got = static_cast<std::size_t>(in.gcount());
  if (got > kMaxAttributeBytes) return std::nullopt;
  text.resize(got);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\t')) text.pop_back();
  return text;
}

// A whole attribute as a non-negative integer (sysfs writes them in decimal); garbage is no reading.
std::optional<double> read_count(const fs::path& path) {
  const auto text = read_attribute(path);
  if (!text || text->empty()) return std::nullopt;
  std::uint64_t value = 0;
  const char* end = text->data() + text->size();
  const auto [ptr, ec] = std::from_chars(text->data(), end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return static_cast<double>(value);
}

std::optional<double> scaled(std::optional<double> value, double factor) {
  if (!value) return std::nullopt;
  return *value * factor;
}

std::string driver_of(const fs::path& device) {
  std::error_code ec;
  const fs::path link = fs::read_symlink(device / "driver", ec);
  if (!ec) return link.filename().string();
  // (No link: the uevent file says it too, as DRIVER=amdgpu.)
  std::ifstream uevent(device / "uevent");
  std::string line;
  for (int lines = 0; lines < 64 && std::getline(uevent, line); ++lines)
    if (line.starts_with("DRIVER=")) return line.substr(7);
  return {};
}

// The numbered entries named `prefix`<N> in `dir`, in numeric order (card0, card1, ..., card10).
std::vector<fs::path> numbered(const fs::path& dir, std::string_view prefix) {
  std::vector<std::pair<unsigned, fs::path>> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with(prefix) || name.size() == prefix.size() || name.size() > prefix.size() + 6)
      continue;
    unsigned n = 0;
    const char* first = name.data() + prefix.size();
    const char* last = name.data() + name.size();
    const auto [ptr, err] = std::from_chars(first, last, n);
    if (err == std::errc() && ptr == last) found.emplace_back(n, it->path());
  }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> paths;
  for (auto& [n, path] : found) paths.push_back(std::move(path));
  return paths;
}

std::string amd_name(const fs::path& device, const std::string& card) {
  if (const auto product = read_attribute(device / "product_name"); product && !product->empty())
    return *product;
  const auto id = read_attribute(device / "device");
  return "AMD GPU " + card + (id && !id->empty() && id->size() <= 16 ? " (" + *id + ")" : "");
}

}  // namespace

std::vector<GpuReading> read_amdgpu(const fs::path& sys_root) {
  std::vector<GpuReading> gpus;
  for (const auto& card : numbered(sys_root / "class" / "drm", "card")) {
    const fs::path device = card / "device";
    if (driver_of(device) != "amdgpu") continue;
    GpuReading gpu;
    gpu.driver = "amdgpu";
    gpu.name = amd_name(device, card.filename().string());
    if (const auto busy = read_count(device / "gpu_busy_percent"); busy && *busy <= 100)
      gpu.utilization_ratio = *busy / 100.0;
    gpu.memory_used_bytes = read_count(device / "mem_info_vram_used");
    gpu.memory_total_bytes = read_count(device / "mem_info_vram_total");
    gpu.gtt_used_bytes = read_count(device / "mem_info_gtt_used");
    gpu.gtt_total_bytes = read_count(device / "mem_info_gtt_total");
    for (const auto& hwmon : numbered(device / "hwmon", "hwmon")) {
      if (!gpu.temperature_celsius) gpu.temperature_celsius = scaled(read_count(hwmon / "temp1_input"), 1e-3);
      // power1_average on most cards; APUs on newer kernels give power1_input instead.
      if (!gpu.power_watts) gpu.power_watts = scaled(read_count(hwmon / "power1_average"), 1e-6);
      if (!gpu.power_watts) gpu.power_watts = scaled(read_count(hwmon / "power1_input"), 1e-6);
    }
    gpus.push_back(std::move(gpu));
  }
  return gpus;
}

// ------------------------------------------------------------------------------------------------ NVML

namespace {

// The few NVML declarations we need (nvml.h, stable ABI since the _v2 functions).
using nvmlReturn_t = int;  // NVML_SUCCESS = 0
using nvmlDevice_t = struct nvmlDevice_st*;
struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};
struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
constexpr int NVML_TEMPERATURE_GPU = 0;
constexpr unsigned NVML_DEVICE_NAME_V2_BUFFER_SIZE = 96;

struct DlClose {
  void operator()(void* handle) const noexcept { ::dlclose(handle); }
};

}  // namespace

struct Nvml::Api {
  std::unique_ptr<void, DlClose> library;
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  nvmlReturn_t (*count)(unsigned int*) = nullptr;
  nvmlReturn_t (*handle_by_index)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*name)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*utilization)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  nvmlReturn_t (*memory)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*temperature)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*power)(nvmlDevice_t, unsigned int*) = nullptr;
  bool initialised = false;
};

namespace {

template <class F>
bool bind(void* library, const char* symbol, F& function) {
  function = reinterpret_cast<F>(::dlsym(library, symbol));
  return function != nullptr;
}

}  // namespace

std::unique_ptr<Nvml> Nvml::open(const std::string& library) {
  auto api = std::make_unique<Api>();
  api->library.reset(::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (!api->library) return nullptr;
  void* lib = api->library.get();
  const bool complete = bind(lib, "nvmlInit_v2", api->init) && bind(lib, "nvmlShutdown", api->shutdown) &&
                        bind(lib, "nvmlDeviceGetCount_v2", api->count) &&
                        bind(lib, "nvmlDeviceGetHandleByIndex_v2", api->handle_by_index) &&
                        bind(lib, "nvmlDeviceGetName", api->name) &&
                        bind(lib, "nvmlDeviceGetUtilizationRates", api->utilization) &&
                        bind(lib, "nvmlDeviceGetMemoryInfo", api->memory) &&
                        bind(lib, "nvmlDeviceGetTemperature", api->temperature) &&
                        bind(lib, "nvmlDeviceGetPowerUsage", api->power);
  if (!complete || api->init() != 0) return nullptr;
  api->initialised = true;
  return std::unique_ptr<Nvml>(new Nvml(std::move(api)));
}

Nvml::Nvml(std::unique_ptr<Api> api) : api_(std::move(api)) {}

Nvml::~Nvml() {
  if (api_ && api_->initialised) api_->shutdown();
}

std::vector<GpuReading> Nvml::read() const {
  std::vector<GpuReading> gpus;
  unsigned int count = 0;
  if (api_->count(&count) != 0) return gpus;
  for (unsigned int i = 0; i < std::min(count, 64u); ++i) {
    nvmlDevice_t device = nullptr;
    if (api_->handle_by_index(i, &device) != 0) continue;
    GpuReading gpu;
    gpu.driver = "nvidia";
    std::array<char, NVML_DEVICE_NAME_V2_BUFFER_SIZE> name{};
    if (api_->name(device, name.data(), static_cast<unsigned int>(name.size())) == 0) {
      name.back() = '\0';
      gpu.name = name.data();
    }
    if (gpu.name.empty()) gpu.name = "NVIDIA GPU " + std::to_string(i);
    if (nvmlUtilization_t u{}; api_->utilization(device, &u) == 0 && u.gpu <= 100)
      gpu.utilization_ratio = u.gpu / 100.0;
    if (nvmlMemory_t m{}; api_->memory(device, &m) == 0) {
      gpu.memory_used_bytes = static_cast<double>(m.used);
      gpu.memory_total_bytes = static_cast<double>(m.total);
    }
    if (unsigned int c = 0; api_->temperature(device, NVML_TEMPERATURE_GPU, &c) == 0)
      gpu.temperature_celsius = static_cast<double>(c);
    if (unsigned int mw = 0; api_->power(device, &mw) == 0) gpu.power_watts = mw / 1000.0;
    gpus.push_back(std::move(gpu));
  }
  return gpus;
}

// ------------------------------------------------------------------------------------------- the probe

GpuProbe::GpuProbe(GpuProbeOptions options) : options_(std::move(options)) {
  if (!options_.nvml_library.empty()) nvml_ = Nvml::open(options_.nvml_library);
}

std::vector<GpuReading> GpuProbe::read() {
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (read_once_ && now - read_at_ < options_.min_interval) return cached_;
  cached_ = read_amdgpu(options_.sys_root);
  if (nvml_) {
    auto nvidia = nvml_->read();
    std::move(nvidia.begin(), nvidia.end(), std::back_inserter(cached_));
  }
  read_at_ = now;
  read_once_ = true;
  return cached_;
}

void register_gpu_metrics(Registry& registry, std::shared_ptr<GpuProbe> probe) {
  const auto gpus = probe->read();
  registry.gauge_callback("clawbot_gpus", "GPUs found (amdgpu sysfs, NVML)",
                          [probe] { return static_cast<double>(probe->read().size()); });
  struct Series {
    const char* name;
    const char* help;
    std::optional<double> GpuReading::*reading;
  };
  static constexpr Series series[] = {
      {"clawbot_gpu_utilization_ratio", "GPU busy, 0 to 1", &GpuReading::utilization_ratio},
      {"clawbot_gpu_memory_used_bytes", "GPU memory (VRAM) in use", &GpuReading::memory_used_bytes},
      {"clawbot_gpu_memory_total_bytes", "GPU memory (VRAM)", &GpuReading::memory_total_bytes},
      {"clawbot_gpu_gtt_used_bytes", "System memory mapped for the GPU (GTT) in use",
       &GpuReading::gtt_used_bytes},
      {"clawbot_gpu_gtt_total_bytes", "System memory the GPU can map (GTT)", &GpuReading::gtt_total_bytes},
      {"clawbot_gpu_temperature_celsius", "GPU temperature", &GpuReading::temperature_celsius},
      {"clawbot_gpu_power_watts", "GPU power draw", &GpuReading::power_watts},
  };
  for (std::size_t i = 0; i < gpus.size(); ++i) {
    const Labels labels{{"gpu", std::to_string(i)}, {"name", gpus[i].name}, {"driver", gpus[i].driver}};
    for (const auto& s : series) {
      if (!(gpus[i].*s.reading)) continue;
      registry.gauge_callback(
          s.name, s.help,
          [probe, i, reading = s.reading] {
            const auto now = probe->read();
            return i < now.size() && now[i].*reading ? *(now[i].*reading) : std::nan("");
          },
          labels);
    }
  }
}

}  // namespace clawbot::monitor
