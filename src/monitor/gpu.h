// GPU and unified-memory probes: AMD through amdgpu's sysfs (the APUs of the deployment guide, whose "VRAM"
// and GTT are both system RAM), NVIDIA through NVML loaded with dlopen("libnvidia-ml.so.1") (no link-time
// dependency). None present: an empty reading, and the dashboard says so.
//
// CONTRACT (issue 20). Exported in serve's /metrics, one series per GPU, labels {gpu="0", name="...",
// driver="amdgpu"|"nvidia"}:
//   clawbot_gpu_utilization_ratio, clawbot_gpu_memory_used_bytes, clawbot_gpu_memory_total_bytes,
//   clawbot_gpu_gtt_used_bytes, clawbot_gpu_gtt_total_bytes (AMD), clawbot_gpu_temperature_celsius,
//   clawbot_gpu_power_watts; and clawbot_gpus (the number found, without labels).
// A reading a device does not give (power on an APU, say) is left out, never written as 0.
//
// Uses only the C++ library and libdl (bench/gpu/nvml_check.sh compiles it with g++ on a GPU machine).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace clawbot::monitor {

class Registry;

// One GPU at one instant. Each reading is absent when the device does not give it or gave garbage.
struct GpuReading {
  std::string name;                         // the product name, else a description of the device
  std::string driver;                       // "amdgpu" | "nvidia"
  std::optional<double> utilization_ratio;  // 0..1
  std::optional<double> memory_used_bytes;  // VRAM (on an APU: the carve-out of system RAM)
  std::optional<double> memory_total_bytes;
  std::optional<double> gtt_used_bytes;  // AMD: system RAM mapped for the GPU
  std::optional<double> gtt_total_bytes;
  std::optional<double> temperature_celsius;
  std::optional<double> power_watts;
};

// The amdgpu devices under `sys_root`/class/drm/card<N>/device (card order), their driver named by the
// device's `driver` link or its uevent; other drivers are skipped.
std::vector<GpuReading> read_amdgpu(const std::filesystem::path& sys_root = "/sys");

// NVML, loaded at run time. open() returns nullptr when the library is missing, lacks a function we call, or
// nvmlInit_v2 fails (no driver): "no NVIDIA GPU". The library stays loaded and initialised while this lives.
class Nvml {
 public:
  static std::unique_ptr<Nvml> open(const std::string& library = "libnvidia-ml.so.1");
  ~Nvml();
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;
  std::vector<GpuReading> read() const;

 private:
  struct Api;
  explicit Nvml(std::unique_ptr<Api> api);
  std::unique_ptr<Api> api_;
};

struct GpuProbeOptions {
  std::filesystem::path sys_root = "/sys";
  std::string nvml_library = "libnvidia-ml.so.1";  // empty: NVML not tried
  std::chrono::milliseconds min_interval{1000};    // readings are reused for this long
};

// Every GPU found (AMD first, then NVIDIA; the index in that order is the series' gpu label), read at most
// once per min_interval whatever the number of callers, so that a scrape stays cheap. Thread-safe.
class GpuProbe {
 public:
  explicit GpuProbe(GpuProbeOptions options = {});
  std::vector<GpuReading> read();

 private:
  GpuProbeOptions options_;
  std::unique_ptr<Nvml> nvml_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point read_at_;
  bool read_once_ = false;
  std::vector<GpuReading> cached_;
};

// Registers the clawbot_gpu_* gauges of the contract above, for the GPUs and readings `probe` finds now (a
// reading missing now is not registered; one that goes missing later reads NaN).
void register_gpu_metrics(Registry& registry, std::shared_ptr<GpuProbe> probe);

}  // namespace clawbot::monitor
