// Vulkan calls on the wire (docs/protocol.md): a VulkanCall frame carries `u32 command` and its
// arguments, a VulkanReply frame carries `i32 VkResult` and its outputs.
//
// Vulkan structs travel as their raw bytes (both ends run the same architecture and build
// against the same Vulkan headers' layouts); pointers never travel: every pNext is null on the
// wire, and structs holding other pointers are not sent at all.
#pragma once

#include <vulkan/vulkan_core.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "wire.hpp"

namespace rgpu::vk {

inline constexpr uint16_t kMsgVulkanCall = 0x200;
inline constexpr uint16_t kMsgVulkanReply = 0x201;
// Server -> ICD, request id 0, sent before the reply that makes it visible: bytes the device
// changed in host-mapped memory. Payload: u64 memory id, u64 offset in the allocation, bytes.
inline constexpr uint16_t kMsgVulkanMemory = 0x202;
// At most this many bytes of memory travel in one frame.
inline constexpr uint64_t kMemoryChunk = 8ull << 20;
// Mapped memory is compared and sent in pages of this size.
inline constexpr uint64_t kMemoryPage = 4096;
// kMsgVulkanMemory frames from this size on arrive through the ring (smaller ones inline).
inline constexpr uint64_t kRingMemoryMin = 256u << 10;

// A Vulkan application's ring (one per ICD connection) in two halves: the ICD's writes to mapped
// memory leave through slots of the lower half, which the ICD picks; kMsgVulkanMemory frames
// arrive through slots of the upper half, which the daemon picks (the frame is received straight
// into the slot) and the ICD gives back with RingRelease once it has taken the bytes.
struct VulkanRingLayout {
  uint64_t outgoing_slot = 0, outgoing_slots = 0;  // from offset 0
  uint64_t incoming_base = 0, incoming_slot = 0, incoming_slots = 0;
};
inline VulkanRingLayout vulkan_ring_layout(uint64_t ring_size) {
  VulkanRingLayout layout;
  const uint64_t half = ring_size / 2;
  layout.outgoing_slots = std::max<uint64_t>(2, half / kMemoryChunk);
  layout.outgoing_slot = half / layout.outgoing_slots;
  layout.incoming_base = half;
  layout.incoming_slot = kMemoryChunk + kMemoryPage;  // a whole chunk and its frame's fields
  layout.incoming_slots = (ring_size - half) / layout.incoming_slot;
  return layout;
}

// RGPU's own Vulkan calls (the device level; the vk* ones are generated, see vk_commands.gen.hpp).
// u32 session device, u64 device id, VkDeviceCreateInfo. Synchronous.
inline constexpr uint32_t CMD_CreateDevice = fnv1a("rgpu.CreateDevice");
// u64 device id. Pipelined: waits for the device to be idle, destroys what is left of it.
inline constexpr uint32_t CMD_DestroyDevice = fnv1a("rgpu.DestroyDevice");
// u64 memory id, u64 offset, u64 size (the range the application maps). Synchronous: the server
// maps the memory and sends its current contents (kMsgVulkanMemory) before it answers.
inline constexpr uint32_t CMD_MapMemory = fnv1a("rgpu.MapMemory");
// u64 memory id. Pipelined.
inline constexpr uint32_t CMD_UnmapMemory = fnv1a("rgpu.UnmapMemory");
// u64 memory id, u64 offset, bytes: what the application wrote. Pipelined.
inline constexpr uint32_t CMD_WriteMemory = fnv1a("rgpu.WriteMemory");
// No arguments. Synchronous: the server sends what the device changed in mapped memory.
inline constexpr uint32_t CMD_PullMemory = fnv1a("rgpu.PullMemory");
// u32 n, then n x (u32 command, u32 length, arguments): a recorded command buffer, from
// vkBeginCommandBuffer to vkEndCommandBuffer. Pipelined.
inline constexpr uint32_t CMD_Batch = fnv1a("rgpu.Batch");

// Every physical device of the session, described once (no arguments; reply: PhysicalDeviceList).
inline constexpr uint32_t CMD_DescribePhysicalDevices = fnv1a("rgpu.DescribePhysicalDevices");
// Queries with parameters, forwarded as they come. `device` is the session's device index.
struct ImageFormatQuery {
  uint32_t device;
  VkFormat format;
  VkImageType type;
  VkImageTiling tiling;
  VkImageUsageFlags usage;
  VkImageCreateFlags flags;
};
// Reply: result, then VkImageFormatProperties.
inline constexpr uint32_t CMD_GetPhysicalDeviceImageFormatProperties = fnv1a("vkGetPhysicalDeviceImageFormatProperties");
struct SparseImageFormatQuery {
  uint32_t device;
  VkFormat format;
  VkImageType type;
  VkSampleCountFlagBits samples;
  VkImageUsageFlags usage;
  VkImageTiling tiling;
};
// Reply: VK_SUCCESS, then u32 n, n x VkSparseImageFormatProperties.
inline constexpr uint32_t CMD_GetPhysicalDeviceSparseImageFormatProperties =
    fnv1a("vkGetPhysicalDeviceSparseImageFormatProperties");

// A struct that extends VkPhysicalDeviceProperties2 or VkPhysicalDeviceFeatures2, as the driver
// filled it: all its bytes, sType included, pNext zeroed.
struct ChainedStruct {
  VkStructureType type = VK_STRUCTURE_TYPE_APPLICATION_INFO;
  std::vector<uint8_t> bytes;
};

struct FormatDescription {
  VkFormat format = VK_FORMAT_UNDEFINED;
  VkFormatProperties properties{};
  bool has_properties3 = false;  // the device has Vulkan 1.3 or VK_KHR_format_feature_flags2
  VkFormatFeatureFlags2 linear_tiling_features2 = 0;
  VkFormatFeatureFlags2 optimal_tiling_features2 = 0;
  VkFormatFeatureFlags2 buffer_features2 = 0;
};

// What an application can learn about a physical device without creating a device: fetched once.
struct PhysicalDeviceDescription {
  uint32_t gpu_index = 0;  // the server's GPU index (GpuList)
  VkPhysicalDeviceProperties properties{};
  VkPhysicalDeviceFeatures features{};
  VkPhysicalDeviceMemoryProperties memory{};
  std::vector<VkQueueFamilyProperties> queue_families;
  std::vector<FormatDescription> formats;  // every core format the device's version defines
  std::vector<VkExtensionProperties> extensions;
  std::vector<ChainedStruct> chained;      // each type at most once

  const ChainedStruct* find(VkStructureType type) const;
};

// A reply: the VkResult, then on success the command's outputs, on failure a text saying why.
struct ReplyHeader {
  int32_t result = 0;  // VkResult
};

std::vector<uint8_t> encode(const std::vector<PhysicalDeviceDescription>& devices);
// Throws WireError naming the field that did not fit.
std::vector<PhysicalDeviceDescription> decode_physical_devices(std::span<const uint8_t> data);

// "VK_ERROR_INITIALIZATION_FAILED (-3)"
std::string result_text(VkResult result);

}  // namespace rgpu::vk
