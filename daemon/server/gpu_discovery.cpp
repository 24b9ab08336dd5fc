#include "gpu_discovery.hpp"

#include <algorithm>
#include <iterator>

#include "cuda_probe.hpp"
#include "vulkan_probe.hpp"

namespace rgpu {

namespace {

bool has_uuid(const GpuInfo& gpu) {
  return std::any_of(gpu.uuid.begin(), gpu.uuid.end(), [](uint8_t b) { return b != 0; });
}

// The first Vulkan device not yet taken with the CUDA device's UUID; devices without a UUID match nothing.
std::optional<size_t> find_vulkan_twin(const GpuInfo& cuda, const std::vector<GpuInfo>& vulkan,
                                       const std::vector<bool>& taken) {
  if (!has_uuid(cuda)) return std::nullopt;
  for (size_t i = 0; i < vulkan.size(); ++i)
    if (!taken[i] && vulkan[i].uuid == cuda.uuid) return i;
  return std::nullopt;
}

// The CUDA view (name, memory, compute capability, PCI address) completed with what only Vulkan knows.
GpuInfo join(const GpuInfo& cuda, const GpuInfo& vulkan) {
  GpuInfo gpu = cuda;
  gpu.vulkan = true;
  gpu.vulkan_ordinal = vulkan.vulkan_ordinal;
  gpu.vulkan_api_version = vulkan.vulkan_api_version;
  gpu.vendor_id = vulkan.vendor_id;
  gpu.device_id = vulkan.device_id;
  gpu.type = vulkan.type;
  if (gpu.vram_bytes == 0) gpu.vram_bytes = vulkan.vram_bytes;
  if (gpu.pci_bus_id.empty()) gpu.pci_bus_id = vulkan.pci_bus_id;
  if (!vulkan.driver.empty()) gpu.driver = gpu.driver.empty() ? vulkan.driver : gpu.driver + ", " + vulkan.driver;
  return gpu;
}

bool listed(const std::vector<uint32_t>& indices, uint32_t index) {
  return std::find(indices.begin(), indices.end(), index) != indices.end();
}

}  // namespace

std::vector<GpuInfo> merge_gpus(const std::vector<GpuInfo>& cuda, const std::vector<GpuInfo>& vulkan) {
  std::vector<GpuInfo> merged;
  merged.reserve(cuda.size() + vulkan.size());
  std::vector<bool> taken(vulkan.size(), false);
  for (const GpuInfo& device : cuda) {
    if (auto twin = find_vulkan_twin(device, vulkan, taken)) {
      taken[*twin] = true;
      merged.push_back(join(device, vulkan[*twin]));
    } else {
      merged.push_back(device);
    }
  }
  for (size_t i = 0; i < vulkan.size(); ++i)
    if (!taken[i]) merged.push_back(vulkan[i]);
  for (size_t i = 0; i < merged.size(); ++i) merged[i].index = static_cast<uint32_t>(i);
  return merged;
}

DiscoveryReport discover_gpus() {
  CudaProbeResult cuda = probe_cuda();
  VulkanProbeResult vulkan = probe_vulkan();
  DiscoveryReport report;
  report.gpus = merge_gpus(cuda.devices, vulkan.devices);
  report.notes = std::move(cuda.notes);
  report.notes.insert(report.notes.end(), vulkan.notes.begin(), vulkan.notes.end());
  return report;
}

std::vector<GpuInfo> filter_exposed(const std::vector<GpuInfo>& gpus, const std::optional<std::vector<uint32_t>>& expose) {
  if (!expose) return gpus;
  std::vector<GpuInfo> kept;
  std::copy_if(gpus.begin(), gpus.end(), std::back_inserter(kept),
               [&](const GpuInfo& gpu) { return listed(*expose, gpu.index); });
  return kept;
}

std::vector<uint32_t> unknown_indices(const std::vector<GpuInfo>& gpus, const std::optional<std::vector<uint32_t>>& expose) {
  std::vector<uint32_t> unknown;
  if (!expose) return unknown;
  for (uint32_t index : *expose) {
    const bool known = std::any_of(gpus.begin(), gpus.end(), [index](const GpuInfo& gpu) { return gpu.index == index; });
    if (!known && !listed(unknown, index)) unknown.push_back(index);
  }
  return unknown;
}

}  // namespace rgpu
