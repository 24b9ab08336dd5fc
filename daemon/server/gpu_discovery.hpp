// Finds the GPUs this server can share: CUDA devices through a dlopen of libcuda.so.1 and Vulkan
// physical devices through the system loader (libvulkan.so.1, also dlopened), matched by UUID.
#pragma once

#include <cstdint>
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

// The merge behind discover_gpus, pure: CUDA devices in the given order, each joined with the first
// unmatched Vulkan device of the same (non-zero) UUID, then the Vulkan devices left over. Sets index.
std::vector<GpuInfo> merge_gpus(const std::vector<GpuInfo>& cuda, const std::vector<GpuInfo>& vulkan);

// Keeps the GPUs whose index is listed (nullopt: all); indices stay the server's own.
std::vector<GpuInfo> filter_exposed(const std::vector<GpuInfo>& gpus, const std::optional<std::vector<uint32_t>>& expose);

// The indices in expose that no GPU in gpus has, in the order listed, each once (nullopt: none).
std::vector<uint32_t> unknown_indices(const std::vector<GpuInfo>& gpus, const std::optional<std::vector<uint32_t>>& expose);

}  // namespace rgpu
