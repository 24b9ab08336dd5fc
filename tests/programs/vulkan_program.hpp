// What the Vulkan test programs share: checks that name the failing call, instance and device
// set-up, memory type choice, buffers, barriers and a submission waited for with a fence.
#pragma once

#include <vulkan/vulkan.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <vector>

// Calls a Vulkan function; unless it returns VK_SUCCESS, prints its name and result and exits 1.
#define VK_CHECK(function, ...) ::vulkan_program::check(function(__VA_ARGS__), #function)
// Calls function(device, &info, nullptr, &handle) like VK_CHECK and returns the handle.
#define VK_CREATE(function, device, info) ::vulkan_program::create(function, #function, device, info)

namespace vulkan_program {

inline void check(VkResult result, const char* call) {
  if (result == VK_SUCCESS) return;
  std::fprintf(stderr, "FAILED: %s returned %d\n", call, static_cast<int>(result));
  std::exit(1);
}

template <typename Info, typename Handle>
Handle create(VkResult(VKAPI_PTR* function)(VkDevice, const Info*, const VkAllocationCallbacks*, Handle*),
              const char* name, VkDevice device, const Info& info) {
  Handle handle = VK_NULL_HANDLE;
  check(function(device, &info, nullptr, &handle), name);
  return handle;
}

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "FAILED: %s\n", what);
  std::exit(1);
}

inline VkInstance create_instance(const char* application, uint32_t api_version) {
  VkApplicationInfo app{};
  app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
  app.pApplicationName = application;
  app.apiVersion = api_version;
  VkInstanceCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
  info.pApplicationInfo = &app;
  VkInstance instance = VK_NULL_HANDLE;
  VK_CHECK(vkCreateInstance, &info, nullptr, &instance);
  return instance;
}

struct Gpu {
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  uint32_t queue_family = 0;
  VkPhysicalDeviceMemoryProperties memory{};
};

// The first physical device with a queue family that has every flag in `queue_flags`.
inline Gpu pick_gpu(VkInstance instance, VkQueueFlags queue_flags) {
  uint32_t count = 0;
  VK_CHECK(vkEnumeratePhysicalDevices, instance, &count, nullptr);
  std::vector<VkPhysicalDevice> devices(count);
  VK_CHECK(vkEnumeratePhysicalDevices, instance, &count, devices.data());
  for (VkPhysicalDevice device : devices) {
    uint32_t families = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(device, &families, nullptr);
    std::vector<VkQueueFamilyProperties> properties(families);
    vkGetPhysicalDeviceQueueFamilyProperties(device, &families, properties.data());
    for (uint32_t i = 0; i < families; ++i) {
      if (properties[i].queueCount == 0 || (properties[i].queueFlags & queue_flags) != queue_flags) continue;
      Gpu gpu{device, i, {}};
      vkGetPhysicalDeviceMemoryProperties(device, &gpu.memory);
      return gpu;
    }
  }
  fail("no physical device has a queue family with the flags this program needs");
}

// One queue of the GPU's chosen family; `features` is the create info's pNext chain.
// Whether the physical device has a device extension.
inline bool has_extension(VkPhysicalDevice physical, const char* name) {
  uint32_t count = 0;
  VK_CHECK(vkEnumerateDeviceExtensionProperties, physical, nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> extensions(count);
  VK_CHECK(vkEnumerateDeviceExtensionProperties, physical, nullptr, &count, extensions.data());
  for (const auto& extension : extensions)
    if (std::strcmp(extension.extensionName, name) == 0) return true;
  return false;
}

inline VkDevice create_device(const Gpu& gpu, const void* features, const std::vector<const char*>& extensions = {}) {
  const float priority = 1.0f;
  VkDeviceQueueCreateInfo queue{};
  queue.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
  queue.queueFamilyIndex = gpu.queue_family;
  queue.queueCount = 1;
  queue.pQueuePriorities = &priority;
  VkDeviceCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
  info.pNext = features;
  info.queueCreateInfoCount = 1;
  info.pQueueCreateInfos = &queue;
  info.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  info.ppEnabledExtensionNames = extensions.data();
  VkDevice device = VK_NULL_HANDLE;
  VK_CHECK(vkCreateDevice, gpu.physical, &info, nullptr, &device);
  return device;
}

struct MemoryChoice {
  VkMemoryPropertyFlags required = 0;
  VkMemoryPropertyFlags preferred = 0;
  VkMemoryPropertyFlags avoided = 0;
};

// A type allowed by `type_bits` with every required flag: the first that also has the preferred
// flags and none of the avoided ones, else the first with the required flags.
inline uint32_t find_memory_type(const VkPhysicalDeviceMemoryProperties& memory, uint32_t type_bits,
                                 MemoryChoice choice) {
  const VkMemoryPropertyFlags wanted = choice.required | choice.preferred;
  for (int strict = 1; strict >= 0; --strict) {
    for (uint32_t i = 0; i < memory.memoryTypeCount; ++i) {
      const VkMemoryPropertyFlags flags = memory.memoryTypes[i].propertyFlags;
      if (!(type_bits & (1u << i))) continue;
      if (strict && ((flags & wanted) != wanted || (flags & choice.avoided))) continue;
      if ((flags & choice.required) == choice.required) return i;
    }
  }
  fail("no memory type has the properties this program needs");
}

struct Memory {
  VkDeviceMemory memory = VK_NULL_HANDLE;
  VkMemoryPropertyFlags flags = 0;
};

inline Memory allocate(VkDevice device, const Gpu& gpu, const VkMemoryRequirements& requirements,
                       MemoryChoice choice) {
  const uint32_t type = find_memory_type(gpu.memory, requirements.memoryTypeBits, choice);
  VkMemoryAllocateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
  info.allocationSize = requirements.size;
  info.memoryTypeIndex = type;
  Memory out{VK_NULL_HANDLE, gpu.memory.memoryTypes[type].propertyFlags};
  VK_CHECK(vkAllocateMemory, device, &info, nullptr, &out.memory);
  return out;
}

inline VkBuffer create_buffer_object(VkDevice device, VkDeviceSize size, VkBufferUsageFlags usage) {
  VkBufferCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
  info.size = size;
  info.usage = usage;
  info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  return VK_CREATE(vkCreateBuffer, device, info);
}

// A buffer with memory of its own.
struct Buffer {
  VkBuffer buffer = VK_NULL_HANDLE;
  Memory memory;
  VkDeviceSize size = 0;
};

inline Buffer create_buffer(VkDevice device, const Gpu& gpu, VkDeviceSize size, VkBufferUsageFlags usage,
                            MemoryChoice choice) {
  Buffer out;
  out.size = size;
  out.buffer = create_buffer_object(device, size, usage);
  VkMemoryRequirements requirements{};
  vkGetBufferMemoryRequirements(device, out.buffer, &requirements);
  out.memory = allocate(device, gpu, requirements, choice);
  VK_CHECK(vkBindBufferMemory, device, out.buffer, out.memory.memory, 0);
  return out;
}

inline void destroy_buffer(VkDevice device, const Buffer& buffer) {
  vkDestroyBuffer(device, buffer.buffer, nullptr);
  vkFreeMemory(device, buffer.memory.memory, nullptr);
}

inline void* map(VkDevice device, VkDeviceMemory memory) {
  void* data = nullptr;
  VK_CHECK(vkMapMemory, device, memory, 0, VK_WHOLE_SIZE, 0, &data);
  return data;
}

inline VkMappedMemoryRange whole_range(VkDeviceMemory memory) {
  VkMappedMemoryRange range{};
  range.sType = VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE;
  range.memory = memory;
  range.offset = 0;
  range.size = VK_WHOLE_SIZE;
  return range;
}

template <size_t N>
VkShaderModule create_shader(VkDevice device, const uint32_t (&spirv)[N]) {
  VkShaderModuleCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
  info.codeSize = sizeof spirv;
  info.pCode = spirv;
  return VK_CREATE(vkCreateShaderModule, device, info);
}

// With one descriptor set layout and one push constant range, either of them null for none.
inline VkPipelineLayout create_pipeline_layout(VkDevice device, const VkDescriptorSetLayout* set_layout,
                                               const VkPushConstantRange* push_constants) {
  VkPipelineLayoutCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
  info.setLayoutCount = set_layout ? 1 : 0;
  info.pSetLayouts = set_layout;
  info.pushConstantRangeCount = push_constants ? 1 : 0;
  info.pPushConstantRanges = push_constants;
  return VK_CREATE(vkCreatePipelineLayout, device, info);
}

struct Commands {
  VkCommandPool pool = VK_NULL_HANDLE;
  VkCommandBuffer buffer = VK_NULL_HANDLE;
};

inline Commands create_commands(VkDevice device, uint32_t queue_family) {
  Commands out;
  VkCommandPoolCreateInfo pool{};
  pool.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
  pool.queueFamilyIndex = queue_family;
  out.pool = VK_CREATE(vkCreateCommandPool, device, pool);
  VkCommandBufferAllocateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
  info.commandPool = out.pool;
  info.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  info.commandBufferCount = 1;
  VK_CHECK(vkAllocateCommandBuffers, device, &info, &out.buffer);
  return out;
}

inline void destroy_commands(VkDevice device, const Commands& commands) {
  vkFreeCommandBuffers(device, commands.pool, 1, &commands.buffer);
  vkDestroyCommandPool(device, commands.pool, nullptr);
}

// Resets the pool, so that the command buffer can be recorded again, and begins recording.
inline void begin(VkDevice device, const Commands& commands) {
  VK_CHECK(vkResetCommandPool, device, commands.pool, 0);
  VkCommandBufferBeginInfo info{};
  info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
  info.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  VK_CHECK(vkBeginCommandBuffer, commands.buffer, &info);
}

inline VkFence create_fence(VkDevice device) {
  VkFenceCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
  return VK_CREATE(vkCreateFence, device, info);
}

// Submits the recorded commands, waits for them and leaves the fence reset for the next submission.
inline void submit_and_wait(VkDevice device, VkQueue queue, VkCommandBuffer commands, VkFence fence) {
  VkSubmitInfo submit{};
  submit.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  submit.commandBufferCount = 1;
  submit.pCommandBuffers = &commands;
  VK_CHECK(vkQueueSubmit, queue, 1, &submit, fence);
  VK_CHECK(vkWaitForFences, device, 1, &fence, VK_TRUE, UINT64_MAX);
  VK_CHECK(vkGetFenceStatus, device, fence);
  VK_CHECK(vkResetFences, device, 1, &fence);
}

struct Access {
  VkPipelineStageFlags stage;
  VkAccessFlags access;
};

// A VkBufferMemoryBarrier or VkImageMemoryBarrier with the accesses filled in and no queue
// family ownership transfer.
template <typename Barrier>
Barrier barrier_of(VkStructureType type, Access before, Access after) {
  Barrier barrier{};
  barrier.sType = type;
  barrier.srcAccessMask = before.access;
  barrier.dstAccessMask = after.access;
  barrier.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  barrier.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  return barrier;
}

inline void buffer_barrier(VkCommandBuffer commands, VkBuffer buffer, Access before, Access after) {
  auto barrier = barrier_of<VkBufferMemoryBarrier>(VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER, before, after);
  barrier.buffer = buffer;
  barrier.offset = 0;
  barrier.size = VK_WHOLE_SIZE;
  vkCmdPipelineBarrier(commands, before.stage, after.stage, 0, 0, nullptr, 1, &barrier, 0, nullptr);
}

inline uint64_t fnv1a(const void* data, size_t size) {
  uint64_t hash = 0xcbf29ce484222325ull;
  const auto* bytes = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ull;
  return hash;
}

}  // namespace vulkan_program
