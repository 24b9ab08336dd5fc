// One client's Vulkan objects on this server: the ids its ICD picked mapped to the driver's
// handles, the devices they belong to, and the host-mapped memory kept in step with the ICD's
// copy. Calls are decoded and replayed by the generated Replay::execute (vk_server.gen.cpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "memory_budget.hpp"
#include "vk_codec.gen.hpp"
#include "vk_commands.gen.hpp"
#include "vulkan_write_tracker.hpp"

namespace rgpu::vk {

// A call this server does not replay (not generated, or the driver lacks it).
class NotForwarded : public std::runtime_error {
 public:
  explicit NotForwarded(uint32_t command);
};

class Replay final : public HandleResolver {
 public:
  // Sends bytes the device changed in mapped memory to the ICD (kMsgVulkanMemory).
  using SendMemory = std::function<void(uint64_t memory, uint64_t offset, std::span<const uint8_t> bytes)>;

  // `ordinals`: the Vulkan ordinal of each of the session's devices; `budget`: the token's memory.
  Replay(std::vector<uint32_t> ordinals, std::shared_ptr<MemoryBudget> budget, SendMemory send_memory);
  ~Replay() override;  // releases what is left (see release_all)
  Replay(const Replay&) = delete;
  Replay& operator=(const Replay&) = delete;

  // One call: a generated vk* command or one of RGPU's own (vulkan_wire.hpp). Outputs go to `w`.
  // Throws WireError (malformed arguments, unknown handles) and NotForwarded.
  void call(uint32_t command, WireReader& r, WireWriter& w, VkResult& result);

  uint64_t resolve(uint64_t id, VkObjectType type) override;
  uint64_t resolve_source(uint64_t id, VkObjectType type) override;

  // A wait that blocks (vkWaitForFences, vkWaitSemaphores, vkQueueWaitIdle, vkDeviceWaitIdle),
  // decoded but not run: the session runs it in slices, so that it can hand it to a thread of its
  // own when it would hold up the application's other threads.
  struct Wait {
    // Waits at most slice_ns; VK_TIMEOUT while what it waits for has not happened.
    std::function<VkResult(uint64_t slice_ns)> slice;
    uint64_t timeout_ns = 0;
    // Turns how the slices ended into the call's result, on the session's thread; none: the
    // result is the last slice's. Not called for a wait abandoned when the session closes.
    std::function<VkResult(VkResult)> end;
    explicit operator bool() const { return static_cast<bool>(slice); }
    VkResult result_of(VkResult last) const { return end ? end(last) : last; }
  };
  // The wait of a blocking command; an empty Wait for other commands.
  Wait blocking_wait(uint32_t command, WireReader& r);
  // After such a wait: the device's writes become visible to the client (pull).
  void finish_wait(VkResult result);

  // Destroys every device the client left, with all its objects. Returns how many devices and
  // objects that was.
  std::pair<size_t, size_t> release_all();

 private:
  struct Object {
    VkObjectType type;
    uint64_t real;
    uint64_t device;  // the id of the device it belongs to
    uint64_t parent;  // the pool it was allocated from (driver handle), or 0
    uint64_t order;   // creation order: cleanup goes backwards
  };
  // The fence the latest submission on a queue signals (the application's, or the server's own
  // when it gave none): once it has signaled, everything submitted there before has finished.
  struct TrackedFence {
    VkFence fence = VK_NULL_HANDLE;
    bool ours = false;
  };
  struct QueueTracking {
    TrackedFence latest;
    bool untracked = false;        // the latest submission signals no fence
    std::vector<VkFence> retired;  // earlier fences of our own, back to the spares once signaled
  };
  struct Device {
    VkDevice real = VK_NULL_HANDLE;
    DeviceTable table;
    PFN_vkDestroyDevice destroy = nullptr;
    VkPhysicalDeviceMemoryProperties memory{};
    std::unordered_map<uint64_t, QueueTracking> queues;  // by queue id
    std::vector<VkFence> spare_fences;                   // ours, unsignaled, for the next submissions
  };
  struct Allocation {
    uint64_t device = 0;
    VkDeviceMemory real = VK_NULL_HANDLE;
    uint64_t size = 0;
    bool coherent = true;
    uint8_t* mapped = nullptr;        // the whole allocation, while the client has it mapped
    uint64_t base = 0;                // the range the client maps, page-aligned at the start
    std::vector<uint8_t> snapshot;    // what the client has of that range
    std::vector<ByteRange> device_writes;  // what submitted work can write of it
    bool written = false;                  // by the client or (possibly) by the device, ever
  };

  // Generated (vk_server.gen.cpp).
  void execute(uint32_t command, WireReader& r, WireWriter& w, VkResult& result);
  static void destroy_object(const DeviceTable& t, VkDevice device, VkObjectType type, uint64_t real);

  // Used by the generated code.
  const DeviceTable& table_of(uint64_t id, VkObjectType type);
  // Before a command makes objects: their ids must be new (a queue's may name the same queue
  // again), or what the driver made could not be tracked, nor freed, nor counted. Throws WireError.
  void check_new_ids(const uint64_t* ids, uint64_t n, VkObjectType type) const;
  void created(uint64_t id, VkObjectType type, uint64_t real, uint64_t device, uint64_t parent);
  void destroyed(uint64_t id);
  void released_children(uint64_t device, uint64_t pool);
  // After vkAllocateMemory: counts it against the token's budget; over it, frees it again and
  // answers VK_ERROR_OUT_OF_DEVICE_MEMORY.
  VkResult remember_allocation(uint64_t id, uint64_t device, VkDeviceMemory memory, const VkMemoryAllocateInfo& info);
  void forget_allocation(uint64_t id);

  // Looks at decoded arguments (gen/vk_commands.py OBSERVED): bindings and transfer ranges.
  void observe_vkBindBufferMemory(VkDevice device, VkBuffer buffer, VkDeviceMemory memory, VkDeviceSize offset);
  void observe_vkBindBufferMemory2(VkDevice device, uint32_t count, const VkBindBufferMemoryInfo* infos);
  void observe_vkCmdCopyBuffer(VkCommandBuffer, VkBuffer, VkBuffer, uint32_t count, const VkBufferCopy* regions);
  void observe_vkCmdFillBuffer(VkCommandBuffer, VkBuffer, VkDeviceSize offset, VkDeviceSize size, uint32_t);
  void observe_vkCmdUpdateBuffer(VkCommandBuffer, VkBuffer, VkDeviceSize offset, VkDeviceSize size, const void*);
  void observe_vkCmdCopyImageToBuffer(VkCommandBuffer, VkImage, VkImageLayout, VkBuffer, uint32_t count,
                                      const VkBufferImageCopy* regions);
  void observe_vkResetFences(VkDevice device, uint32_t count, const VkFence* fences);
  void observe_vkDestroyFence(VkDevice device, VkFence fence, const VkAllocationCallbacks*);
  // The fence a submission on `queue_id` signals: the application's, else a spare of our own.
  VkFence submission_fence(uint64_t queue_id, VkFence application_fence);
  // The submission just executed, with the fence submission_fence chose.
  struct PendingSubmission {
    uint64_t queue = 0;
    TrackedFence fence;
  } submitted_;
  // The command buffer whose recorded commands are being replayed (batch), else 0.
  uint64_t recording_ = 0;

  // RGPU's own calls.
  void create_device(WireReader& r, VkResult& result);
  // Destroys the device and whatever the client left of it; returns how many objects that was.
  size_t destroy_device(uint64_t id);
  void map_memory(WireReader& r, VkResult& result);
  void unmap(Allocation& allocation);
  void write_memory(WireReader& r);
  void batch(WireReader& r, VkResult& result);
  // Sends what the device changed in every mapped range.
  void pull();
  // Sends what differs between one allocation's mapped range and the client's copy.
  void send_changes(uint64_t id, Allocation& a, const std::vector<ByteRange>& ranges);
  // After the submission (submitted_): the device may write mapped memory until it is idle. A
  // submission that failed gives its fence back.
  void track_submission(bool succeeded);
  // Whether `fence` signaled; ours that did are reset for the next submissions.
  bool signaled(Device& d, VkFence fence);
  // A fence of the server's own, signaled once everything submitted to the queue has finished.
  VkFence fence_after(uint64_t queue_id);
  // An unsignaled fence of our own (a spare, else a new one; creating one costs about 0.5 ms on
  // NVIDIA's driver), and a signaled one back to the spares.
  VkFence spare_fence(Device& d);
  void reuse_fence(Device& d, VkFence signaled);
  // Whether all submitted work has finished (retired fences of our own go back to the spares).
  bool idle();
  void release_tracking(Device& d);
  Device& device(uint64_t id);
  Allocation& allocation(uint64_t id);

  std::vector<uint32_t> ordinals_;
  std::shared_ptr<MemoryBudget> budget_;
  SendMemory send_memory_;
  Arena arena_;
  DecodeContext ctx{arena_, *this};
  std::unordered_map<uint64_t, std::unique_ptr<Device>> devices_;
  std::unordered_map<uint64_t, Object> objects_;
  std::unordered_map<uint64_t, Allocation> allocations_;
  uint64_t next_order_ = 0;
  bool device_may_write_ = false;  // a submission may still be writing mapped memory
  WriteTracker writes_;
  DeviceTable physical_table_;  // the instance's physical-device commands
  bool physical_table_loaded_ = false;
};

}  // namespace rgpu::vk
