// The system Vulkan loader (libvulkan.so.1, dlopened, never linked) and instances created through
// it: shared by GPU discovery and the Vulkan executor.
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <string>

namespace rgpu {

// RGPU_VULKAN_LIBRARY when set and not empty, else "libvulkan.so.1".
std::string vulkan_library_name();

// The loader's vkGetInstanceProcAddr, or nullptr with `problem` saying why (for a log line).
PFN_vkGetInstanceProcAddr open_vulkan_loader(std::string& problem);

// The version to create instances with: the loader's, at most Vulkan 1.3.
uint32_t instance_api_version(PFN_vkGetInstanceProcAddr gipa);

// An instance with no layers and no extensions; `problem` says what failed.
VkInstance create_vulkan_instance(PFN_vkGetInstanceProcAddr gipa, uint32_t api_version, const char* application,
                                  std::string& problem);

std::string vulkan_version_text(uint32_t version);

}  // namespace rgpu
