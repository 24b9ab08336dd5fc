// Physical-device queries, all answered from the description fetched when the instance was made.
#include <cstddef>
#include <cstring>

#include "icd_objects.hpp"
#include "log.hpp"
#include "vk_tables.gen.hpp"

namespace rgpu::icd {

namespace {
// sType and pNext: left as the caller set them.
constexpr size_t kChainHeaderSize = sizeof(VkBaseOutStructure);

const vk::PhysicalDeviceDescription& describe(VkPhysicalDevice handle) { return from_handle(handle)->description; }

// Fills every struct of the caller's chain that the server described; others stay untouched.
void fill_chain(const vk::PhysicalDeviceDescription& device, void* next) {
  for (auto* s = static_cast<VkBaseOutStructure*>(next); s != nullptr; s = s->pNext) {
    const vk::ChainedStruct* known = device.find(s->sType);
    const vk::QueryStruct* layout = vk::find_query_struct(s->sType);
    if (known == nullptr || layout == nullptr || known->bytes.size() != layout->size) continue;
    std::memcpy(reinterpret_cast<uint8_t*>(s) + kChainHeaderSize, known->bytes.data() + kChainHeaderSize,
                layout->size - kChainHeaderSize);
  }
}

const vk::FormatDescription* find_format(const vk::PhysicalDeviceDescription& device, VkFormat format) {
  for (const auto& f : device.formats)
    if (f.format == format) return &f;
  return nullptr;
}
}  // namespace

VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceProperties(VkPhysicalDevice device, VkPhysicalDeviceProperties* out) {
  *out = describe(device).properties;
}

VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceProperties2(VkPhysicalDevice device, VkPhysicalDeviceProperties2* out) {
  out->properties = describe(device).properties;
  fill_chain(describe(device), out->pNext);
}

VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceFeatures(VkPhysicalDevice device, VkPhysicalDeviceFeatures* out) {
  *out = describe(device).features;
}

VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceFeatures2(VkPhysicalDevice device, VkPhysicalDeviceFeatures2* out) {
  out->features = describe(device).features;
  fill_chain(describe(device), out->pNext);
}

VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceMemoryProperties(VkPhysicalDevice device,
                                                             VkPhysicalDeviceMemoryProperties* out) {
  *out = describe(device).memory;
}

// Extension structs of the memory query (budgets) change over time and are not described.
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceMemoryProperties2(VkPhysicalDevice device,
                                                              VkPhysicalDeviceMemoryProperties2* out) {
  out->memoryProperties = describe(device).memory;
}

VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceQueueFamilyProperties(VkPhysicalDevice device, uint32_t* count,
                                                                  VkQueueFamilyProperties* out) {
  copy_out(describe(device).queue_families, count, out);
}

VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceQueueFamilyProperties2(VkPhysicalDevice device, uint32_t* count,
                                                                   VkQueueFamilyProperties2* out) {
  const auto& families = describe(device).queue_families;
  if (out == nullptr) {
    *count = static_cast<uint32_t>(families.size());
    return;
  }
  *count = std::min<uint32_t>(*count, static_cast<uint32_t>(families.size()));
  for (uint32_t i = 0; i < *count; ++i) out[i].queueFamilyProperties = families[i];
}

// Formats outside the core versions the device has (extension formats) report no features.
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceFormatProperties(VkPhysicalDevice device, VkFormat format,
                                                             VkFormatProperties* out) {
  const vk::FormatDescription* f = find_format(describe(device), format);
  *out = f != nullptr ? f->properties : VkFormatProperties{};
}

VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceFormatProperties2(VkPhysicalDevice device, VkFormat format,
                                                              VkFormatProperties2* out) {
  const vk::FormatDescription* f = find_format(describe(device), format);
  out->formatProperties = f != nullptr ? f->properties : VkFormatProperties{};
  for (auto* s = static_cast<VkBaseOutStructure*>(out->pNext); s != nullptr; s = s->pNext) {
    if (s->sType != VK_STRUCTURE_TYPE_FORMAT_PROPERTIES_3 || (f != nullptr && !f->has_properties3)) continue;
    auto* properties3 = reinterpret_cast<VkFormatProperties3*>(s);
    properties3->linearTilingFeatures = f != nullptr ? f->linear_tiling_features2 : 0;
    properties3->optimalTilingFeatures = f != nullptr ? f->optimal_tiling_features2 : 0;
    properties3->bufferFeatures = f != nullptr ? f->buffer_features2 : 0;
  }
}

VKAPI_ATTR VkResult VKAPI_CALL EnumerateDeviceExtensionProperties(VkPhysicalDevice device, const char* layer,
                                                                  uint32_t* count, VkExtensionProperties* out) {
  if (layer != nullptr) return VK_ERROR_LAYER_NOT_PRESENT;
  return copy_out(from_handle(device)->extensions, count, out);
}

// No tools (validation layers, profilers) run inside this driver.
VKAPI_ATTR VkResult VKAPI_CALL GetPhysicalDeviceToolProperties(VkPhysicalDevice, uint32_t* count,
                                                               VkPhysicalDeviceToolProperties*) {
  *count = 0;
  return VK_SUCCESS;
}

}  // namespace rgpu::icd

namespace rgpu::icd {

namespace {
template <typename Query>
VkResult ask_server(VkPhysicalDevice handle, uint32_t command, const Query& query, std::vector<uint8_t>& outputs) {
  PhysicalDevice* device = from_handle(handle);
  std::string problem;
  const std::span<const uint8_t> arguments{reinterpret_cast<const uint8_t*>(&query), sizeof query};
  VkResult result = device->instance->session->call(command, arguments, outputs, problem);
  if (!problem.empty() && result != VK_ERROR_FORMAT_NOT_SUPPORTED)
    LOG_ERROR("Vulkan: %s: %s", device->description.properties.deviceName, problem.c_str());
  return result;
}
}  // namespace

VKAPI_ATTR VkResult VKAPI_CALL GetPhysicalDeviceImageFormatProperties(VkPhysicalDevice device, VkFormat format,
                                                                      VkImageType type, VkImageTiling tiling,
                                                                      VkImageUsageFlags usage, VkImageCreateFlags flags,
                                                                      VkImageFormatProperties* out) {
  const vk::ImageFormatQuery query{from_handle(device)->session_index, format, type, tiling, usage, flags};
  std::vector<uint8_t> outputs;
  VkResult result = ask_server(device, vk::CMD_GetPhysicalDeviceImageFormatProperties, query, outputs);
  if (result == VK_ERROR_FORMAT_NOT_SUPPORTED) *out = {};
  if (result != VK_SUCCESS) return result;
  if (outputs.size() != sizeof *out) {
    LOG_ERROR("Vulkan: vkGetPhysicalDeviceImageFormatProperties: the server answered %zu bytes", outputs.size());
    return VK_ERROR_INITIALIZATION_FAILED;
  }
  std::memcpy(out, outputs.data(), sizeof *out);
  return result;
}

// Returns nothing on failure (the command cannot report errors); the failure is logged.
VKAPI_ATTR void VKAPI_CALL GetPhysicalDeviceSparseImageFormatProperties(VkPhysicalDevice device, VkFormat format,
                                                                        VkImageType type,
                                                                        VkSampleCountFlagBits samples,
                                                                        VkImageUsageFlags usage, VkImageTiling tiling,
                                                                        uint32_t* count,
                                                                        VkSparseImageFormatProperties* out) {
  const vk::SparseImageFormatQuery query{from_handle(device)->session_index, format, type, samples, usage, tiling};
  std::vector<uint8_t> outputs;
  std::vector<VkSparseImageFormatProperties> properties;
  if (ask_server(device, vk::CMD_GetPhysicalDeviceSparseImageFormatProperties, query, outputs) == VK_SUCCESS) {
    try {
      WireReader reader(outputs, "sparse image format properties");
      const uint32_t n = reader.get<uint32_t>();
      if (n > 64) throw WireError("sparse image format properties: " + std::to_string(n) + " is over the limit");
      for (uint32_t i = 0; i < n; ++i) properties.push_back(reader.get<VkSparseImageFormatProperties>());
      reader.expect_end();
    } catch (const WireError& e) {
      LOG_ERROR("Vulkan: %s", e.what());
      properties.clear();
    }
  }
  copy_out(properties, count, out);
}

}  // namespace rgpu::icd
