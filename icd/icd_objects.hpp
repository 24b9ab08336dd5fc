// The ICD's dispatchable objects. Each starts with the loader's dispatch slot (VK_LOADER_DATA,
// set to ICD_LOADER_MAGIC when made; the loader writes its dispatch table there).
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vk_icd.h>
#include <vulkan/vulkan.h>

#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
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

struct Device;

// Device memory as the ICD knows it. While mapped, `region` is the application's copy of the
// mapped range (from `base`, page-aligned) and `snapshot` what the server last saw of it.
struct Memory {
  Device* device = nullptr;
  uint64_t size = 0;
  uint32_t type = 0;
  uint8_t* region = nullptr;
  uint64_t base = 0;
  uint64_t length = 0;
  std::vector<uint8_t> snapshot;
  bool watched = false;  // the kernel reports which pages of the region were written

  // The region's mapping: whole pages.
  uint64_t region_size() const { return (length + 4095) & ~uint64_t{4095}; }
};

struct Instance {
  VK_LOADER_DATA loader_data;
  std::unique_ptr<DaemonSession> session;
  std::vector<std::unique_ptr<PhysicalDevice>> devices;
  // Every live allocation of the instance's devices by id (guarded by the session's lock).
  std::unordered_map<uint64_t, std::unique_ptr<Memory>> memories;
};

struct Queue {
  VK_LOADER_DATA loader_data;
  Device* device = nullptr;
};

// Commands are recorded here and travel with vkEndCommandBuffer (rgpu.Batch).
struct CommandBuffer {
  VK_LOADER_DATA loader_data;
  Device* device = nullptr;
  uint64_t pool = 0;
  std::vector<uint8_t> stream;  // n x (u32 command, u32 length, arguments)
  uint32_t count = 0;
};

struct Device {
  VK_LOADER_DATA loader_data;
  PhysicalDevice* physical = nullptr;
  uint32_t api_version = 0;  // the core version whose commands it offers
  std::vector<std::string> extensions;  // enabled at creation
  std::mutex mutex;  // queues and pools
  std::map<std::pair<uint32_t, uint32_t>, std::unique_ptr<Queue>> queues;  // (family, index)
  std::unordered_map<uint64_t, std::vector<std::unique_ptr<CommandBuffer>>> pools;
  // Descriptor update templates, by template id (descriptor_templates.cpp).
  struct UpdateTemplate {
    std::vector<VkDescriptorUpdateTemplateEntry> entries;
    VkPipelineBindPoint bind_point;  // of push descriptor templates
  };
  std::unordered_map<uint64_t, UpdateTemplate> templates;

  DaemonSession& session() const { return *physical->instance->session; }
  Instance& instance() const { return *physical->instance; }
};

inline Instance* from_handle(VkInstance handle) { return reinterpret_cast<Instance*>(handle); }
inline PhysicalDevice* from_handle(VkPhysicalDevice handle) { return reinterpret_cast<PhysicalDevice*>(handle); }
inline Device* from_handle(VkDevice handle) { return reinterpret_cast<Device*>(handle); }
inline Queue* from_handle(VkQueue handle) { return reinterpret_cast<Queue*>(handle); }
inline CommandBuffer* from_handle(VkCommandBuffer handle) { return reinterpret_cast<CommandBuffer*>(handle); }

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

// Device level (device.cpp).
VKAPI_ATTR VkResult VKAPI_CALL CreateDevice(VkPhysicalDevice, const VkDeviceCreateInfo*, const VkAllocationCallbacks*,
                                            VkDevice*);
VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL GetDeviceProcAddr(VkDevice, const char*);
VKAPI_ATTR void VKAPI_CALL DestroyDevice(VkDevice, const VkAllocationCallbacks*);
// Device extensions this ICD can forward, among those the physical device has.
std::vector<VkExtensionProperties> forwardable_extensions(const std::vector<VkExtensionProperties>& device_has);
// The mapped-memory updates from the server land here (installed on the instance's session).
void receive_memory(Instance& instance, uint64_t memory, uint64_t offset, std::span<const uint8_t> bytes);

}  // namespace rgpu::icd
