// The ICD's dispatchable objects. Each starts with the loader's dispatch slot (VK_LOADER_DATA,
// set to ICD_LOADER_MAGIC when made; the loader writes its dispatch table there).
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vk_icd.h>
#include <vulkan/vulkan.h>

#include <memory>
#include <string>
#include <vector>

#include "daemon_session.hpp"
#include "vulkan_wire.hpp"

namespace rgpu::icd {

struct Instance;

struct PhysicalDevice {
  VK_LOADER_DATA loader_data;
  Instance* instance = nullptr;
  uint32_t session_index = 0;  // its place in the session's device list (what calls to the server name)
  vk::PhysicalDeviceDescription description;     // fetched once when the instance was made
  std::vector<VkExtensionProperties> extensions;  // what this ICD advertises for it
};

struct Instance {
  VK_LOADER_DATA loader_data;
  std::unique_ptr<DaemonSession> session;
  std::vector<std::unique_ptr<PhysicalDevice>> devices;
};

inline Instance* from_handle(VkInstance handle) { return reinterpret_cast<Instance*>(handle); }
inline PhysicalDevice* from_handle(VkPhysicalDevice handle) { return reinterpret_cast<PhysicalDevice*>(handle); }

// Vulkan's two-call idiom: with `out` null, the count; else as many as fit, VK_INCOMPLETE when
// not all did.
template <typename T>
VkResult copy_out(const std::vector<T>& items, uint32_t* count, T* out) {
  if (out == nullptr) {
    *count = static_cast<uint32_t>(items.size());
    return VK_SUCCESS;
  }
  const uint32_t n = std::min<uint32_t>(*count, static_cast<uint32_t>(items.size()));
  for (uint32_t i = 0; i < n; ++i) out[i] = items[i];
  *count = n;
  return n < items.size() ? VK_INCOMPLETE : VK_SUCCESS;
}

// Entry points (instance.cpp, physical_device.cpp).
VKAPI_ATTR VkResult VKAPI_CALL CreateInstance(const VkInstanceCreateInfo*, const VkAllocationCallbacks*, VkInstance*);
VKAPI_ATTR void VKAPI_CALL DestroyInstance(VkInstance, const VkAllocationCallbacks*);
VKAPI_ATTR VkResult VKAPI_CALL EnumerateInstanceExtensionProperties(const char*, uint32_t*, VkExtensionProperties*);
VKAPI_ATTR VkResult VKAPI_CALL EnumerateInstanceVersion(uint32_t*);
VKAPI_ATTR VkResult VKAPI_CALL EnumeratePhysicalDevices(VkInstance, uint32_t*, VkPhysicalDevice*);

VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceProperties(VkPhysicalDevice, VkPhysicalDeviceProperties*);
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceProperties2(VkPhysicalDevice, VkPhysicalDeviceProperties2*);
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceFeatures(VkPhysicalDevice, VkPhysicalDeviceFeatures*);
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceFeatures2(VkPhysicalDevice, VkPhysicalDeviceFeatures2*);
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceMemoryProperties(VkPhysicalDevice, VkPhysicalDeviceMemoryProperties*);
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceMemoryProperties2(VkPhysicalDevice, VkPhysicalDeviceMemoryProperties2*);
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceQueueFamilyProperties(VkPhysicalDevice, uint32_t*, VkQueueFamilyProperties*);
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceQueueFamilyProperties2(VkPhysicalDevice, uint32_t*,
                                                                   VkQueueFamilyProperties2*);
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceFormatProperties(VkPhysicalDevice, VkFormat, VkFormatProperties*);
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceFormatProperties2(VkPhysicalDevice, VkFormat, VkFormatProperties2*);
VKAPI_ATTR VkResult VKAPI_CALL EnumerateDeviceExtensionProperties(VkPhysicalDevice, const char*, uint32_t*,
                                                                  VkExtensionProperties*);
VKAPI_ATTR VkResult VKAPI_CALL GetPhysicalDeviceToolProperties(VkPhysicalDevice, uint32_t*,
                                                               VkPhysicalDeviceToolProperties*);
VKAPI_ATTR VkResult VKAPI_CALL GetPhysicalDeviceImageFormatProperties(VkPhysicalDevice, VkFormat, VkImageType,
                                                                      VkImageTiling, VkImageUsageFlags,
                                                                      VkImageCreateFlags, VkImageFormatProperties*);
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceSparseImageFormatProperties(VkPhysicalDevice, VkFormat, VkImageType,
                                                                        VkSampleCountFlagBits, VkImageUsageFlags,
                                                                        VkImageTiling, uint32_t*,
                                                                        VkSparseImageFormatProperties*);

// Device level (device.cpp): not implemented yet, but the loader refuses an ICD without them.
VKAPI_ATTR VkResult VKAPI_CALL CreateDevice(VkPhysicalDevice, const VkDeviceCreateInfo*, const VkAllocationCallbacks*,
                                            VkDevice*);
VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL GetDeviceProcAddr(VkDevice, const char*);

}  // namespace rgpu::icd
