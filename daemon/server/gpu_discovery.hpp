// Finds the GPUs this server can share: CUDA devices through a dlopen of libcuda.so.1 and Vulkan
// physical devices through the system loader (libvulkan.so.1, also dlopened), matched by UUID.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "messages.hpp"

namespace rgpu {

struct DiscoveryReport {
  std::vector<GpuInfo> gpus;     // index = position in this list
  std::vector<std::string> notes;  // why CUDA or Vulkan found nothing ("libcuda.so.1 not found", ...)
};

// All GPUs, CUDA and Vulkan merged: a device seen by both APIs (same UUID) is one entry with
// cuda = vulkan = true. CUDA devices come first in CUDA ordinal order, then Vulkan-only devices.
DiscoveryReport discover_gpus();

// Keeps the GPUs whose index is listed (nullopt: all); indices stay the server's own.
std::vector<GpuInfo> filter_exposed(const std::vector<GpuInfo>& gpus, const std::optional<std::vector<uint32_t>>& expose);

}  // namespace rgpu
