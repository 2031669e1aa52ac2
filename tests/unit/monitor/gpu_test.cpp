// The GPU probes: amdgpu's sysfs against a fake tree the test writes (the reader takes its root), NVML
// against a stand-in library (fake_nvml.cpp) and against none, and the clawbot_gpu_* series they export.
#include "monitor/gpu.h"

#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "monitor/metrics.h"

namespace clawbot::monitor {
namespace {

namespace fs = std::filesystem;

class FakeSysfs : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("clawbot-gpu-test-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "class" / "drm");
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path card(const std::string& name, const std::string& driver) {
    const fs::path device = root_ / "devices" / name;
    fs::create_directories(device);
    fs::create_directories(root_ / "bus" / "pci" / "drivers" / driver);
    fs::create_directory_symlink(root_ / "bus" / "pci" / "drivers" / driver, device / "driver");
    fs::create_directories(root_ / "class" / "drm" / name);
    fs::create_directory_symlink(device, root_ / "class" / "drm" / name / "device");
    return device;
  }
  static void write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }

  fs::path root_;
};

TEST_F(FakeSysfs, ReadsAmdgpuCardsAndSkipsOtherDrivers) {
  const auto apu = card("card0", "amdgpu");
  write(apu / "gpu_busy_percent", "37\n");
  write(apu / "mem_info_vram_used", "536870912\n");
  write(apu / "mem_info_vram_total", "2147483648\n");
  write(apu / "mem_info_gtt_used", "10737418240\n");
  write(apu / "mem_info_gtt_total", "68719476736\n");
  write(apu / "product_name", "AMD Radeon 8060S\n");
  write(apu / "hwmon" / "hwmon3" / "temp1_input", "51000\n");
  write(apu / "hwmon" / "hwmon3" / "power1_average", "30500000\n");
  const auto intel = card("card1", "i915");
  write(intel / "gpu_busy_percent", "99\n");
  // A connector entry beside the cards is not a card.
  fs::create_directories(root_ / "class" / "drm" / "card0-DP-1");

  const auto gpus = read_amdgpu(root_);
  ASSERT_EQ(gpus.size(), 1u);
  const auto& g = gpus[0];
  EXPECT_EQ(g.name, "AMD Radeon 8060S");
  EXPECT_EQ(g.driver, "amdgpu");
  EXPECT_DOUBLE_EQ(*g.utilization_ratio, 0.37);
  EXPECT_DOUBLE_EQ(*g.memory_used_bytes, 536870912.0);
  EXPECT_DOUBLE_EQ(*g.memory_total_bytes, 2147483648.0);
  EXPECT_DOUBLE_EQ(*g.gtt_used_bytes, 10737418240.0);
  EXPECT_DOUBLE_EQ(*g.gtt_total_bytes, 68719476736.0);
  EXPECT_DOUBLE_EQ(*g.temperature_celsius, 51.0);
  EXPECT_DOUBLE_EQ(*g.power_watts, 30.5);
}

TEST_F(FakeSysfs, MissingFilesAndGarbageAreNoReadingNotZero) {
  const auto a = card("card0", "amdgpu");
  write(a / "gpu_busy_percent", "lots\n");
  write(a / "mem_info_vram_used", "-5\n");
  write(a / "mem_info_vram_total", "12abc\n");
  write(a / "mem_info_gtt_used", std::string(4096, '7'));  // far longer than any attribute
  write(a / "mem_info_gtt_total", "");
  write(a / "device", "0x1586\n");
  write(a / "hwmon" / "hwmon0" / "temp1_input", "\xff\xfe");
  const auto b = card("card2", "amdgpu");
  write(b / "gpu_busy_percent", "250\n");                        // not a percentage
  write(b / "hwmon" / "hwmon1" / "power1_input", "15000000\n");  // (newer kernels on APUs)

  const auto gpus = read_amdgpu(root_);
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_EQ(gpus[0].name, "AMD GPU card0 (0x1586)");
  EXPECT_FALSE(gpus[0].utilization_ratio);
  EXPECT_FALSE(gpus[0].memory_used_bytes);
  EXPECT_FALSE(gpus[0].memory_total_bytes);
  EXPECT_FALSE(gpus[0].gtt_used_bytes);
  EXPECT_FALSE(gpus[0].gtt_total_bytes);
  EXPECT_FALSE(gpus[0].temperature_celsius);
  EXPECT_FALSE(gpus[0].power_watts);
  EXPECT_EQ(gpus[1].name, "AMD GPU card2");
  EXPECT_FALSE(gpus[1].utilization_ratio);
  EXPECT_DOUBLE_EQ(*gpus[1].power_watts, 15.0);
}

TEST_F(FakeSysfs, DriverFromUeventWhenThereIsNoLink) {
  const fs::path device = root_ / "class" / "drm" / "card0" / "device";
  write(device / "uevent", "PCI_CLASS=30000\nDRIVER=amdgpu\n");
  write(device / "gpu_busy_percent", "5\n");
  const auto gpus = read_amdgpu(root_);
  ASSERT_EQ(gpus.size(), 1u);
  EXPECT_DOUBLE_EQ(*gpus[0].utilization_ratio, 0.05);
}

TEST_F(FakeSysfs, NoDrmAtAllIsNoGpu) {
  EXPECT_TRUE(read_amdgpu(root_ / "nowhere").empty());
  GpuProbe probe({.sys_root = root_ / "nowhere", .nvml_library = ""});
  EXPECT_TRUE(probe.read().empty());
}

TEST_F(FakeSysfs, ExportsOneSeriesPerReadingAndLeavesMissingOnesOut) {
  const auto a = card("card0", "amdgpu");
  write(a / "gpu_busy_percent", "50\n");
  write(a / "mem_info_vram_used", "1024\n");
  write(a / "mem_info_vram_total", "4096\n");
  write(a / "product_name", "Radeon \"8060S\"\n");
  Registry registry;
  register_gpu_metrics(registry,
                       std::make_shared<GpuProbe>(GpuProbeOptions{.sys_root = root_, .nvml_library = ""}));
  const std::string text = registry.render();
  const std::string labels = R"({gpu="0",name="Radeon \"8060S\"",driver="amdgpu"})";
  EXPECT_NE(text.find("clawbot_gpus 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("clawbot_gpu_utilization_ratio" + labels + " 0.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("clawbot_gpu_memory_used_bytes" + labels + " 1024\n"), std::string::npos) << text;
  EXPECT_NE(text.find("clawbot_gpu_memory_total_bytes" + labels + " 4096\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("clawbot_gpu_power_watts"), std::string::npos) << text;
  EXPECT_EQ(text.find("clawbot_gpu_gtt"), std::string::npos) << text;
  EXPECT_EQ(text.find("clawbot_gpu_temperature"), std::string::npos) << text;
}

TEST_F(FakeSysfs, ReadingsAreCachedForTheInterval) {
  const auto a = card("card0", "amdgpu");
  write(a / "gpu_busy_percent", "10\n");
  GpuProbe cached({.sys_root = root_, .nvml_library = "", .min_interval = std::chrono::hours(1)});
  GpuProbe fresh({.sys_root = root_, .nvml_library = "", .min_interval = std::chrono::milliseconds(0)});
  EXPECT_DOUBLE_EQ(*cached.read().at(0).utilization_ratio, 0.1);
  EXPECT_DOUBLE_EQ(*fresh.read().at(0).utilization_ratio, 0.1);
  write(a / "gpu_busy_percent", "90\n");
  EXPECT_DOUBLE_EQ(*cached.read().at(0).utilization_ratio, 0.1);  // not read again within the interval
  EXPECT_DOUBLE_EQ(*fresh.read().at(0).utilization_ratio, 0.9);
}

TEST(Nvml, NoLibraryMeansNoNvidiaGpu) {
  EXPECT_EQ(Nvml::open("libnvidia-ml-not-installed-here.so.1"), nullptr);
  EXPECT_EQ(Nvml::open("/nonexistent/libnvidia-ml.so.1"), nullptr);
  // A library that is there but is not NVML (none of its functions).
  EXPECT_EQ(Nvml::open("libm.so.6"), nullptr);
  GpuProbe probe({.sys_root = "/nonexistent", .nvml_library = "libnvidia-ml-not-installed-here.so.1"});
  EXPECT_TRUE(probe.read().empty());
}

TEST(Nvml, ReadsEveryDeviceThroughTheLoadedLibrary) {
  // (Loaded once more here only to read its shutdown count.)
  void* fake = ::dlopen(FAKE_NVML_PATH, RTLD_NOW);
  ASSERT_NE(fake, nullptr) << ::dlerror();
  const auto shutdowns = reinterpret_cast<int (*)()>(::dlsym(fake, "fake_nvml_shutdowns"));
  ASSERT_NE(shutdowns, nullptr);
  const int before = shutdowns();
  {
    const auto nvml = Nvml::open(FAKE_NVML_PATH);
    ASSERT_NE(nvml, nullptr);
    const auto gpus = nvml->read();
    ASSERT_EQ(gpus.size(), 2u);
    EXPECT_EQ(gpus[0].name, "NVIDIA H200");
    EXPECT_EQ(gpus[0].driver, "nvidia");
    EXPECT_DOUBLE_EQ(*gpus[0].utilization_ratio, 0.42);
    EXPECT_DOUBLE_EQ(*gpus[0].memory_used_bytes, 1e9);
    EXPECT_DOUBLE_EQ(*gpus[0].memory_total_bytes, 1.5e11);
    EXPECT_DOUBLE_EQ(*gpus[0].temperature_celsius, 35);
    EXPECT_DOUBLE_EQ(*gpus[0].power_watts, 123.456);
    EXPECT_FALSE(gpus[0].gtt_used_bytes);
    EXPECT_EQ(gpus[1].name, "NVIDIA L4");
    EXPECT_FALSE(gpus[1].power_watts);  // not supported there: left out, not 0
    EXPECT_EQ(shutdowns(), before);
  }
  EXPECT_EQ(shutdowns(), before + 1);  // nvmlShutdown when the probe goes
  ::dlclose(fake);
}

TEST_F(FakeSysfs, AmdFirstThenNvidiaInOneNumbering) {
  const auto a = card("card0", "amdgpu");
  write(a / "gpu_busy_percent", "1\n");
  Registry registry;
  register_gpu_metrics(registry, std::make_shared<GpuProbe>(
                                     GpuProbeOptions{.sys_root = root_, .nvml_library = FAKE_NVML_PATH}));
  const std::string text = registry.render();
  EXPECT_NE(text.find("clawbot_gpus 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(clawbot_gpu_power_watts{gpu="1",name="NVIDIA H200",driver="nvidia"} 123.456)"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find(R"(clawbot_gpu_power_watts{gpu="2")"), std::string::npos) << text;
}

}  // namespace
}  // namespace clawbot::monitor
