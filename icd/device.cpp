// The device level by hand: devices, queues and command buffers (dispatchable objects the loader
// needs), device memory and its mapping. Everything else is generated (vk_icd.gen.cpp).
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "icd_calls.hpp"
#include "log.hpp"
#include "vk_icd.gen.hpp"
#include "vulkan_wire.hpp"
#include "written_pages.hpp"

namespace rgpu::icd {

namespace {
// Device extensions whose commands and structs the generated forwarding carries completely
// (all promoted to core Vulkan; their commands are the core ones under another name), plus
// extensions that only add information to queries.
const char* const kForwardableExtensions[] = {
    VK_KHR_DRIVER_PROPERTIES_EXTENSION_NAME,
    VK_EXT_PCI_BUS_INFO_EXTENSION_NAME,
    VK_KHR_16BIT_STORAGE_EXTENSION_NAME,
    VK_KHR_8BIT_STORAGE_EXTENSION_NAME,
    VK_KHR_BIND_MEMORY_2_EXTENSION_NAME,
    VK_KHR_BUFFER_DEVICE_ADDRESS_EXTENSION_NAME,
    VK_KHR_COPY_COMMANDS_2_EXTENSION_NAME,
    VK_KHR_CREATE_RENDERPASS_2_EXTENSION_NAME,
    VK_KHR_DEDICATED_ALLOCATION_EXTENSION_NAME,
    VK_KHR_DEPTH_STENCIL_RESOLVE_EXTENSION_NAME,
    VK_KHR_DRAW_INDIRECT_COUNT_EXTENSION_NAME,
    VK_KHR_DYNAMIC_RENDERING_EXTENSION_NAME,
    VK_KHR_FORMAT_FEATURE_FLAGS_2_EXTENSION_NAME,
    VK_KHR_GET_MEMORY_REQUIREMENTS_2_EXTENSION_NAME,
    VK_KHR_IMAGE_FORMAT_LIST_EXTENSION_NAME,
    VK_KHR_IMAGELESS_FRAMEBUFFER_EXTENSION_NAME,
    VK_KHR_MAINTENANCE_1_EXTENSION_NAME,
    VK_KHR_MAINTENANCE_2_EXTENSION_NAME,
    VK_KHR_MAINTENANCE_3_EXTENSION_NAME,
    VK_KHR_MAINTENANCE_4_EXTENSION_NAME,
    VK_KHR_MULTIVIEW_EXTENSION_NAME,
    VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME,
    VK_KHR_RELAXED_BLOCK_LAYOUT_EXTENSION_NAME,
    VK_KHR_SAMPLER_MIRROR_CLAMP_TO_EDGE_EXTENSION_NAME,
    VK_KHR_SEPARATE_DEPTH_STENCIL_LAYOUTS_EXTENSION_NAME,
    VK_KHR_SHADER_ATOMIC_INT64_EXTENSION_NAME,
    VK_KHR_SHADER_DRAW_PARAMETERS_EXTENSION_NAME,
    VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME,
    VK_KHR_SHADER_FLOAT_CONTROLS_EXTENSION_NAME,
    VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME,
    VK_KHR_SHADER_NON_SEMANTIC_INFO_EXTENSION_NAME,
    VK_KHR_SHADER_SUBGROUP_EXTENDED_TYPES_EXTENSION_NAME,
    VK_KHR_SHADER_TERMINATE_INVOCATION_EXTENSION_NAME,
    VK_KHR_SPIRV_1_4_EXTENSION_NAME,
    VK_KHR_STORAGE_BUFFER_STORAGE_CLASS_EXTENSION_NAME,
    VK_KHR_SYNCHRONIZATION_2_EXTENSION_NAME,
    VK_KHR_TIMELINE_SEMAPHORE_EXTENSION_NAME,
    VK_KHR_UNIFORM_BUFFER_STANDARD_LAYOUT_EXTENSION_NAME,
    VK_KHR_VARIABLE_POINTERS_EXTENSION_NAME,
    VK_KHR_VULKAN_MEMORY_MODEL_EXTENSION_NAME,
    VK_KHR_ZERO_INITIALIZE_WORKGROUP_MEMORY_EXTENSION_NAME,
    VK_EXT_DESCRIPTOR_INDEXING_EXTENSION_NAME,
    VK_EXT_EXTENDED_DYNAMIC_STATE_EXTENSION_NAME,
    VK_EXT_EXTENDED_DYNAMIC_STATE_2_EXTENSION_NAME,
    VK_EXT_HOST_QUERY_RESET_EXTENSION_NAME,
    VK_EXT_INLINE_UNIFORM_BLOCK_EXTENSION_NAME,
    VK_EXT_SCALAR_BLOCK_LAYOUT_EXTENSION_NAME,
    VK_EXT_SEPARATE_STENCIL_USAGE_EXTENSION_NAME,
    VK_EXT_SHADER_DEMOTE_TO_HELPER_INVOCATION_EXTENSION_NAME,
    VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME,
    VK_EXT_TEXEL_BUFFER_ALIGNMENT_EXTENSION_NAME,
};

bool forwardable(const char* name) {
  return std::any_of(std::begin(kForwardableExtensions), std::end(kForwardableExtensions),
                     [name](const char* known) { return std::strcmp(known, name) == 0; });
}

bool offered(const Device& device, const vk::DeviceCommand& command) {
  if (command.core_version != 0 && command.core_version <= device.api_version) return true;
  if (command.extension == nullptr) return false;
  return std::find(device.extensions.begin(), device.extensions.end(), command.extension) != device.extensions.end();
}

void release_region(Memory& memory) {
  if (memory.watched) rgpu::WrittenPages::get().unwatch(memory.region, memory.region_size());
  memory.watched = false;
  if (memory.region != nullptr) ::munmap(memory.region, memory.region_size());
  memory.region = nullptr;
  memory.snapshot = {};
}

Memory* find_memory(Device* device, VkDeviceMemory handle) {
  auto& memories = device->instance().memories;
  auto it = memories.find(vk::to_wire(handle));
  return it == memories.end() ? nullptr : it->second.get();
}
}  // namespace

std::vector<VkExtensionProperties> forwardable_extensions(const std::vector<VkExtensionProperties>& device_has) {
  std::vector<VkExtensionProperties> out;
  for (const auto& extension : device_has)
    if (forwardable(extension.extensionName)) out.push_back(extension);
  return out;
}

VKAPI_ATTR VkResult VKAPI_CALL CreateDevice(VkPhysicalDevice physical_handle, const VkDeviceCreateInfo* info,
                                            const VkAllocationCallbacks*, VkDevice* out) {
  PhysicalDevice* physical = from_handle(physical_handle);
  auto device = std::make_unique<Device>();
  set_loader_magic_value(&device->loader_data);
  device->physical = physical;
  device->api_version = std::min<uint32_t>(physical->description.properties.apiVersion, VK_API_VERSION_1_3);
  for (uint32_t i = 0; i < info->enabledExtensionCount; ++i) {
    const char* name = info->ppEnabledExtensionNames[i];
    const auto& offered_here = physical->extensions;
    if (std::none_of(offered_here.begin(), offered_here.end(),
                     [name](const VkExtensionProperties& e) { return std::strcmp(e.extensionName, name) == 0; })) {
      LOG_ERROR("Vulkan: device extension %s is not supported by RGPU on %s", name,
                physical->description.properties.deviceName);
      return VK_ERROR_EXTENSION_NOT_PRESENT;
    }
    device->extensions.emplace_back(name);
  }
  Call call(physical_handle, vk::CMD_CreateDevice, "vkCreateDevice");
  call.args().put(physical->session_index).put(vk::to_wire(reinterpret_cast<VkDevice>(device.get())));
  vk::put(call.args(), *info);
  const VkResult result = call.send_and_wait();
  if (result != VK_SUCCESS) return result;
  *out = reinterpret_cast<VkDevice>(device.release());
  return VK_SUCCESS;
}

VKAPI_ATTR void VKAPI_CALL DestroyDevice(VkDevice handle, const VkAllocationCallbacks*) {
  if (handle == VK_NULL_HANDLE) return;
  Device* device = from_handle(handle);
  {
    auto lock = device->session().lock();
    auto& memories = device->instance().memories;
    for (auto it = memories.begin(); it != memories.end();) {
      if (it->second->device != device) {
        ++it;
        continue;
      }
      release_region(*it->second);
      it = memories.erase(it);
    }
  }
  Call call(handle, vk::CMD_DestroyDevice, "vkDestroyDevice");
  call.args().put(vk::to_wire(handle));
  call.send_pipelined();
  delete device;
}

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL GetDeviceProcAddr(VkDevice handle, const char* name) {
  if (name == nullptr) return nullptr;
  if (std::strcmp(name, "vkGetDeviceProcAddr") == 0) return reinterpret_cast<PFN_vkVoidFunction>(&GetDeviceProcAddr);
  if (std::strcmp(name, "vkDestroyDevice") == 0) return reinterpret_cast<PFN_vkVoidFunction>(&DestroyDevice);
  for (size_t i = 0; i < kDeviceCommandCount; ++i) {
    const vk::DeviceCommand& command = kDeviceCommands[i];
    if (std::strcmp(command.name, name) != 0) continue;
    if (handle == VK_NULL_HANDLE || offered(*from_handle(handle), command)) return command.function;
  }
  return nullptr;
}

VKAPI_ATTR void VKAPI_CALL GetDeviceQueue(VkDevice handle, uint32_t family, uint32_t index, VkQueue* out) {
  Device* device = from_handle(handle);
  Queue* queue = nullptr;
  {
    std::lock_guard lock(device->mutex);
    auto& slot = device->queues[{family, index}];
    if (!slot) {
      slot = std::make_unique<Queue>();
      set_loader_magic_value(&slot->loader_data);
      slot->device = device;
    }
    queue = slot.get();
  }
  *out = reinterpret_cast<VkQueue>(queue);
  Call call(handle, vk::CMD_vkGetDeviceQueue, "vkGetDeviceQueue");
  encode_vkGetDeviceQueue(call.args(), handle, family, index, out);
  call.send_pipelined();
}

VKAPI_ATTR void VKAPI_CALL GetDeviceQueue2(VkDevice handle, const VkDeviceQueueInfo2* info, VkQueue* out) {
  if (info->flags != 0) {
    // Protected queues are not offered: no queue family reports them.
    LOG_ERROR("Vulkan: vkGetDeviceQueue2 with flags %u is not supported by RGPU", info->flags);
    *out = VK_NULL_HANDLE;
    return;
  }
  GetDeviceQueue(handle, info->queueFamilyIndex, info->queueIndex, out);
}

VKAPI_ATTR VkResult VKAPI_CALL AllocateCommandBuffers(VkDevice handle, const VkCommandBufferAllocateInfo* info,
                                                      VkCommandBuffer* out) {
  Device* device = from_handle(handle);
  {
    std::lock_guard lock(device->mutex);
    auto& pool = device->pools[vk::to_wire(info->commandPool)];
    for (uint32_t i = 0; i < info->commandBufferCount; ++i) {
      auto buffer = std::make_unique<CommandBuffer>();
      set_loader_magic_value(&buffer->loader_data);
      buffer->device = device;
      buffer->pool = vk::to_wire(info->commandPool);
      out[i] = reinterpret_cast<VkCommandBuffer>(buffer.get());
      pool.push_back(std::move(buffer));
    }
  }
  Call call(handle, vk::CMD_vkAllocateCommandBuffers, "vkAllocateCommandBuffers");
  encode_vkAllocateCommandBuffers(call.args(), handle, info, out);
  return call.send_pipelined();
}

VKAPI_ATTR void VKAPI_CALL FreeCommandBuffers(VkDevice handle, VkCommandPool pool, uint32_t count,
                                              const VkCommandBuffer* buffers) {
  Device* device = from_handle(handle);
  Call call(handle, vk::CMD_vkFreeCommandBuffers, "vkFreeCommandBuffers");
  encode_vkFreeCommandBuffers(call.args(), handle, pool, count, buffers);
  call.send_pipelined();
  std::lock_guard lock(device->mutex);
  auto& owned = device->pools[vk::to_wire(pool)];
  for (uint32_t i = 0; i < count; ++i)
    std::erase_if(owned, [&](const auto& b) { return reinterpret_cast<VkCommandBuffer>(b.get()) == buffers[i]; });
}

VKAPI_ATTR void VKAPI_CALL DestroyCommandPool(VkDevice handle, VkCommandPool pool,
                                              const VkAllocationCallbacks* allocator) {
  if (pool == VK_NULL_HANDLE) return;
  Device* device = from_handle(handle);
  Call call(handle, vk::CMD_vkDestroyCommandPool, "vkDestroyCommandPool");
  encode_vkDestroyCommandPool(call.args(), handle, pool, allocator);
  call.send_pipelined();
  std::lock_guard lock(device->mutex);
  device->pools.erase(vk::to_wire(pool));
}

VKAPI_ATTR VkResult VKAPI_CALL ResetCommandPool(VkDevice handle, VkCommandPool pool, VkCommandPoolResetFlags flags) {
  Device* device = from_handle(handle);
  {
    std::lock_guard lock(device->mutex);
    for (auto& buffer : device->pools[vk::to_wire(pool)]) {
      buffer->stream.clear();
      buffer->count = 0;
    }
  }
  Call call(handle, vk::CMD_vkResetCommandPool, "vkResetCommandPool");
  encode_vkResetCommandPool(call.args(), handle, pool, flags);
  return call.send_pipelined();
}

VKAPI_ATTR VkResult VKAPI_CALL BeginCommandBuffer(VkCommandBuffer handle, const VkCommandBufferBeginInfo* info) {
  CommandBuffer* buffer = from_handle(handle);
  buffer->stream.clear();
  buffer->count = 0;
  Recording rec(handle, vk::CMD_vkBeginCommandBuffer);
  encode_vkBeginCommandBuffer(rec.args(), handle, info);
  return VK_SUCCESS;
}

VKAPI_ATTR VkResult VKAPI_CALL EndCommandBuffer(VkCommandBuffer handle) {
  CommandBuffer* buffer = from_handle(handle);
  {
    Recording rec(handle, vk::CMD_vkEndCommandBuffer);
    encode_vkEndCommandBuffer(rec.args(), handle);
  }
  Call call(handle, vk::CMD_Batch, "vkEndCommandBuffer");
  call.args().put(buffer->count).bytes(buffer->stream.data(), buffer->stream.size());
  buffer->stream.clear();
  buffer->count = 0;
  return call.send_pipelined();
}

VKAPI_ATTR VkResult VKAPI_CALL ResetCommandBuffer(VkCommandBuffer handle, VkCommandBufferResetFlags flags) {
  CommandBuffer* buffer = from_handle(handle);
  buffer->stream.clear();
  buffer->count = 0;
  Call call(handle, vk::CMD_vkResetCommandBuffer, "vkResetCommandBuffer");
  encode_vkResetCommandBuffer(call.args(), handle, flags);
  return call.send_pipelined();
}

VKAPI_ATTR VkResult VKAPI_CALL AllocateMemory(VkDevice handle, const VkMemoryAllocateInfo* info,
                                              const VkAllocationCallbacks* allocator, VkDeviceMemory* out) {
  Device* device = from_handle(handle);
  *out = new_handle<VkDeviceMemory>();
  Call call(handle, vk::CMD_vkAllocateMemory, "vkAllocateMemory");
  encode_vkAllocateMemory(call.args(), handle, info, allocator, out);
  const VkResult result = call.send_and_wait();
  if (result != VK_SUCCESS) {
    *out = VK_NULL_HANDLE;
    return result;
  }
  auto memory = std::make_unique<Memory>();
  memory->device = device;
  memory->size = info->allocationSize;
  memory->type = info->memoryTypeIndex;
  auto lock = device->session().lock();
  device->instance().memories[vk::to_wire(*out)] = std::move(memory);
  return VK_SUCCESS;
}

VKAPI_ATTR void VKAPI_CALL FreeMemory(VkDevice handle, VkDeviceMemory memory, const VkAllocationCallbacks* allocator) {
  if (memory == VK_NULL_HANDLE) return;
  Device* device = from_handle(handle);
  {
    auto lock = device->session().lock();
    auto& memories = device->instance().memories;
    auto it = memories.find(vk::to_wire(memory));
    if (it != memories.end()) {
      release_region(*it->second);
      memories.erase(it);
    }
  }
  Call call(handle, vk::CMD_vkFreeMemory, "vkFreeMemory");
  encode_vkFreeMemory(call.args(), handle, memory, allocator);
  call.send_pipelined();
}

VKAPI_ATTR VkResult VKAPI_CALL MapMemory(VkDevice handle, VkDeviceMemory memory_handle, VkDeviceSize offset,
                                         VkDeviceSize size, VkMemoryMapFlags, void** data) {
  Device* device = from_handle(handle);
  auto lock = device->session().lock();
  Memory* memory = find_memory(device, memory_handle);
  if (memory == nullptr || memory->region != nullptr) {
    LOG_ERROR("Vulkan: vkMapMemory: the memory is %s", memory == nullptr ? "not known" : "already mapped");
    return VK_ERROR_MEMORY_MAP_FAILED;
  }
  const uint64_t end = size == VK_WHOLE_SIZE ? memory->size : offset + size;
  if (offset >= memory->size || end > memory->size) return VK_ERROR_MEMORY_MAP_FAILED;
  memory->base = offset & ~(vk::kMemoryPage - 1);
  memory->length = end - memory->base;
  void* region = ::mmap(nullptr, memory->region_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) {
    LOG_ERROR("Vulkan: vkMapMemory: no room for a copy of %llu bytes", static_cast<unsigned long long>(memory->length));
    return VK_ERROR_OUT_OF_HOST_MEMORY;
  }
  memory->region = static_cast<uint8_t*>(region);
  memory->snapshot.assign(memory->length, 0);
  memory->watched = rgpu::WrittenPages::get().watch(memory->region, memory->region_size());
  // The server answers after sending the memory's contents, which land in the region (under the
  // lock, taken by whichever thread reads them).
  Call call(handle, vk::CMD_MapMemory, "vkMapMemory");
  call.args().put(vk::to_wire(memory_handle)).put<uint64_t>(offset).put<uint64_t>(size);
  lock.unlock();
  const VkResult result = call.send_and_wait();
  lock.lock();
  if (result != VK_SUCCESS) {
    release_region(*memory);
    return result;
  }
  *data = memory->region + (offset - memory->base);
  return VK_SUCCESS;
}

VKAPI_ATTR void VKAPI_CALL UnmapMemory(VkDevice handle, VkDeviceMemory memory_handle) {
  Device* device = from_handle(handle);
  auto lock = device->session().lock();
  Memory* memory = find_memory(device, memory_handle);
  if (memory == nullptr || memory->region == nullptr) return;
  push_mapped_memory(device);
  Call call(handle, vk::CMD_UnmapMemory, "vkUnmapMemory");
  call.args().put(vk::to_wire(memory_handle));
  call.send_pipelined();
  release_region(*memory);
}

// Every mapped range is sent whenever the device may read it, so a flush sends what changed now.
VKAPI_ATTR VkResult VKAPI_CALL FlushMappedMemoryRanges(VkDevice handle, uint32_t, const VkMappedMemoryRange*) {
  push_mapped_memory(from_handle(handle));
  return VK_SUCCESS;
}

VKAPI_ATTR VkResult VKAPI_CALL InvalidateMappedMemoryRanges(VkDevice handle, uint32_t, const VkMappedMemoryRange*) {
  return Call(handle, vk::CMD_PullMemory, "vkInvalidateMappedMemoryRanges").send_and_wait();
}

}  // namespace rgpu::icd
