// libFuzzer target: a worker's Vulkan session (VulkanSession, the replay generated from vk.xml,
// RGPU's own calls: devices, mapped memory, recorded batches, waits) running a sequence of
// VulkanCall frames from a client.
//
// The driver under it is a null driver defined here, in place of the server's Vulkan instance
// (vulkan_instance.cpp is not linked into this target): one physical device, and device commands
// that do nothing and succeed. It is the replay that is tested, not a driver: every call a client
// makes with live handles but wrong arguments is undefined behaviour in any real driver, and
// lavapipe would crash on them. Where the replay itself works on memory, the null driver is
// exact: vkMapMemory maps a heap block of exactly the allocation's size, so that a read or write
// past it is found (AddressSanitizer).
//
// Input: a sequence of calls, each
//   u8  command: an index into kCommands below, or 0xff followed by a raw u32 command id
//   u8  bit 0: pipelined (no reply awaited)
//   u16 length, then that many argument bytes (handles are the ids the client picks).
// Before them, device 1 (one queue, id 2, of family 0) exists. At the end a call that waits makes
// sure that every call has run, and the session is closed, which must give back the quota.
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "budget.hpp"
#include "messages.hpp"
#include "target.hpp"
#include "vk_codec.gen.hpp"
#include "vk_commands.gen.hpp"
#include "vulkan_instance.hpp"
#include "vulkan_session.hpp"
#include "vulkan_wire.hpp"
#include "wire.hpp"

namespace {

using namespace rgpu;
using namespace rgpu::vk;

[[noreturn]] void fail(const char* what) { fuzz::fail("fuzz_vulkan_replay", what); }

constexpr uint64_t kQuota = 16u << 20;  // the token's max_memory

// ---- the null driver ------------------------------------------------------------------------

std::mutex g_driver;
uint64_t g_next_handle = 0x1000;
struct Memory {
  VkDeviceSize size;
  std::vector<uint8_t> mapped;  // empty while not mapped
};
std::map<uint64_t, Memory> g_memory;

template <typename Handle>
Handle new_handle() {
  std::lock_guard lock(g_driver);
  return reinterpret_cast<Handle>(static_cast<uintptr_t>(g_next_handle++));
}

// Every command without a stub of its own: does nothing, succeeds (VK_SUCCESS is 0, also for the
// few commands that return a VkBool32 or a VkDeviceAddress). Called through pointers of the
// commands' own types, which the x86-64 calling convention allows for a function that takes
// nothing and returns an integer.
__attribute__((no_sanitize("function"))) VkResult null_command() { return VK_SUCCESS; }

VKAPI_ATTR VkResult VKAPI_CALL allocate_memory(VkDevice, const VkMemoryAllocateInfo* info,
                                               const VkAllocationCallbacks*, VkDeviceMemory* memory) {
  *memory = new_handle<VkDeviceMemory>();
  std::lock_guard lock(g_driver);
  g_memory[reinterpret_cast<uint64_t>(*memory)] = Memory{info->allocationSize, {}};
  return VK_SUCCESS;
}
VKAPI_ATTR void VKAPI_CALL free_memory(VkDevice, VkDeviceMemory memory, const VkAllocationCallbacks*) {
  std::lock_guard lock(g_driver);
  g_memory.erase(reinterpret_cast<uint64_t>(memory));
}
VKAPI_ATTR VkResult VKAPI_CALL map_memory(VkDevice, VkDeviceMemory memory, VkDeviceSize offset, VkDeviceSize size,
                                          VkMemoryMapFlags, void** data) {
  std::lock_guard lock(g_driver);
  auto it = g_memory.find(reinterpret_cast<uint64_t>(memory));
  if (it == g_memory.end()) fail("vkMapMemory of memory the driver never allocated");
  Memory& m = it->second;
  if (!m.mapped.empty() || offset >= m.size || (size != VK_WHOLE_SIZE && size > m.size - offset))
    return VK_ERROR_MEMORY_MAP_FAILED;
  if (m.size > kQuota) fail("vkMapMemory of memory over the quota");
  m.mapped.resize(m.size);
  *data = m.mapped.data() + offset;
  return VK_SUCCESS;
}
VKAPI_ATTR void VKAPI_CALL unmap_memory(VkDevice, VkDeviceMemory memory) {
  std::lock_guard lock(g_driver);
  auto it = g_memory.find(reinterpret_cast<uint64_t>(memory));
  if (it != g_memory.end()) it->second.mapped = {};
}
// vkCreateFence and the like: a handle of its own for each object.
template <typename Info, typename Handle>
VKAPI_ATTR VkResult VKAPI_CALL create(VkDevice, const Info*, const VkAllocationCallbacks*, Handle* made) {
  *made = new_handle<Handle>();
  return VK_SUCCESS;
}
VKAPI_ATTR VkResult VKAPI_CALL allocate_command_buffers(VkDevice, const VkCommandBufferAllocateInfo* info,
                                                        VkCommandBuffer* buffers) {
  for (uint32_t i = 0; i < info->commandBufferCount; ++i) buffers[i] = new_handle<VkCommandBuffer>();
  return VK_SUCCESS;
}
VKAPI_ATTR void VKAPI_CALL get_device_queue(VkDevice, uint32_t, uint32_t, VkQueue* queue) {
  *queue = reinterpret_cast<VkQueue>(uintptr_t{0x10});  // the same queue each time, as a driver does
}
VKAPI_ATTR void VKAPI_CALL get_buffer_memory_requirements(VkDevice, VkBuffer, VkMemoryRequirements* requirements) {
  *requirements = VkMemoryRequirements{4096, 256, 0x7};
}

PFN_vkVoidFunction VKAPI_CALL device_proc_addr(VkDevice, const char* name);

const std::map<std::string, PFN_vkVoidFunction>& stubs() {
  static const std::map<std::string, PFN_vkVoidFunction> table = {
      {"vkAllocateMemory", reinterpret_cast<PFN_vkVoidFunction>(allocate_memory)},
      {"vkFreeMemory", reinterpret_cast<PFN_vkVoidFunction>(free_memory)},
      {"vkMapMemory", reinterpret_cast<PFN_vkVoidFunction>(map_memory)},
      {"vkUnmapMemory", reinterpret_cast<PFN_vkVoidFunction>(unmap_memory)},
      {"vkCreateFence", reinterpret_cast<PFN_vkVoidFunction>(create<VkFenceCreateInfo, VkFence>)},
      {"vkCreateBuffer", reinterpret_cast<PFN_vkVoidFunction>(create<VkBufferCreateInfo, VkBuffer>)},
      {"vkCreateImage", reinterpret_cast<PFN_vkVoidFunction>(create<VkImageCreateInfo, VkImage>)},
      {"vkCreateCommandPool", reinterpret_cast<PFN_vkVoidFunction>(create<VkCommandPoolCreateInfo, VkCommandPool>)},
      {"vkAllocateCommandBuffers", reinterpret_cast<PFN_vkVoidFunction>(allocate_command_buffers)},
      {"vkGetDeviceQueue", reinterpret_cast<PFN_vkVoidFunction>(get_device_queue)},
      {"vkGetBufferMemoryRequirements", reinterpret_cast<PFN_vkVoidFunction>(get_buffer_memory_requirements)},
      {"vkGetDeviceProcAddr", reinterpret_cast<PFN_vkVoidFunction>(device_proc_addr)},
  };
  return table;
}

PFN_vkVoidFunction VKAPI_CALL device_proc_addr(VkDevice, const char* name) {
  auto it = stubs().find(name);
  return it != stubs().end() ? it->second : reinterpret_cast<PFN_vkVoidFunction>(null_command);
}
PFN_vkVoidFunction VKAPI_CALL instance_proc_addr(VkInstance, const char* name) { return device_proc_addr(nullptr, name); }

// Memory types: host-visible coherent, host-visible not coherent, device-local.
VkPhysicalDeviceMemoryProperties null_memory() {
  VkPhysicalDeviceMemoryProperties memory{};
  memory.memoryTypeCount = 3;
  memory.memoryTypes[0] = {VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, 0};
  memory.memoryTypes[1] = {VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0};
  memory.memoryTypes[2] = {VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0};
  memory.memoryHeapCount = 1;
  memory.memoryHeaps[0] = {1ull << 30, VK_MEMORY_HEAP_DEVICE_LOCAL_BIT};
  return memory;
}

}  // namespace

// The server's Vulkan instance, over the null driver.
namespace rgpu::vk {

Instance& Instance::get() {
  static Instance instance;
  return instance;
}

Instance::Instance() {
  ready_ = true;
  api_version_ = VK_API_VERSION_1_3;
  instance_ = reinterpret_cast<VkInstance>(uintptr_t{0x20});
  gipa_ = instance_proc_addr;
  devices_ = {reinterpret_cast<VkPhysicalDevice>(uintptr_t{0x30})};
}

VkPhysicalDevice Instance::device(uint32_t ordinal) const {
  if (ordinal >= devices_.size()) throw std::runtime_error("no Vulkan physical device " + std::to_string(ordinal));
  return devices_[ordinal];
}

PhysicalDeviceDescription Instance::describe(uint32_t ordinal) const {
  device(ordinal);
  PhysicalDeviceDescription out;
  out.properties.apiVersion = api_version_;
  std::strcpy(out.properties.deviceName, "null");
  out.memory = null_memory();
  out.queue_families = {VkQueueFamilyProperties{VK_QUEUE_GRAPHICS_BIT | VK_QUEUE_COMPUTE_BIT, 1, 0, {1, 1, 1}}};
  return out;
}

VkResult Instance::image_format_properties(uint32_t ordinal, const ImageFormatQuery&, VkImageFormatProperties& out) const {
  device(ordinal);
  out = VkImageFormatProperties{{64, 64, 1}, 1, 1, VK_SAMPLE_COUNT_1_BIT, 1u << 20};
  return VK_SUCCESS;
}

std::vector<VkSparseImageFormatProperties> Instance::sparse_image_format_properties(
    uint32_t ordinal, const SparseImageFormatQuery&) const {
  device(ordinal);
  return {VkSparseImageFormatProperties{VK_IMAGE_ASPECT_COLOR_BIT, {64, 64, 1}, 0}};
}

VkResult Instance::create_device(uint32_t ordinal, const VkDeviceCreateInfo&, VkDevice& device,
                                 PFN_vkGetDeviceProcAddr& get_device_proc_addr) const {
  this->device(ordinal);
  device = new_handle<VkDevice>();
  get_device_proc_addr = device_proc_addr;
  return VK_SUCCESS;
}

VkPhysicalDeviceMemoryProperties Instance::memory_properties(uint32_t ordinal) const {
  device(ordinal);
  return null_memory();
}

}  // namespace rgpu::vk

namespace {

// What a client sends: RGPU's own calls and the commands an application uses most.
const uint32_t kCommands[] = {
    CMD_CreateDevice, CMD_DestroyDevice, CMD_MapMemory, CMD_UnmapMemory, CMD_WriteMemory, CMD_PullMemory, CMD_Batch,
    CMD_DescribePhysicalDevices, CMD_GetPhysicalDeviceImageFormatProperties,
    CMD_GetPhysicalDeviceSparseImageFormatProperties, CMD_vkGetDeviceQueue, CMD_vkQueueSubmit, CMD_vkQueueSubmit2,
    CMD_vkQueueWaitIdle, CMD_vkDeviceWaitIdle, CMD_vkQueueBindSparse, CMD_vkAllocateMemory, CMD_vkFreeMemory,
    CMD_vkFlushMappedMemoryRanges, CMD_vkInvalidateMappedMemoryRanges, CMD_vkBindBufferMemory,
    CMD_vkBindBufferMemory2, CMD_vkBindImageMemory, CMD_vkGetBufferMemoryRequirements, CMD_vkCreateFence,
    CMD_vkDestroyFence, CMD_vkResetFences, CMD_vkGetFenceStatus, CMD_vkWaitForFences, CMD_vkCreateSemaphore,
    CMD_vkWaitSemaphores, CMD_vkSignalSemaphore, CMD_vkGetSemaphoreCounterValue, CMD_vkCreateEvent,
    CMD_vkGetEventStatus, CMD_vkSetEvent, CMD_vkCreateBuffer, CMD_vkDestroyBuffer, CMD_vkCreateImage,
    CMD_vkDestroyImage, CMD_vkCreateImageView, CMD_vkCreateShaderModule, CMD_vkCreateComputePipelines,
    CMD_vkCreateGraphicsPipelines, CMD_vkCreatePipelineLayout, CMD_vkCreateDescriptorSetLayout,
    CMD_vkCreateDescriptorPool, CMD_vkAllocateDescriptorSets, CMD_vkFreeDescriptorSets, CMD_vkResetDescriptorPool,
    CMD_vkUpdateDescriptorSets, CMD_vkCreateCommandPool, CMD_vkDestroyCommandPool, CMD_vkResetCommandPool,
    CMD_vkAllocateCommandBuffers, CMD_vkFreeCommandBuffers, CMD_vkBeginCommandBuffer, CMD_vkEndCommandBuffer,
    CMD_vkCmdCopyBuffer, CMD_vkCmdFillBuffer, CMD_vkCmdUpdateBuffer, CMD_vkCmdCopyImageToBuffer,
    CMD_vkCmdCopyBufferToImage, CMD_vkCmdPipelineBarrier, CMD_vkCmdPipelineBarrier2, CMD_vkCmdBindPipeline,
    CMD_vkCmdBindDescriptorSets, CMD_vkCmdDispatch, CMD_vkCmdPushConstants, CMD_vkCmdBeginRenderPass,
    CMD_vkCmdBeginRendering, CMD_vkCmdDraw, CMD_vkCreateRenderPass, CMD_vkCreateFramebuffer,
    CMD_vkGetQueryPoolResults, CMD_vkCreateQueryPool, CMD_vkGetImageSubresourceLayout,
};

class Run {
 public:
  Run() {
    session_ = std::make_unique<VulkanSession>(
        std::vector<SessionGpu>{SessionGpu{0, 0}}, fuzz::worker_budget(kQuota).worker,
        [this](std::vector<uint8_t> frame) { take(std::move(frame)); }, "fuzz");
    // Device 1 with one queue (2) of family 0.
    WireWriter create;
    create.put<uint32_t>(0).put<uint64_t>(1);
    const float priority = 1;
    const VkDeviceQueueCreateInfo queue{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, nullptr, 0, 0, 1, &priority};
    const VkDeviceCreateInfo info{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, nullptr, 0, 1, &queue, 0, nullptr, 0, nullptr,
                                  nullptr};
    put(create, info);
    call(CMD_CreateDevice, false, create.buffer());
    WireWriter queue_call;
    queue_call.put<uint64_t>(1).put<uint32_t>(0).put<uint32_t>(0).put<uint64_t>(2);
    call(CMD_vkGetDeviceQueue, true, queue_call.buffer());
  }

  void call(uint32_t command, bool pipelined, std::span<const uint8_t> args) {
    Frame frame;
    frame.header.type = kMsgVulkanCall;
    frame.header.flags = pipelined ? kFrameNoReply : 0;
    frame.header.request_id = ++request_;
    WireWriter payload(frame.payload);
    payload.put(command).bytes(args.data(), args.size());
    frame.header.payload_len = static_cast<uint32_t>(frame.payload.size());
    session_->submit(std::move(frame));
    if (!pipelined) wait(request_);
  }

  void finish() {
    call(CMD_PullMemory, false, {});
    session_->close();
    session_.reset();
    if (fuzz::worker_budget(kQuota).main->used() != 0) fail("the closed session still holds some of the quota");
    std::lock_guard lock(g_driver);
    if (!g_memory.empty()) fail("the closed session left memory allocated in the driver");
  }

 private:
  void take(std::vector<uint8_t> bytes) {
    FrameDecoder decoder;
    decoder.feed(bytes);
    std::optional<Frame> frame;
    try {
      frame = decoder.next();
    } catch (const FrameError&) {
    }
    if (!frame || decoder.buffered() != 0) fail("the session sent a malformed frame");
    const uint16_t type = frame->header.type;
    if (type == static_cast<uint16_t>(MsgType::Error)) {
      try {
        decode_error(frame->payload);
      } catch (const WireError&) {
        fail("the session sent an Error that does not decode");
      }
    } else if (type == kMsgVulkanReply) {
      if (frame->payload.size() < sizeof(ReplyHeader)) fail("a reply shorter than its header");
      if (getenv("RGPU_FUZZ_VERBOSE")) {  // each answered call's result, to see what an input does
        ReplyHeader header;
        std::memcpy(&header, frame->payload.data(), sizeof header);
        const std::string rest(frame->payload.begin() + sizeof header, frame->payload.end());
        std::fprintf(stderr, "call %llu: %d %s\n", static_cast<unsigned long long>(frame->header.request_id),
                     header.result, header.result < 0 ? rest.c_str() : "");
      }
    } else if (type != kMsgVulkanMemory || frame->header.request_id != 0) {
      fail("the session sent a frame of an unexpected type");
    }
    std::lock_guard lock(mutex_);
    if (frame->header.request_id != 0) answered_.insert(frame->header.request_id);
    arrived_.notify_all();
  }

  void wait(uint64_t request) {
    std::unique_lock lock(mutex_);
    if (!arrived_.wait_for(lock, std::chrono::seconds(20), [&] { return answered_.count(request) != 0; }))
      fail("a call was never answered");
  }

  std::unique_ptr<VulkanSession> session_;
  uint64_t request_ = 0;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::set<uint64_t> answered_;
};

// Seeds: calls in the input's format, with raw command ids (independent of kCommands).
class Script {
 public:
  Script& call(uint32_t command, bool pipelined, const WireWriter& args) {
    fuzz::put_call(bytes_, command, {static_cast<uint8_t>(pipelined ? 1 : 0)}, const_cast<WireWriter&>(args).buffer());
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

template <typename Handle>
Handle id(uint64_t value) {
  return from_wire<Handle>(value);
}

// One recorded command of a batch.
void record(WireWriter& batch, uint32_t command, const WireWriter& args) {
  const auto& a = const_cast<WireWriter&>(args).buffer();
  batch.put(command).put(static_cast<uint32_t>(a.size())).bytes(a.data(), a.size());
}

void write_seeds(const fuzz::Seeds& seeds) {
  constexpr uint64_t kDevice = 1, kQueue = 2, kMemory = 10, kBuffer = 11, kPool = 12, kCommands = 13, kFence = 14,
                     kCached = 15;
  auto args = [] { return WireWriter(); };
  Script memory;
  {
    WireWriter a;
    a.put(kDevice).put<uint8_t>(1);
    put(a, VkMemoryAllocateInfo{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, nullptr, 8192, 0});
    a.put(kMemory);
    memory.call(CMD_vkAllocateMemory, false, a);
  }
  memory.call(CMD_MapMemory, false, args().put(kMemory).put<uint64_t>(0).put<uint64_t>(VK_WHOLE_SIZE));
  memory.call(CMD_WriteMemory, true, args().put(kMemory).put<uint64_t>(16).bytes("written by the application", 26));
  {
    WireWriter a;
    a.put(kDevice).put<uint8_t>(1);
    put(a, VkBufferCreateInfo{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, nullptr, 0, 4096,
                              VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                              VK_SHARING_MODE_EXCLUSIVE, 0, nullptr});
    a.put(kBuffer);
    memory.call(CMD_vkCreateBuffer, true, a);
  }
  memory.call(CMD_vkBindBufferMemory, true, args().put(kDevice).put(kBuffer).put(kMemory).put<uint64_t>(4096));
  {
    WireWriter a;
    a.put(kDevice).put<uint8_t>(1);
    put(a, VkCommandPoolCreateInfo{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, nullptr, 0, 0});
    a.put(kPool);
    memory.call(CMD_vkCreateCommandPool, true, a);
  }
  {
    WireWriter a;
    a.put(kDevice).put<uint8_t>(1);
    put(a, VkCommandBufferAllocateInfo{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, nullptr, id<VkCommandPool>(kPool),
                                       VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1});
    a.put(kCommands);
    memory.call(CMD_vkAllocateCommandBuffers, false, a);
  }
  {
    WireWriter batch;
    batch.put<uint32_t>(4);
    WireWriter begin;
    begin.put(kCommands).put<uint8_t>(1);
    put(begin, VkCommandBufferBeginInfo{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, nullptr, 0, nullptr});
    record(batch, CMD_vkBeginCommandBuffer, begin);
    record(batch, CMD_vkCmdFillBuffer, args().put(kCommands).put(kBuffer).put<uint64_t>(0).put<uint64_t>(256).put<uint32_t>(7));
    const VkBufferCopy region{0, 1024, 512};
    record(batch, CMD_vkCmdCopyBuffer, args().put(kCommands).put(kBuffer).put(kBuffer).put<uint32_t>(1).put<uint8_t>(1)
                                           .put<uint64_t>(1).put(region));
    record(batch, CMD_vkEndCommandBuffer, args().put(kCommands));
    memory.call(CMD_Batch, true, batch);
  }
  {
    WireWriter a;
    a.put(kDevice).put<uint8_t>(1);
    put(a, VkFenceCreateInfo{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO, nullptr, 0});
    a.put(kFence);
    memory.call(CMD_vkCreateFence, true, a);
  }
  {
    const VkCommandBuffer buffers[] = {id<VkCommandBuffer>(kCommands)};
    WireWriter a;
    a.put(kQueue).put<uint32_t>(1).put<uint8_t>(1).put<uint64_t>(1);
    put(a, VkSubmitInfo{VK_STRUCTURE_TYPE_SUBMIT_INFO, nullptr, 0, nullptr, nullptr, 1, buffers, 0, nullptr});
    a.put(kFence);
    memory.call(CMD_vkQueueSubmit, false, a);
  }
  memory.call(CMD_vkWaitForFences, false, args().put(kDevice).put<uint32_t>(1).put<uint8_t>(1).put<uint64_t>(1)
                                              .put(kFence).put<VkBool32>(VK_TRUE).put<uint64_t>(UINT64_MAX));
  memory.call(CMD_vkResetFences, true, args().put(kDevice).put<uint32_t>(1).put<uint8_t>(1).put<uint64_t>(1).put(kFence));
  memory.call(CMD_vkQueueWaitIdle, false, args().put(kQueue));
  memory.call(CMD_PullMemory, false, args());
  memory.call(CMD_UnmapMemory, true, args().put(kMemory));
  memory.call(CMD_vkFreeMemory, true, args().put(kDevice).put(kMemory));
  seeds.write("memory-batch-submit", memory.bytes());

  // Memory that is not coherent, mapped in part, and the device's idle wait.
  Script cached;
  {
    WireWriter a;
    a.put(kDevice).put<uint8_t>(1);
    put(a, VkMemoryAllocateInfo{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, nullptr, 3 * 4096 + 100, 1});
    a.put(kCached);
    cached.call(CMD_vkAllocateMemory, false, a);
  }
  cached.call(CMD_MapMemory, false, args().put(kCached).put<uint64_t>(4096 + 8).put<uint64_t>(4096));
  cached.call(CMD_WriteMemory, true, args().put(kCached).put<uint64_t>(4096 + 8).bytes("abcdefgh", 8));
  cached.call(CMD_vkDeviceWaitIdle, false, args().put(kDevice));
  cached.call(CMD_DescribePhysicalDevices, false, args());
  cached.call(CMD_DestroyDevice, true, args().put(kDevice));
  seeds.write("cached-memory", cached.bytes());

  // Findings, kept as seeds: memory made under id 0, command buffers without their allocate info.
  Script findings;
  {
    WireWriter a;
    a.put(kDevice).put<uint8_t>(1);
    put(a, VkMemoryAllocateInfo{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, nullptr, 8192, 0});
    a.put<uint64_t>(0);
    findings.call(CMD_vkAllocateMemory, false, a);
  }
  findings.call(CMD_vkAllocateCommandBuffers, false, args().put(kDevice).put<uint8_t>(0).put(kCommands));
  seeds.write("findings-ids-pointers", findings.bytes());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::initialize(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  Run run;
  for (int calls = 0; calls < 64; ++calls) {
    const auto call = fuzz::next_call(in, kCommands, 1);
    if (!call) break;
    run.call(call->id, call->flags[0] & 1, call->args);
  }
  run.finish();
  return 0;
}
