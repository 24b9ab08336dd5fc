#include "vulkan_replay.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "log.hpp"
#include "mapped_memory_sync.hpp"
#include "vulkan_instance.hpp"
#include "vulkan_wire.hpp"

namespace rgpu::vk {

namespace {
std::string id_text(uint64_t id) { return std::to_string(id); }

std::string command_text(uint32_t command) {
  const char* name = command_name(command);
  return name != nullptr ? name : "call " + std::to_string(command);
}

// Calls after which the device's writes must be visible in the client's mapped memory.
bool makes_visible(uint32_t command) {
  switch (command) {
    case CMD_vkWaitForFences:
    case CMD_vkGetFenceStatus:
    case CMD_vkQueueWaitIdle:
    case CMD_vkDeviceWaitIdle:
    case CMD_vkWaitSemaphores:
    case CMD_vkGetSemaphoreCounterValue:
    case CMD_vkGetEventStatus:
    case CMD_PullMemory:
      return true;
    default:
      return false;
  }
}
}  // namespace

NotForwarded::NotForwarded(uint32_t command)
    : std::runtime_error(command_text(command) + " is not forwarded by this server") {}

Replay::Replay(std::vector<uint32_t> ordinals, std::shared_ptr<MemoryBudget> budget, SendMemory send_memory)
    : ordinals_(std::move(ordinals)), budget_(std::move(budget)), send_memory_(std::move(send_memory)) {}

Replay::~Replay() { release_all(); }

std::pair<size_t, size_t> Replay::release_all() {
  std::vector<uint64_t> ids;
  for (const auto& [id, device] : devices_) ids.push_back(id);
  size_t objects = 0;
  for (uint64_t id : ids) objects += destroy_device(id);
  return {ids.size(), objects};
}

uint64_t Replay::resolve(uint64_t id, VkObjectType type) {
  if (type == VK_OBJECT_TYPE_PHYSICAL_DEVICE) {
    // The ICD names physical devices by their place in the session.
    if (id >= ordinals_.size())
      throw WireError("physical device " + id_text(id) + " is not one of this session's " +
                      std::to_string(ordinals_.size()));
    return to_wire(Instance::get().physical_device(ordinals_[id]));
  }
  if (id == 0) return 0;
  if (type == VK_OBJECT_TYPE_DEVICE) {
    const uint64_t real = to_wire(device(id).real);
    writes_.named(id, type);
    return real;
  }
  auto it = objects_.find(id);
  if (it == objects_.end() || it->second.type != type)
    throw WireError("handle " + id_text(id) + " is not a live object of type " + std::to_string(type) +
                    " in this session");
  writes_.named(id, type);
  return it->second.real;
}

uint64_t Replay::resolve_source(uint64_t id, VkObjectType type) {
  const uint64_t real = resolve(id, type);
  if (id != 0) writes_.read_only(id);
  return real;
}

Replay::Device& Replay::device(uint64_t id) {
  auto it = devices_.find(id);
  if (it == devices_.end()) throw WireError("device " + id_text(id) + " is not a live device of this session");
  return *it->second;
}

Replay::Allocation& Replay::allocation(uint64_t id) {
  auto it = allocations_.find(id);
  if (it == allocations_.end()) throw WireError("memory " + id_text(id) + " is not a live allocation of this session");
  return it->second;
}

const DeviceTable& Replay::table_of(uint64_t id, VkObjectType type) {
  if (type == VK_OBJECT_TYPE_DEVICE) return device(id).table;
  if (type == VK_OBJECT_TYPE_PHYSICAL_DEVICE) {
    if (!physical_table_loaded_) Instance::get().load_physical_commands(physical_table_);
    physical_table_loaded_ = true;
    return physical_table_;
  }
  resolve(id, type);
  return device(objects_.at(id).device).table;
}

void Replay::check_new_ids(const uint64_t* ids, uint64_t n, VkObjectType type) const {
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t id = ids[i];
    if (id == 0) throw WireError("an object was created with id 0");
    auto it = objects_.find(id);
    const bool again = it != objects_.end() && type == VK_OBJECT_TYPE_QUEUE && it->second.type == type;
    if ((it != objects_.end() && !again) || devices_.count(id) || std::find(ids, ids + i, id) != ids + i)
      throw WireError("id " + id_text(id) + " is already in use in this session");
  }
}

void Replay::created(uint64_t id, VkObjectType type, uint64_t real, uint64_t device_id, uint64_t parent) {
  if (id == 0) throw WireError("an object was created with id 0");
  // vkGetDeviceQueue hands out the same queue again under the same id.
  auto [it, fresh] = objects_.try_emplace(id, Object{type, real, device_id, parent, next_order_++});
  if (!fresh && (it->second.type != type || it->second.real != real))
    throw WireError("id " + id_text(id) + " is already in use in this session");
  writes_.named(id, type);
}

void Replay::destroyed(uint64_t id) {
  auto it = objects_.find(id);
  if (it == objects_.end()) return;
  const Object object = it->second;
  objects_.erase(it);
  writes_.forget(id);
  forget_allocation(id);  // vkFreeMemory unmaps
  released_children(object.device, object.real);
}

void Replay::released_children(uint64_t device_id, uint64_t pool) {
  std::erase_if(objects_, [&](const auto& entry) {
    const bool child = entry.second.device == device_id && entry.second.parent != 0 && entry.second.parent == pool;
    if (child) writes_.forget(entry.first);
    return child;
  });
}

VkResult Replay::remember_allocation(uint64_t id, uint64_t device_id, VkDeviceMemory memory,
                                     const VkMemoryAllocateInfo& info) {
  const Device& d = device(device_id);
  if (!budget_->reserve(info.allocationSize)) {
    d.table.vkFreeMemory(d.real, memory, nullptr);
    return VK_ERROR_OUT_OF_DEVICE_MEMORY;
  }
  Allocation a;
  a.device = device_id;
  a.real = memory;
  a.size = info.allocationSize;
  if (info.memoryTypeIndex < d.memory.memoryTypeCount)
    a.coherent = d.memory.memoryTypes[info.memoryTypeIndex].propertyFlags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  allocations_[id] = std::move(a);
  return VK_SUCCESS;
}

void Replay::forget_allocation(uint64_t id) {
  auto a = allocations_.find(id);
  if (a == allocations_.end()) return;
  budget_->release(a->second.size);
  allocations_.erase(a);
}

void Replay::call(uint32_t command, WireReader& r, WireWriter& w, VkResult& result) {
  struct ClearArena {
    Arena& arena;
    ~ClearArena() { arena.clear(); }
  } clear{arena_};
  result = VK_SUCCESS;
  switch (command) {
    case CMD_CreateDevice:
      return create_device(r, result);
    case CMD_DestroyDevice: {
      const uint64_t id = r.get<uint64_t>();
      r.expect_end();
      device(id);
      destroy_device(id);
      return;
    }
    case CMD_MapMemory:
      return map_memory(r, result);
    case CMD_UnmapMemory: {
      Allocation& a = allocation(r.get<uint64_t>());
      r.expect_end();
      return unmap(a);
    }
    case CMD_WriteMemory:
      return write_memory(r);
    case CMD_Batch:
      return batch(r, result);
    case CMD_PullMemory:
      r.expect_end();
      return pull();
    default: {
      const bool submits = command == CMD_vkQueueSubmit || command == CMD_vkQueueSubmit2 ||
                           command == CMD_vkQueueBindSparse;
      writes_.start_call();
      submitted_ = {};
      try {
        execute(command, r, w, result);
      } catch (...) {
        if (submits) track_submission(false);  // gives back the fence a failed submission took
        throw;
      }
      if (submits) track_submission(result >= 0);
      if (result < 0) return;
      writes_.finish_call(command, 0);
      if (submits) {
        if (writes_.addresses_used())
          for (auto& [memory, allocation] : allocations_) allocation.written = true;
        for (auto& [memory, ranges] : writes_.reachable_memory()) {
          auto a = allocations_.find(memory);
          if (a == allocations_.end()) continue;
          auto& writes = a->second.device_writes;
          writes.insert(writes.end(), ranges.begin(), ranges.end());
          a->second.written = true;
        }
      }
      if (result >= 0 && makes_visible(command)) pull();
    }
  }
}

VkFence Replay::fence_after(uint64_t queue_id) {
  Device& d = device(objects_.at(queue_id).device);
  VkFence fence = spare_fence(d);
  if (fence == VK_NULL_HANDLE) return VK_NULL_HANDLE;
  if (d.table.vkQueueSubmit(from_wire<VkQueue>(objects_.at(queue_id).real), 0, nullptr, fence) != VK_SUCCESS) {
    d.spare_fences.push_back(fence);  // never submitted: still unsignaled
    return VK_NULL_HANDLE;
  }
  return fence;
}

VkFence Replay::spare_fence(Device& d) {
  if (!d.spare_fences.empty()) {
    const VkFence fence = d.spare_fences.back();
    d.spare_fences.pop_back();
    return fence;
  }
  VkFence fence = VK_NULL_HANDLE;
  const VkFenceCreateInfo info{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO, nullptr, 0};
  return d.table.vkCreateFence(d.real, &info, nullptr, &fence) == VK_SUCCESS ? fence : VK_NULL_HANDLE;
}

void Replay::reuse_fence(Device& d, VkFence signaled) {
  if (d.table.vkResetFences(d.real, 1, &signaled) == VK_SUCCESS) d.spare_fences.push_back(signaled);
  else d.table.vkDestroyFence(d.real, signaled, nullptr);
}

Replay::Wait Replay::blocking_wait(uint32_t command, WireReader& r) {
  if (command == CMD_vkWaitForFences) {
    const uint64_t device_id = r.get<uint64_t>();
    const Device& d = device(device_id);
    const uint32_t count = r.get<uint32_t>();
    std::vector<VkFence> fences;
    if (r.get<uint8_t>()) {
      const uint64_t n = r.get<uint64_t>();
      if (n != count) throw WireError("vkWaitForFences: " + std::to_string(n) + " fences, fenceCount " + std::to_string(count));
      for (uint64_t i = 0; i < checked_count(r, n, 8); ++i)
        fences.push_back(from_wire<VkFence>(resolve(r.get<uint64_t>(), VK_OBJECT_TYPE_FENCE)));
    }
    const auto wait_all = r.get<VkBool32>();
    const auto timeout = r.get<uint64_t>();
    r.expect_end();
    auto slice = [wait = d.table.vkWaitForFences, device = d.real, fences, wait_all](uint64_t slice_ns) {
      return wait(device, static_cast<uint32_t>(fences.size()), fences.data(), wait_all, slice_ns);
    };
    return Wait{slice, timeout, {}};
  }
  if (command == CMD_vkWaitSemaphores) {
    const uint64_t device_id = r.get<uint64_t>();
    const Device& d = device(device_id);
    if (!r.get<uint8_t>()) throw WireError("vkWaitSemaphores without pWaitInfo");
    VkSemaphoreWaitInfo info{};
    get(r, info, ctx);
    const auto timeout = r.get<uint64_t>();
    r.expect_end();
    // The arrays outlive this call's arena in the wait.
    std::vector<VkSemaphore> semaphores(info.pSemaphores, info.pSemaphores + (info.pSemaphores ? info.semaphoreCount : 0));
    std::vector<uint64_t> values(info.pValues, info.pValues + (info.pValues ? info.semaphoreCount : 0));
    const VkSemaphoreWaitFlags flags = info.flags;
    auto slice = [wait = d.table.vkWaitSemaphores, device = d.real, semaphores, values, flags](uint64_t slice_ns) {
      const VkSemaphoreWaitInfo again{VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO, nullptr, flags,
                                      static_cast<uint32_t>(semaphores.size()), semaphores.data(), values.data()};
      return wait(device, &again, slice_ns);
    };
    return Wait{slice, timeout, {}};
  }
  if (command != CMD_vkQueueWaitIdle && command != CMD_vkDeviceWaitIdle) return {};
  // Idle waits become fence waits: a fence submitted after everything else on each queue.
  const uint64_t id = r.get<uint64_t>();
  r.expect_end();
  std::vector<uint64_t> queues;
  if (command == CMD_vkQueueWaitIdle) {
    resolve(id, VK_OBJECT_TYPE_QUEUE);
    queues.push_back(id);
  } else {
    device(id);
    for (const auto& [object_id, object] : objects_)
      if (object.type == VK_OBJECT_TYPE_QUEUE && object.device == id) queues.push_back(object_id);
  }
  const uint64_t device_id = command == CMD_vkQueueWaitIdle ? objects_.at(id).device : id;
  const Device& d = device(device_id);
  std::vector<VkFence> fences;
  bool all_fenced = true;  // else the wait still waits for the fences it has, then fails
  for (uint64_t queue : queues) {
    const VkFence fence = fence_after(queue);
    if (fence == VK_NULL_HANDLE) all_fenced = false;
    else fences.push_back(fence);
  }
  auto slice = [table = &d.table, device = d.real, fences](uint64_t slice_ns) {
    if (fences.empty()) return VK_SUCCESS;
    return table->vkWaitForFences(device, static_cast<uint32_t>(fences.size()), fences.data(), VK_TRUE, slice_ns);
  };
  // On the session's thread, once the wait has ended (an abandoned wait's end never runs: its
  // fences go with the device).
  auto end = [this, device_id, fences, all_fenced](VkResult result) {
    auto it = devices_.find(device_id);
    if (result == VK_SUCCESS && it != devices_.end())
      for (VkFence fence : fences) reuse_fence(*it->second, fence);
    return result == VK_SUCCESS && !all_fenced ? VK_ERROR_DEVICE_LOST : result;
  };
  return Wait{slice, UINT64_MAX, end};
}

void Replay::finish_wait(VkResult result) {
  arena_.clear();
  if (result >= 0) pull();
}

VkFence Replay::submission_fence(uint64_t queue_id, VkFence application_fence) {
  submitted_.queue = queue_id;
  if (application_fence != VK_NULL_HANDLE) {
    submitted_.fence = {application_fence, false};
    return application_fence;
  }
  const VkFence fence = spare_fence(device(objects_.at(queue_id).device));
  submitted_.fence = {fence, true};
  return fence;
}

void Replay::track_submission(bool succeeded) {
  const PendingSubmission s = submitted_;
  submitted_ = {};
  if (s.queue == 0) return;
  Device& d = device(objects_.at(s.queue).device);
  if (!succeeded) {
    if (s.fence.ours && s.fence.fence != VK_NULL_HANDLE) d.spare_fences.push_back(s.fence.fence);
    return;
  }
  device_may_write_ = true;
  QueueTracking& tracking = d.queues[s.queue];
  if (tracking.latest.ours) tracking.retired.push_back(tracking.latest.fence);
  tracking.latest = s.fence;
  // Without a fence (none could be made) the queue is not known idle before a later submission's
  // fence has signaled: waits keep comparing meanwhile.
  tracking.untracked = s.fence.fence == VK_NULL_HANDLE;
}

bool Replay::signaled(Device& d, VkFence fence) {
  return d.table.vkGetFenceStatus(d.real, fence) == VK_SUCCESS;
}

bool Replay::idle() {
  bool all = true;
  for (auto& entry : devices_) {
    Device& d = *entry.second;  // not a structured binding: lambdas cannot capture those before clang 16
    for (auto& [queue, tracking] : d.queues) {
      std::erase_if(tracking.retired, [&](VkFence fence) {
        if (!signaled(d, fence)) return false;
        reuse_fence(d, fence);
        return true;
      });
      if (tracking.untracked || (tracking.latest.fence != VK_NULL_HANDLE && !signaled(d, tracking.latest.fence)))
        all = false;
    }
  }
  return all;
}

// The application resets or destroys a fence only once the work that signals it has finished:
// a queue whose latest submission signals it has finished everything.
void Replay::observe_vkResetFences(VkDevice device, uint32_t count, const VkFence* fences) {
  for (auto& [id, d] : devices_) {
    if (d->real != device) continue;
    for (auto& [queue, tracking] : d->queues)
      if (!tracking.latest.ours && std::find(fences, fences + count, tracking.latest.fence) != fences + count)
        tracking.latest = {};
  }
}

void Replay::observe_vkDestroyFence(VkDevice device, VkFence fence, const VkAllocationCallbacks*) {
  observe_vkResetFences(device, 1, &fence);
}

void Replay::release_tracking(Device& d) {
  for (auto& [queue, tracking] : d.queues) {
    for (VkFence fence : tracking.retired) d.table.vkDestroyFence(d.real, fence, nullptr);
    if (tracking.latest.ours) d.table.vkDestroyFence(d.real, tracking.latest.fence, nullptr);
  }
  for (VkFence fence : d.spare_fences) d.table.vkDestroyFence(d.real, fence, nullptr);
  d.queues.clear();
  d.spare_fences.clear();
}

void Replay::create_device(WireReader& r, VkResult& result) {
  const uint32_t session_device = r.get<uint32_t>();
  const uint64_t id = r.get<uint64_t>();
  auto* info = arena_.make<VkDeviceCreateInfo>(1);
  get(r, *info, ctx);
  r.expect_end();
  if (session_device >= ordinals_.size())
    throw WireError("device " + std::to_string(session_device) + " is not one of this session's " +
                    std::to_string(ordinals_.size()));
  if (id == 0 || devices_.count(id) || objects_.count(id)) throw WireError("device id " + id_text(id) + " is in use");
  const Instance& instance = Instance::get();
  auto d = std::make_unique<Device>();
  PFN_vkGetDeviceProcAddr gdpa = nullptr;
  result = instance.create_device(ordinals_[session_device], *info, d->real, gdpa);
  if (result != VK_SUCCESS) return;
  d->table.load(gdpa, d->real);
  d->destroy = reinterpret_cast<PFN_vkDestroyDevice>(gdpa(d->real, "vkDestroyDevice"));
  d->memory = instance.memory_properties(ordinals_[session_device]);
  devices_[id] = std::move(d);
}

size_t Replay::destroy_device(uint64_t id) {
  Device& d = device(id);
  if (d.table.vkDeviceWaitIdle) d.table.vkDeviceWaitIdle(d.real);
  release_tracking(d);
  std::vector<std::pair<uint64_t, Object>> owned;
  for (const auto& entry : objects_)
    if (entry.second.device == id) owned.push_back(entry);
  std::sort(owned.begin(), owned.end(), [](const auto& a, const auto& b) { return a.second.order > b.second.order; });
  for (const auto& [object_id, object] : owned) {
    // Pool children go with their pool; queues and command buffers are not destroyed on their own.
    if (object.parent != 0 || object.type == VK_OBJECT_TYPE_QUEUE || object.type == VK_OBJECT_TYPE_COMMAND_BUFFER)
      continue;
    auto a = allocations_.find(object_id);
    if (a != allocations_.end() && a->second.mapped) d.table.vkUnmapMemory(d.real, a->second.real);
    destroy_object(d.table, d.real, object.type, object.real);
  }
  for (const auto& [object_id, object] : owned) {
    objects_.erase(object_id);
    forget_allocation(object_id);
    writes_.forget(object_id);
  }
  if (d.destroy) d.destroy(d.real, nullptr);
  devices_.erase(id);
  return owned.size();
}

void Replay::map_memory(WireReader& r, VkResult& result) {
  const uint64_t id = r.get<uint64_t>();
  const uint64_t offset = r.get<uint64_t>();
  const uint64_t size = r.get<uint64_t>();
  r.expect_end();
  Allocation& a = allocation(id);
  const uint64_t end = size == VK_WHOLE_SIZE ? a.size : offset + size;
  if (offset >= a.size || end > a.size || end <= offset)
    throw WireError("mapping [" + std::to_string(offset) + ", " + std::to_string(end) + ") of memory " + id_text(id) +
                    " is outside its " + std::to_string(a.size) + " bytes");
  Device& d = device(a.device);
  if (a.mapped == nullptr) {
    void* data = nullptr;
    result = d.table.vkMapMemory(d.real, a.real, 0, VK_WHOLE_SIZE, 0, &data);
    if (result != VK_SUCCESS) return;
    a.mapped = static_cast<uint8_t*>(data);
  }
  a.base = offset & ~(kMemoryPage - 1);
  // The client's copy starts out zeroed: what differs from zero is sent now.
  a.snapshot.assign(end - a.base, 0);
  if (a.written) return send_changes(id, a, {ByteRange{}});
  // Memory nothing has written yet holds undefined bytes: zeroing it is cheaper than reading it
  // (device memory the host can see may be slow to read), and both copies then agree.
  std::memset(a.mapped + a.base, 0, a.snapshot.size());
  if (!a.coherent) {
    VkMappedMemoryRange range{VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE, nullptr, a.real, 0, VK_WHOLE_SIZE};
    d.table.vkFlushMappedMemoryRanges(d.real, 1, &range);
  }
}

void Replay::unmap(Allocation& a) {
  if (a.mapped == nullptr) return;
  Device& d = device(a.device);
  d.table.vkUnmapMemory(d.real, a.real);
  a.mapped = nullptr;
  a.snapshot = {};
}

void Replay::write_memory(WireReader& r) {
  const uint64_t id = r.get<uint64_t>();
  const uint64_t offset = r.get<uint64_t>();
  const auto bytes = r.rest();
  Allocation& a = allocation(id);
  if (a.mapped == nullptr) throw WireError("memory " + id_text(id) + " is written but not mapped");
  if (offset < a.base || offset - a.base > a.snapshot.size() || bytes.size() > a.snapshot.size() - (offset - a.base))
    throw WireError("a write of " + std::to_string(bytes.size()) + " bytes at " + std::to_string(offset) +
                    " is outside the mapped range of memory " + id_text(id));
  uint8_t* snapshot = a.snapshot.data() + (offset - a.base);
  if (a.device_writes.empty() && !writes_.addresses_used()) {
    // No submitted work can have changed this memory since the snapshot: the mapping still holds
    // the snapshot, and is not read (host-visible memory that is not cached reads very slowly).
    std::memcpy(a.mapped + offset, bytes.data(), bytes.size());
    std::memcpy(snapshot, bytes.data(), bytes.size());
  } else {
    merge_incoming(bytes, a.mapped + offset, snapshot);
  }
  a.written = true;
  if (!a.coherent) {
    Device& d = device(a.device);
    VkMappedMemoryRange range{VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE, nullptr, a.real, 0, VK_WHOLE_SIZE};
    d.table.vkFlushMappedMemoryRanges(d.real, 1, &range);
  }
}

void Replay::pull() {
  if (!device_may_write_) return;
  // Checked before the scan: when all work had finished by then, the scan sees all its writes.
  const bool finished = idle();
  const std::vector<ByteRange> everything{ByteRange{}};
  for (auto& [id, a] : allocations_) {
    if (writes_.addresses_used()) send_changes(id, a, everything);
    else if (!a.device_writes.empty()) send_changes(id, a, a.device_writes);
  }
  if (!finished) return;
  device_may_write_ = false;
  for (auto& [id, a] : allocations_) a.device_writes.clear();
}

void Replay::send_changes(uint64_t id, Allocation& a, const std::vector<ByteRange>& ranges) {
  if (a.mapped == nullptr) return;
  if (!a.coherent) {
    Device& d = device(a.device);
    VkMappedMemoryRange range{VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE, nullptr, a.real, 0, VK_WHOLE_SIZE};
    d.table.vkInvalidateMappedMemoryRanges(d.real, 1, &range);
  }
  // The ranges, clipped to the mapped range and widened to whole pages, in order and merged.
  const uint64_t mapped_end = a.base + a.snapshot.size();
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const ByteRange& r : ranges) {
    const uint64_t begin = std::max(r.offset, a.base) & ~(kMemoryPage - 1);
    const uint64_t end = r.size > mapped_end - std::min(r.offset, mapped_end) ? mapped_end : r.offset + r.size;
    if (end > std::max(begin, a.base)) spans.push_back({std::max(begin, a.base), end});
  }
  std::sort(spans.begin(), spans.end());
  uint64_t done = a.base;  // everything before has been compared
  for (auto span : spans) {
    const uint64_t begin = std::max(span.first, done);
    uint64_t end = span.second;
    if (end <= begin) continue;
    end = std::min(mapped_end, (end + kMemoryPage - 1) & ~(kMemoryPage - 1));
    const uint8_t* current = a.mapped + begin;
    for_each_changed_run(current, a.snapshot.data() + (begin - a.base), end - begin, kMemoryPage, kMemoryChunk,
                         [&](size_t offset, size_t length) {
                           send_memory_(id, begin + offset, {current + offset, length});
                         });
    done = end;
  }
}

void Replay::observe_vkBindBufferMemory(VkDevice device, VkBuffer buffer, VkDeviceMemory, VkDeviceSize offset) {
  const uint64_t buffer_id = writes_.named_id(VK_OBJECT_TYPE_BUFFER);
  const uint64_t memory_id = writes_.named_id(VK_OBJECT_TYPE_DEVICE_MEMORY);
  const Device& d = this->device(writes_.named_id(VK_OBJECT_TYPE_DEVICE));
  VkMemoryRequirements requirements{};
  d.table.vkGetBufferMemoryRequirements(device, buffer, &requirements);
  writes_.bound(buffer_id, memory_id, offset, requirements.size);
}

void Replay::observe_vkBindBufferMemory2(VkDevice device, uint32_t count, const VkBindBufferMemoryInfo* infos) {
  const Device& d = this->device(writes_.named_id(VK_OBJECT_TYPE_DEVICE));
  for (uint32_t i = 0; i < count; ++i) {
    VkMemoryRequirements requirements{};
    d.table.vkGetBufferMemoryRequirements(device, infos[i].buffer, &requirements);
    writes_.bound(writes_.named_id(VK_OBJECT_TYPE_BUFFER, i), writes_.named_id(VK_OBJECT_TYPE_DEVICE_MEMORY, i),
                  infos[i].memoryOffset, requirements.size);
  }
}

void Replay::observe_vkCmdCopyBuffer(VkCommandBuffer, VkBuffer, VkBuffer, uint32_t count, const VkBufferCopy* regions) {
  // The source was named read-only; the destination is the other buffer.
  const uint64_t destination = writes_.named_id(VK_OBJECT_TYPE_BUFFER, 1);
  for (uint32_t i = 0; i < count; ++i) writes_.writes(recording_, destination, regions[i].dstOffset, regions[i].size);
}

void Replay::observe_vkCmdFillBuffer(VkCommandBuffer, VkBuffer, VkDeviceSize offset, VkDeviceSize size, uint32_t) {
  writes_.writes(recording_, writes_.named_id(VK_OBJECT_TYPE_BUFFER), offset,
                 size == VK_WHOLE_SIZE ? ByteRange{}.size : size);
}

void Replay::observe_vkCmdUpdateBuffer(VkCommandBuffer, VkBuffer, VkDeviceSize offset, VkDeviceSize size, const void*) {
  writes_.writes(recording_, writes_.named_id(VK_OBJECT_TYPE_BUFFER), offset, size);
}

// Rows and layers of an image copy land between its regions' first offset and the buffer's end.
void Replay::observe_vkCmdCopyImageToBuffer(VkCommandBuffer, VkImage, VkImageLayout, VkBuffer, uint32_t count,
                                            const VkBufferImageCopy* regions) {
  uint64_t first = ByteRange{}.size;
  for (uint32_t i = 0; i < count; ++i) first = std::min<uint64_t>(first, regions[i].bufferOffset);
  if (count > 0) writes_.writes(recording_, writes_.named_id(VK_OBJECT_TYPE_BUFFER), first, ByteRange{}.size);
}

void Replay::batch(WireReader& r, VkResult& result) {
  const uint32_t n = r.get<uint32_t>();
  WireWriter ignored;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t command = r.get<uint32_t>();
    const uint32_t length = r.get<uint32_t>();
    WireReader one(r.bytes(length), "recorded command");
    // Every recorded command names its command buffer first.
    recording_ = WireReader(one).get<uint64_t>();
    writes_.start_call();
    try {
      execute(command, one, ignored, result);
    } catch (...) {
      recording_ = 0;
      throw;
    }
    if (result >= 0) writes_.finish_call(command, recording_);
    recording_ = 0;
    arena_.clear();
    if (result < 0) return;
  }
  r.expect_end();
}

}  // namespace rgpu::vk
