// A stand-in for libnvidia-ml.so.1 (loaded by path by gpu_test): two GPUs with fixed readings, the second
// without a power reading, so that the NVML probe is tested on machines without NVIDIA hardware.
#include <cstring>

extern "C" {

struct nvmlDevice_st {
  unsigned index;
};
struct nvmlUtilization_t {
  unsigned int gpu, memory;
};
struct nvmlMemory_t {
  unsigned long long total, free, used;
};

static nvmlDevice_st devices[2] = {{0}, {1}};
static int initialised = 0;
static int shutdowns = 0;

__attribute__((visibility("default"))) int nvmlInit_v2() {
  ++initialised;
  return 0;
}
__attribute__((visibility("default"))) int nvmlShutdown() {
  ++shutdowns;
  return 0;
}
__attribute__((visibility("default"))) int nvmlDeviceGetCount_v2(unsigned int* count) {
  if (!initialised) return 1;
  *count = 2;
  return 0;
}
__attribute__((visibility("default"))) int nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_st** d) {
  if (i >= 2) return 2;
  *d = &devices[i];
  return 0;
}
__attribute__((visibility("default"))) int nvmlDeviceGetName(nvmlDevice_st* d, char* name,
                                                             unsigned int length) {
  const char* text = d->index == 0 ? "NVIDIA H200" : "NVIDIA L4";
  if (std::strlen(text) + 1 > length) return 7;
  std::strcpy(name, text);
  return 0;
}
__attribute__((visibility("default"))) int nvmlDeviceGetUtilizationRates(nvmlDevice_st* d,
                                                                         nvmlUtilization_t* u) {
  u->gpu = d->index == 0 ? 42 : 7;
  u->memory = 10;
  return 0;
}
__attribute__((visibility("default"))) int nvmlDeviceGetMemoryInfo(nvmlDevice_st* d, nvmlMemory_t* m) {
  m->total = d->index == 0 ? 150000000000ull : 24000000000ull;
  m->used = d->index == 0 ? 1000000000ull : 0ull;
  m->free = m->total - m->used;
  return 0;
}
__attribute__((visibility("default"))) int nvmlDeviceGetTemperature(nvmlDevice_st*, int sensor,
                                                                    unsigned int* c) {
  if (sensor != 0) return 2;
  *c = 35;
  return 0;
}
__attribute__((visibility("default"))) int nvmlDeviceGetPowerUsage(nvmlDevice_st* d, unsigned int* mw) {
  if (d->index == 1) return 3;  // NVML_ERROR_NOT_SUPPORTED
  *mw = 123456;
  return 0;
}
__attribute__((visibility("default"))) int fake_nvml_shutdowns() {
  return shutdowns;
}
}
