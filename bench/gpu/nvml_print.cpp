// Prints what clawbot's GPU probes read (src/monitor/gpu.cpp: NVML through dlopen, amdgpu sysfs), one line
// per GPU, then the clawbot_gpu_* series serve would export. Built and run by bench/gpu/nvml_check.sh on a
// GPU machine (only the C++ library and libdl: no Debian packages there).
#include <cstdio>
#include <memory>

#include "monitor/gpu.h"
#include "monitor/metrics.h"

int main() {
  using namespace clawbot::monitor;
  const auto nvml = Nvml::open();
  std::printf("nvml: %s\n", nvml ? "loaded libnvidia-ml.so.1" : "none (no library, or nvmlInit_v2 failed)");
  auto probe = std::make_shared<GpuProbe>();
  const auto gpus = probe->read();
  std::printf("gpus: %zu\n", gpus.size());
  const auto show = [](const std::optional<double>& v, double scale) { return v ? *v / scale : -1.0; };
  for (std::size_t i = 0; i < gpus.size(); ++i) {
    const auto& g = gpus[i];
    // The columns of nvidia-smi --query-gpu=name,utilization.gpu,memory.used,memory.total,temperature.gpu,
    // power.draw --format=csv,noheader,nounits (MiB, W); -1 for a reading the probe did not get.
    std::printf("probe %zu: %s, %.0f, %.0f, %.0f, %.0f, %.2f  [%s]\n", i, g.name.c_str(),
                show(g.utilization_ratio, 0.01), show(g.memory_used_bytes, 1048576.0),
                show(g.memory_total_bytes, 1048576.0), show(g.temperature_celsius, 1), show(g.power_watts, 1),
                g.driver.c_str());
  }
  Registry registry;
  register_gpu_metrics(registry, probe);
  std::printf("--- /metrics\n%s", registry.render().c_str());
  return 0;
}
