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
#pragma once
