// GPU discovery: the pure merge and filters with synthetic lists, and the real probes against what
// this machine has (CI: Mesa's lavapipe, no NVIDIA driver).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>

#include "server/cuda_probe.hpp"
#include "server/gpu_discovery.hpp"
#include "server/vulkan_loader.hpp"
#include "server/vulkan_probe.hpp"

namespace rgpu {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Sets (or unsets, with nullopt) an environment variable for one test and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    apply(value);
  }
  ~ScopedEnv() { apply(old_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  void apply(const std::optional<std::string>& value) {
    if (value)
      ::setenv(name_, value->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  const char* name_;
  std::optional<std::string> old_;
};

std::array<uint8_t, 16> uuid_of(uint8_t seed) {
  std::array<uint8_t, 16> uuid{};
  for (size_t i = 0; i < uuid.size(); ++i) uuid[i] = static_cast<uint8_t>(seed + i);
  return uuid;
}

GpuInfo cuda_gpu(int32_t ordinal, uint8_t uuid_seed) {
  GpuInfo gpu;
  gpu.name = "NVIDIA Test " + std::to_string(ordinal);
  gpu.type = GpuType::DiscreteGpu;
  gpu.cuda = true;
  gpu.cuda_ordinal = ordinal;
  gpu.vram_bytes = 24ull << 30;
  gpu.compute_major = 8;
  gpu.compute_minor = 9;
  if (uuid_seed != 0) gpu.uuid = uuid_of(uuid_seed);
  gpu.pci_bus_id = "0000:3b:00.0";
  gpu.driver = "CUDA driver 13.0";
  return gpu;
}

GpuInfo vulkan_gpu(int32_t ordinal, uint8_t uuid_seed, GpuType type = GpuType::DiscreteGpu) {
  GpuInfo gpu;
  gpu.name = "Vulkan Test " + std::to_string(ordinal);
  gpu.type = type;
  gpu.vulkan = true;
  gpu.vulkan_ordinal = ordinal;
  gpu.vram_bytes = 23ull << 30;
  if (uuid_seed != 0) gpu.uuid = uuid_of(uuid_seed);
  gpu.vulkan_api_version = (1u << 22) | (3u << 12) | 289u;  // 1.3.289
  gpu.vendor_id = 0x10de;
  gpu.device_id = 0x2684;
  gpu.driver = "NVIDIA 580.76.05";
  return gpu;
}

std::vector<GpuInfo> indexed(uint32_t count) {
  std::vector<GpuInfo> gpus(count);
  for (uint32_t i = 0; i < count; ++i) {
    gpus[i].index = i;
    gpus[i].name = "gpu " + std::to_string(i);
  }
  return gpus;
}

std::vector<uint32_t> indices_of(const std::vector<GpuInfo>& gpus) {
  std::vector<uint32_t> indices;
  for (const auto& gpu : gpus) indices.push_back(gpu.index);
  return indices;
}

bool all_zero(const std::array<uint8_t, 16>& uuid) {
  return std::all_of(uuid.begin(), uuid.end(), [](uint8_t b) { return b == 0; });
}

// --- merge_gpus ---------------------------------------------------------------------------------

TEST(DiscoveryMerge, SameUuidIsOneEntryWithBothApis) {
  auto merged = merge_gpus({cuda_gpu(0, 1)}, {vulkan_gpu(0, 1)});
  ASSERT_EQ(merged.size(), 1u);
  const GpuInfo& gpu = merged[0];
  EXPECT_EQ(gpu.index, 0u);
  EXPECT_TRUE(gpu.cuda);
  EXPECT_TRUE(gpu.vulkan);
  EXPECT_EQ(gpu.cuda_ordinal, 0);
  EXPECT_EQ(gpu.vulkan_ordinal, 0);
  EXPECT_EQ(gpu.name, "NVIDIA Test 0");  // CUDA's view wins where both have one
  EXPECT_EQ(gpu.vram_bytes, 24ull << 30);
  EXPECT_EQ(gpu.compute_major, 8u);
  EXPECT_EQ(gpu.compute_minor, 9u);
  EXPECT_EQ(gpu.pci_bus_id, "0000:3b:00.0");
  EXPECT_EQ(gpu.vulkan_api_version, vulkan_gpu(0, 1).vulkan_api_version);
  EXPECT_EQ(gpu.vendor_id, 0x10deu);
  EXPECT_EQ(gpu.device_id, 0x2684u);
  EXPECT_EQ(gpu.uuid, uuid_of(1));
  EXPECT_THAT(gpu.driver, HasSubstr("CUDA driver 13.0"));
  EXPECT_THAT(gpu.driver, HasSubstr("NVIDIA 580.76.05"));
}

TEST(DiscoveryMerge, DifferentUuidsAreTwoEntriesCudaFirst) {
  auto merged = merge_gpus({cuda_gpu(0, 1)}, {vulkan_gpu(0, 50)});
  ASSERT_EQ(merged.size(), 2u);
  EXPECT_EQ(merged[0].index, 0u);
  EXPECT_TRUE(merged[0].cuda);
  EXPECT_FALSE(merged[0].vulkan);
  EXPECT_EQ(merged[0].vulkan_ordinal, -1);
  EXPECT_EQ(merged[1].index, 1u);
  EXPECT_FALSE(merged[1].cuda);
  EXPECT_TRUE(merged[1].vulkan);
  EXPECT_EQ(merged[1].cuda_ordinal, -1);
  EXPECT_EQ(merged[1].name, "Vulkan Test 0");
}

TEST(DiscoveryMerge, VulkanDeviceTypeWinsForAMatchedCudaDevice) {
  auto merged = merge_gpus({cuda_gpu(0, 1)}, {vulkan_gpu(0, 1, GpuType::IntegratedGpu)});
  ASSERT_EQ(merged.size(), 1u);
  EXPECT_EQ(merged[0].type, GpuType::IntegratedGpu);
}

TEST(DiscoveryMerge, UnmatchedCudaDeviceKeepsItsOwnType) {
  auto merged = merge_gpus({cuda_gpu(0, 1)}, {});
  ASSERT_EQ(merged.size(), 1u);
  EXPECT_EQ(merged[0].type, GpuType::DiscreteGpu);
}

TEST(DiscoveryMerge, ZeroUuidsNeverMatch) {
  auto merged = merge_gpus({cuda_gpu(0, 0)}, {vulkan_gpu(0, 0)});
  ASSERT_EQ(merged.size(), 2u);
  EXPECT_FALSE(merged[0].vulkan);
  EXPECT_FALSE(merged[1].cuda);
}

TEST(DiscoveryMerge, OrderIsCudaOrdinalsThenLeftoverVulkanDevices) {
  // Vulkan enumerates the two NVIDIA GPUs in the other order and has a CPU device in between.
  auto merged = merge_gpus({cuda_gpu(0, 1), cuda_gpu(1, 20)},
                           {vulkan_gpu(0, 20), vulkan_gpu(1, 90, GpuType::Cpu), vulkan_gpu(2, 1)});
  ASSERT_EQ(merged.size(), 3u);
  EXPECT_THAT(indices_of(merged), ElementsAre(0u, 1u, 2u));
  EXPECT_EQ(merged[0].cuda_ordinal, 0);
  EXPECT_EQ(merged[0].vulkan_ordinal, 2);
  EXPECT_EQ(merged[1].cuda_ordinal, 1);
  EXPECT_EQ(merged[1].vulkan_ordinal, 0);
  EXPECT_FALSE(merged[2].cuda);
  EXPECT_EQ(merged[2].vulkan_ordinal, 1);
  EXPECT_EQ(merged[2].type, GpuType::Cpu);
}

TEST(DiscoveryMerge, EmptyInputsGiveNothing) { EXPECT_THAT(merge_gpus({}, {}), IsEmpty()); }

// --- filter_exposed / unknown_indices -----------------------------------------------------------

TEST(DiscoveryFilter, NulloptKeepsEverything) {
  EXPECT_THAT(indices_of(filter_exposed(indexed(3), std::nullopt)), ElementsAre(0u, 1u, 2u));
}

TEST(DiscoveryFilter, KeepsListedIndicesInServerOrderWithTheirOwnIndices) {
  auto kept = filter_exposed(indexed(4), std::vector<uint32_t>{3, 1, 3});
  EXPECT_THAT(indices_of(kept), ElementsAre(1u, 3u));
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[1].name, "gpu 3");
}

TEST(DiscoveryFilter, EmptyListKeepsNothing) {
  EXPECT_THAT(filter_exposed(indexed(2), std::vector<uint32_t>{}), IsEmpty());
}

TEST(DiscoveryFilter, UnknownIndicesAreIgnored) {
  EXPECT_THAT(indices_of(filter_exposed(indexed(2), std::vector<uint32_t>{7, 0})), ElementsAre(0u));
}

TEST(DiscoveryUnknownIndices, ListsEachMissingIndexOnceInListedOrder) {
  EXPECT_THAT(unknown_indices(indexed(3), std::vector<uint32_t>{9, 1, 5, 9, 2}), ElementsAre(9u, 5u));
}

TEST(DiscoveryUnknownIndices, NoneForNulloptOrKnownIndices) {
  EXPECT_THAT(unknown_indices(indexed(3), std::nullopt), IsEmpty());
  EXPECT_THAT(unknown_indices(indexed(3), std::vector<uint32_t>{0, 2}), IsEmpty());
  EXPECT_THAT(unknown_indices({}, std::vector<uint32_t>{0}), ElementsAre(0u));
}

// --- library names ------------------------------------------------------------------------------

TEST(DiscoveryLibraries, DefaultsAndOverrides) {
  {
    ScopedEnv cuda("RGPU_CUDA_LIBRARY", std::nullopt);
    ScopedEnv vulkan("RGPU_VULKAN_LIBRARY", std::nullopt);
    EXPECT_EQ(cuda_library_name(), "libcuda.so.1");
    EXPECT_EQ(vulkan_library_name(), "libvulkan.so.1");
  }
  ScopedEnv cuda("RGPU_CUDA_LIBRARY", "/opt/x/libcuda.so");
  ScopedEnv vulkan("RGPU_VULKAN_LIBRARY", "/opt/x/libvulkan.so");
  EXPECT_EQ(cuda_library_name(), "/opt/x/libcuda.so");
  EXPECT_EQ(vulkan_library_name(), "/opt/x/libvulkan.so");
}

// --- the real probes ----------------------------------------------------------------------------

TEST(DiscoveryProbe, MissingCudaLibraryIsNamedInTheNotes) {
  const std::string missing = "/nonexistent/rgpu-test/libcuda-missing.so.1";
  ScopedEnv cuda("RGPU_CUDA_LIBRARY", missing);
  DiscoveryReport report = discover_gpus();
  EXPECT_TRUE(std::any_of(report.notes.begin(), report.notes.end(),
                          [&](const std::string& note) { return note.find(missing) != std::string::npos; }))
      << "notes: " << ::testing::PrintToString(report.notes);
  EXPECT_TRUE(std::none_of(report.gpus.begin(), report.gpus.end(), [](const GpuInfo& gpu) { return gpu.cuda; }));
  const CudaLibrary library = cuda_driver_library();
  EXPECT_EQ(library.handle, nullptr);
  EXPECT_THAT(library.error, HasSubstr(missing));
}

TEST(DiscoveryProbe, MissingVulkanLibraryIsNamedInTheNotes) {
  const std::string missing = "/nonexistent/rgpu-test/libvulkan-missing.so.1";
  ScopedEnv vulkan("RGPU_VULKAN_LIBRARY", missing);
  VulkanProbeResult probe = probe_vulkan();
  EXPECT_THAT(probe.devices, IsEmpty());
  ASSERT_EQ(probe.notes.size(), 1u);
  EXPECT_THAT(probe.notes[0], HasSubstr(missing));
}

TEST(DiscoveryProbe, FindsLavapipe) {
  ScopedEnv vulkan("RGPU_VULKAN_LIBRARY", std::nullopt);
  DiscoveryReport report = discover_gpus();
  auto llvmpipe = std::find_if(report.gpus.begin(), report.gpus.end(),
                               [](const GpuInfo& gpu) { return gpu.name.find("llvmpipe") != std::string::npos; });
  ASSERT_NE(llvmpipe, report.gpus.end())
      << "no llvmpipe device (is mesa-vulkan-drivers installed?); notes: " << ::testing::PrintToString(report.notes);
  const GpuInfo& gpu = *llvmpipe;
  EXPECT_EQ(gpu.type, GpuType::Cpu);
  EXPECT_TRUE(gpu.vulkan);
  EXPECT_FALSE(gpu.cuda);
  EXPECT_EQ(gpu.cuda_ordinal, -1);
  EXPECT_GE(gpu.vulkan_ordinal, 0);
  EXPECT_EQ(gpu.index, static_cast<uint32_t>(llvmpipe - report.gpus.begin()));
  EXPECT_GT(gpu.vram_bytes, 0u);
  EXPECT_GE(gpu.vulkan_api_version, static_cast<uint32_t>((1u << 22) | (1u << 12)));  // 1.1
  EXPECT_FALSE(all_zero(gpu.uuid));
  EXPECT_FALSE(gpu.driver.empty());
  for (size_t i = 0; i < report.gpus.size(); ++i) EXPECT_EQ(report.gpus[i].index, i);
  std::printf("lavapipe: name '%s', vram %llu bytes, api %u.%u.%u, vendor 0x%x device 0x%x, driver '%s', pci '%s'\n",
              gpu.name.c_str(), static_cast<unsigned long long>(gpu.vram_bytes), gpu.vulkan_api_version >> 22,
              (gpu.vulkan_api_version >> 12) & 0x3ff, gpu.vulkan_api_version & 0xfff, gpu.vendor_id, gpu.device_id,
              gpu.driver.c_str(), gpu.pci_bus_id.c_str());
}

}  // namespace
}  // namespace rgpu
