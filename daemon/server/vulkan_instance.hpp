// The server's one Vulkan instance (API 1.3 where the loader has it), created on first use and
// kept for the process's life; it describes physical devices for the Vulkan sessions.
#pragma once

#include <string>
#include <vector>

#include "vk_commands.gen.hpp"
#include "vulkan_loader.hpp"
#include "vulkan_wire.hpp"

namespace rgpu::vk {

class Instance {
 public:
  static Instance& get();

  bool ready() const { return ready_; }
  // Why there is no instance ("cannot load libvulkan.so.1: ...", "vkCreateInstance ... failed: ...").
  const std::string& problem() const { return problem_; }
  size_t device_count() const { return devices_.size(); }

  // Everything an application can ask about the physical device at `ordinal` (the order of
  // vkEnumeratePhysicalDevices, as discovery numbered them) before it creates a device.
  // Thread-safe: these queries do not change the instance.
  PhysicalDeviceDescription describe(uint32_t ordinal) const;
  VkResult image_format_properties(uint32_t ordinal, const ImageFormatQuery& query, VkImageFormatProperties& out) const;
  std::vector<VkSparseImageFormatProperties> sparse_image_format_properties(uint32_t ordinal,
                                                                            const SparseImageFormatQuery& query) const;
  // A device on the physical device at `ordinal`, and the function that finds its commands.
  VkResult create_device(uint32_t ordinal, const VkDeviceCreateInfo& info, VkDevice& device,
                         PFN_vkGetDeviceProcAddr& get_device_proc_addr) const;
  VkPhysicalDeviceMemoryProperties memory_properties(uint32_t ordinal) const;
  VkPhysicalDevice physical_device(uint32_t ordinal) const { return device(ordinal); }
  // The physical-device commands a session forwards (DeviceTable::load_physical).
  void load_physical_commands(DeviceTable& table) const { table.load_physical(gipa_, instance_); }

 private:
  Instance();
  VkPhysicalDevice device(uint32_t ordinal) const;
  void chain_queries(VkPhysicalDevice device, uint32_t usable_version, PhysicalDeviceDescription& out) const;
  void describe_formats(VkPhysicalDevice device, uint32_t usable_version, PhysicalDeviceDescription& out) const;

  bool ready_ = false;
  std::string problem_;
  uint32_t api_version_ = 0;
  VkInstance instance_ = VK_NULL_HANDLE;
  PFN_vkGetInstanceProcAddr gipa_ = nullptr;
  std::vector<VkPhysicalDevice> devices_;
  PFN_vkGetPhysicalDeviceProperties get_properties_ = nullptr;
  PFN_vkGetPhysicalDeviceProperties2 get_properties2_ = nullptr;
  PFN_vkGetPhysicalDeviceFeatures get_features_ = nullptr;
  PFN_vkGetPhysicalDeviceFeatures2 get_features2_ = nullptr;
  PFN_vkGetPhysicalDeviceMemoryProperties get_memory_properties_ = nullptr;
  PFN_vkGetPhysicalDeviceQueueFamilyProperties get_queue_families_ = nullptr;
  PFN_vkGetPhysicalDeviceFormatProperties get_format_properties_ = nullptr;
  PFN_vkGetPhysicalDeviceFormatProperties2 get_format_properties2_ = nullptr;
  PFN_vkEnumerateDeviceExtensionProperties enumerate_extensions_ = nullptr;
  PFN_vkGetPhysicalDeviceImageFormatProperties get_image_format_properties_ = nullptr;
  PFN_vkGetPhysicalDeviceSparseImageFormatProperties get_sparse_image_format_properties_ = nullptr;
};

}  // namespace rgpu::vk
