#include "icd_calls.hpp"

#include <algorithm>
#include <cstring>

#include "log.hpp"
#include "mapped_memory_sync.hpp"
#include "vulkan_wire.hpp"
#include "written_pages.hpp"

namespace rgpu::icd {

uint64_t next_object_id() {
  static std::atomic<uint64_t> next{1};
  return next++;
}

Call::Call(DaemonSession& session, uint32_t command, const char* name) : session_(session), name_(name) {
  writer_.put(command);
}
Call::Call(VkDevice device, uint32_t command, const char* name) : Call(from_handle(device)->session(), command, name) {}
Call::Call(VkQueue queue, uint32_t command, const char* name)
    : Call(from_handle(queue)->device->session(), command, name) {}
Call::Call(VkCommandBuffer buffer, uint32_t command, const char* name)
    : Call(from_handle(buffer)->device->session(), command, name) {}
Call::Call(VkPhysicalDevice physical, uint32_t command, const char* name)
    : Call(*from_handle(physical)->instance->session, command, name) {}

VkResult Call::send_pipelined() {
  std::string problem;
  if (session_.post(payload_, problem)) return VK_SUCCESS;
  LOG_ERROR("Vulkan: %s: %s", name_, problem.c_str());
  failed_ = true;
  return VK_ERROR_DEVICE_LOST;
}

VkResult Call::send_and_wait() {
  std::string problem;
  const VkResult result = session_.request(payload_, outputs_, problem, wait_limit_);
  if (result < 0) {
    // Errors such as VK_ERROR_OUT_OF_POOL_MEMORY are the application's to handle; the server's
    // reason is still worth a line.
    LOG_INFO("Vulkan: %s: %s %s", name_, vk::result_text(result).c_str(), problem.c_str());
    failed_ = true;
  } else if (!problem.empty()) {
    LOG_WARN("Vulkan: %s: %s %s", name_, vk::result_text(result).c_str(), problem.c_str());
  }
  reader_.emplace(outputs_, name_);
  return result;
}

void Call::malformed_answer(const WireError& e) {
  LOG_ERROR("Vulkan: %s: malformed answer: %s", name_, e.what());
  failed_ = true;
}

Recording::Recording(VkCommandBuffer buffer, uint32_t command)
    : buffer_(from_handle(buffer)), writer_(buffer_->stream) {
  writer_.put(command).put<uint32_t>(0);
  length_at_ = buffer_->stream.size();
}

Recording::~Recording() {
  const auto length = static_cast<uint32_t>(buffer_->stream.size() - length_at_);
  std::memcpy(buffer_->stream.data() + length_at_ - sizeof length, &length, sizeof length);
  ++buffer_->count;
}

void push_mapped_memory(Device* device) {
  Instance& instance = device->instance();
  DaemonSession& session = device->session();
  auto lock = session.lock();
  std::string problem;
  for (auto& [id, memory] : instance.memories) {
    if (memory->region == nullptr) continue;
    Memory& m = *memory;
    const uint64_t memory_id = id;
    // Sends what differs from the snapshot within [from, from + length) of the region.
    auto send_changes = [&](size_t from, size_t length) {
      if (from >= m.length) return;  // the tail of the last page, past the mapped range
      length = std::min<size_t>(length, m.length - from);
      rgpu::for_each_changed_run(m.region + from, m.snapshot.data() + from, length, vk::kMemoryPage, vk::kMemoryChunk,
                               [&](size_t offset, size_t run) {
                                 WireWriter w;
                                 w.put(vk::CMD_WriteMemory).put(memory_id).put<uint64_t>(m.base + from + offset);
                                 if (!session.post(w.buffer(), {m.region + from + offset, run}, problem))
                                   LOG_ERROR("Vulkan: sending mapped memory: %s", problem.c_str());
                               });
    };
    if (m.watched && rgpu::WrittenPages::get().take(m.region, m.region_size(), send_changes)) continue;
    m.watched = false;
    send_changes(0, m.length);
  }
}

void receive_memory(Instance& instance, uint64_t memory, uint64_t offset, std::span<const uint8_t> bytes) {
  auto it = instance.memories.find(memory);
  if (it == instance.memories.end() || it->second->region == nullptr) {
    LOG_WARN("Vulkan: the server sent contents of memory %llu, which is not mapped here",
             static_cast<unsigned long long>(memory));
    return;
  }
  Memory& m = *it->second;
  if (offset < m.base || offset - m.base > m.length || bytes.size() > m.length - (offset - m.base)) {
    LOG_WARN("Vulkan: the server sent %zu bytes at %llu, outside the mapped range of memory %llu", bytes.size(),
             static_cast<unsigned long long>(offset), static_cast<unsigned long long>(memory));
    return;
  }
  rgpu::merge_incoming(bytes, m.region + (offset - m.base), m.snapshot.data() + (offset - m.base));
}

}  // namespace rgpu::icd
