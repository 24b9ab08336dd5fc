// Prints what an application learns about every Vulkan physical device through the system loader,
// one `key: value` line each (struct contents as hex), so that two runs with different drivers
// (VK_DRIVER_FILES) can be compared line by line. Exit status 1 when no instance can be made.
#include <vulkan/vulkan.h>

#include <cstdio>
#include <string>
#include <vector>

#include "vk_tables.gen.hpp"

namespace {

std::string hex(const void* data, size_t size) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  const auto* bytes = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < size; ++i) {
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 15];
  }
  return out;
}

template <typename T>
std::string hex(const T& value) {
  return hex(&value, sizeof value);
}

void line(const std::string& key, const std::string& value) { std::printf("%s: %s\n", key.c_str(), value.c_str()); }

// Every core struct (for the device's version) that extends `query`, chained, queried, printed.
void dump_chain(const std::string& prefix, VkPhysicalDevice device, uint32_t api_version, rgpu::vk::Query query) {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<const rgpu::vk::QueryStruct*> layouts;
  void* next = nullptr;
  for (size_t i = 0; i < rgpu::vk::kQueryStructCount; ++i) {
    const auto& s = rgpu::vk::kQueryStructs[i];
    if (s.extends != query || s.core_version == 0 || s.core_version > api_version) continue;
    storage.emplace_back(s.size, 0);
    auto* base = reinterpret_cast<VkBaseOutStructure*>(storage.back().data());
    base->sType = s.type;
    base->pNext = static_cast<VkBaseOutStructure*>(next);
    next = base;
    layouts.push_back(&s);
  }
  if (query == rgpu::vk::Query::Properties2) {
    VkPhysicalDeviceProperties2 properties{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, next, {}};
    vkGetPhysicalDeviceProperties2(device, &properties);
  } else {
    VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, next, {}};
    vkGetPhysicalDeviceFeatures2(device, &features);
  }
  for (size_t i = 0; i < layouts.size(); ++i)
    line(prefix + layouts[i]->name,
         hex(storage[i].data() + sizeof(VkBaseOutStructure), layouts[i]->size - sizeof(VkBaseOutStructure)));
}

// Vulkan 1.1 queries with chained inputs and outputs: images, buffers, fences and semaphores
// shared through file descriptors.
void dump_external(const std::string& prefix, VkPhysicalDevice device) {
  const auto fd = VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT;
  VkPhysicalDeviceExternalImageFormatInfo external_info{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_IMAGE_FORMAT_INFO,
                                                        nullptr, fd};
  VkPhysicalDeviceImageFormatInfo2 image_info{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_IMAGE_FORMAT_INFO_2, &external_info,
                                              VK_FORMAT_R8G8B8A8_UNORM, VK_IMAGE_TYPE_2D, VK_IMAGE_TILING_OPTIMAL,
                                              VK_IMAGE_USAGE_SAMPLED_BIT, 0};
  VkExternalImageFormatProperties external_image{VK_STRUCTURE_TYPE_EXTERNAL_IMAGE_FORMAT_PROPERTIES, nullptr, {}};
  VkImageFormatProperties2 image{VK_STRUCTURE_TYPE_IMAGE_FORMAT_PROPERTIES_2, &external_image, {}};
  const VkResult result = vkGetPhysicalDeviceImageFormatProperties2(device, &image_info, &image);
  line(prefix + "imageFormat2.R8G8B8A8_UNORM.opaqueFd", std::to_string(result) + " " + hex(image.imageFormatProperties) +
                                                            " " + hex(external_image.externalMemoryProperties));
  const VkPhysicalDeviceExternalBufferInfo buffer_info{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_BUFFER_INFO, nullptr,
                                                       0, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, fd};
  VkExternalBufferProperties buffer{VK_STRUCTURE_TYPE_EXTERNAL_BUFFER_PROPERTIES, nullptr, {}};
  vkGetPhysicalDeviceExternalBufferProperties(device, &buffer_info, &buffer);
  line(prefix + "externalBuffer.opaqueFd", hex(buffer.externalMemoryProperties));
  const VkPhysicalDeviceExternalFenceInfo fence_info{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_FENCE_INFO, nullptr,
                                                     VK_EXTERNAL_FENCE_HANDLE_TYPE_OPAQUE_FD_BIT};
  VkExternalFenceProperties fence{VK_STRUCTURE_TYPE_EXTERNAL_FENCE_PROPERTIES, nullptr, 0, 0, 0};
  vkGetPhysicalDeviceExternalFenceProperties(device, &fence_info, &fence);
  line(prefix + "externalFence.opaqueFd", hex(&fence.exportFromImportedHandleTypes, 3 * sizeof(uint32_t)));
  const VkPhysicalDeviceExternalSemaphoreInfo semaphore_info{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_SEMAPHORE_INFO,
                                                             nullptr, VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_OPAQUE_FD_BIT};
  VkExternalSemaphoreProperties semaphore{VK_STRUCTURE_TYPE_EXTERNAL_SEMAPHORE_PROPERTIES, nullptr, 0, 0, 0};
  vkGetPhysicalDeviceExternalSemaphoreProperties(device, &semaphore_info, &semaphore);
  line(prefix + "externalSemaphore.opaqueFd", hex(&semaphore.exportFromImportedHandleTypes, 3 * sizeof(uint32_t)));
  const VkPhysicalDeviceSparseImageFormatInfo2 sparse_info{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SPARSE_IMAGE_FORMAT_INFO_2,
                                                           nullptr, VK_FORMAT_R8G8B8A8_UNORM, VK_IMAGE_TYPE_2D,
                                                           VK_SAMPLE_COUNT_1_BIT, VK_IMAGE_USAGE_SAMPLED_BIT,
                                                           VK_IMAGE_TILING_OPTIMAL};
  uint32_t sparse = 99;
  vkGetPhysicalDeviceSparseImageFormatProperties2(device, &sparse_info, &sparse, nullptr);
  line(prefix + "sparseImageFormat2.R8G8B8A8_UNORM", std::to_string(sparse));
}

void dump_device(const std::string& prefix, VkPhysicalDevice device) {
  VkPhysicalDeviceProperties p{};
  vkGetPhysicalDeviceProperties(device, &p);
  line(prefix + "deviceName", p.deviceName);
  line(prefix + "apiVersion", std::to_string(p.apiVersion));
  line(prefix + "driverVersion", std::to_string(p.driverVersion));
  line(prefix + "vendorID", std::to_string(p.vendorID));
  line(prefix + "deviceID", std::to_string(p.deviceID));
  line(prefix + "deviceType", std::to_string(p.deviceType));
  line(prefix + "pipelineCacheUUID", hex(p.pipelineCacheUUID));
  line(prefix + "limits", hex(p.limits));
  line(prefix + "sparseProperties", hex(p.sparseProperties));
  VkPhysicalDeviceFeatures features{};
  vkGetPhysicalDeviceFeatures(device, &features);
  line(prefix + "features", hex(features));
  VkPhysicalDeviceMemoryProperties memory{};
  vkGetPhysicalDeviceMemoryProperties(device, &memory);
  for (uint32_t i = 0; i < memory.memoryTypeCount; ++i)
    line(prefix + "memoryType" + std::to_string(i), hex(memory.memoryTypes[i]));
  for (uint32_t i = 0; i < memory.memoryHeapCount; ++i)
    line(prefix + "memoryHeap" + std::to_string(i), hex(memory.memoryHeaps[i]));
  uint32_t families = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(device, &families, nullptr);
  std::vector<VkQueueFamilyProperties> family(families);
  vkGetPhysicalDeviceQueueFamilyProperties(device, &families, family.data());
  for (uint32_t i = 0; i < families; ++i) line(prefix + "queueFamily" + std::to_string(i), hex(family[i]));
  for (size_t i = 0; i < rgpu::vk::kCoreFormatCount; ++i) {
    const auto& f = rgpu::vk::kCoreFormats[i];
    if (f.version > p.apiVersion) continue;
    VkFormatProperties3 properties3{VK_STRUCTURE_TYPE_FORMAT_PROPERTIES_3, nullptr, 0, 0, 0};
    VkFormatProperties2 properties{VK_STRUCTURE_TYPE_FORMAT_PROPERTIES_2,
                                   p.apiVersion >= VK_API_VERSION_1_3 ? &properties3 : nullptr, {}};
    vkGetPhysicalDeviceFormatProperties2(device, f.format, &properties);
    line(prefix + "format" + std::to_string(f.format),
         hex(properties.formatProperties) + " " + hex(&properties3.linearTilingFeatures, 3 * sizeof(VkFormatFeatureFlags2)));
  }
  VkImageFormatProperties image{};
  VkResult result = vkGetPhysicalDeviceImageFormatProperties(
      device, VK_FORMAT_R8G8B8A8_UNORM, VK_IMAGE_TYPE_2D, VK_IMAGE_TILING_OPTIMAL,
      VK_IMAGE_USAGE_SAMPLED_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT, 0, &image);
  line(prefix + "imageFormat.R8G8B8A8_UNORM", std::to_string(result) + " " + hex(image));
  VkImageFormatProperties unsupported{};
  result = vkGetPhysicalDeviceImageFormatProperties(device, VK_FORMAT_ASTC_4x4_UNORM_BLOCK, VK_IMAGE_TYPE_3D,
                                                    VK_IMAGE_TILING_LINEAR, VK_IMAGE_USAGE_STORAGE_BIT, 0, &unsupported);
  line(prefix + "imageFormat.ASTC_3D_linear_storage", std::to_string(result));
  if (p.apiVersion >= VK_API_VERSION_1_1) dump_external(prefix, device);
  dump_chain(prefix, device, p.apiVersion, rgpu::vk::Query::Properties2);
  dump_chain(prefix, device, p.apiVersion, rgpu::vk::Query::Features2);
  uint32_t count = 0;
  vkEnumerateDeviceExtensionProperties(device, nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> extensions(count);
  vkEnumerateDeviceExtensionProperties(device, nullptr, &count, extensions.data());
  std::string names;
  for (const auto& e : extensions) names += std::string(names.empty() ? "" : " ") + e.extensionName;
  line(prefix + "extensions", names);
  uint32_t tools = 99;
  vkGetPhysicalDeviceToolProperties(device, &tools, nullptr);
  line(prefix + "tools", std::to_string(tools));
}

}  // namespace

int main() {
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO, nullptr, "vulkan_dump", 1, nullptr, 0, VK_API_VERSION_1_3};
  VkInstanceCreateInfo info{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, nullptr, 0, &app, 0, nullptr, 0, nullptr};
  VkInstance instance = VK_NULL_HANDLE;
  VkResult result = vkCreateInstance(&info, nullptr, &instance);
  line("vkCreateInstance", std::to_string(result));
  if (result != VK_SUCCESS) return 1;
  uint32_t count = 0;
  vkEnumeratePhysicalDevices(instance, &count, nullptr);
  std::vector<VkPhysicalDevice> devices(count);
  vkEnumeratePhysicalDevices(instance, &count, devices.data());
  line("devices", std::to_string(count));
  for (uint32_t i = 0; i < count; ++i) dump_device("gpu" + std::to_string(i) + ".", devices[i]);
  vkDestroyInstance(instance, nullptr);
  return 0;
}
