// Vulkan side of GPU discovery: the physical devices the system loader (libvulkan.so.1, dlopened)
// reports, through a short-lived instance.
#pragma once

#include <string>
#include <vector>

#include "messages.hpp"

namespace rgpu {

struct VulkanProbeResult {
  std::vector<GpuInfo> devices;    // vulkan = true, vulkan_ordinal = enumeration index; index not set
  std::vector<std::string> notes;  // why nothing (or not everything) was found
};

// Creates an instance (API 1.3 or what the loader offers, no layers, no extensions), describes
// every physical device, and destroys the instance.
VulkanProbeResult probe_vulkan();

}  // namespace rgpu
