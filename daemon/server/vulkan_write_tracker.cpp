#include "vulkan_write_tracker.hpp"

#include <algorithm>

#include "vk_commands.gen.hpp"

namespace rgpu::vk {

namespace {
// Recorded commands that only read the buffers they name.
bool reads_only(uint32_t command) {
  switch (command) {
    case CMD_vkCmdBindVertexBuffers:
    case CMD_vkCmdBindVertexBuffers2:
    case CMD_vkCmdBindIndexBuffer:
    case CMD_vkCmdDrawIndirect:
    case CMD_vkCmdDrawIndexedIndirect:
    case CMD_vkCmdDrawIndirectCount:
    case CMD_vkCmdDrawIndexedIndirectCount:
    case CMD_vkCmdDispatchIndirect:
      return true;
    default:
      return false;
  }
}

bool never_linked(VkObjectType type) { return type == VK_OBJECT_TYPE_DEVICE || type == VK_OBJECT_TYPE_QUEUE; }
}  // namespace

uint64_t WriteTracker::named_id(VkObjectType type, size_t nth) const {
  for (const Named& n : named_)
    if (n.type == type && nth-- == 0) return n.id;
  return 0;
}

void WriteTracker::writes(uint64_t recording, uint64_t buffer, uint64_t offset, uint64_t size) {
  if (recording == 0 || buffer == 0) return;
  buffer_writes_[recording].push_back({buffer, {offset, size}});
  types_[buffer] = VK_OBJECT_TYPE_BUFFER;
  precise_ = true;
}

void WriteTracker::forget(uint64_t id) {
  links_.erase(id);
  types_.erase(id);
  bindings_.erase(id);
  buffer_writes_.erase(id);
}

void WriteTracker::compact(std::vector<uint64_t>& targets) const {
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  // Objects destroyed since are dropped.
  std::erase_if(targets, [this](uint64_t id) { return !types_.count(id); });
}

void WriteTracker::link_from(std::initializer_list<VkObjectType> from, bool created_only) {
  auto is_holder = [&](const Named& n) { return std::find(from.begin(), from.end(), n.type) != from.end(); };
  // A creation names its new object last.
  const size_t first_holder = created_only && !named_.empty() ? named_.size() - 1 : 0;
  for (size_t h = first_holder; h < named_.size(); ++h) {
    if (!is_holder(named_[h])) continue;
    types_[named_[h].id] = named_[h].type;
    auto& targets = links_[named_[h].id];
    for (size_t i = 0; i < named_.size(); ++i) {
      const Named& n = named_[i];
      if (i == h || never_linked(n.type)) continue;
      targets.push_back(n.id);
      types_[n.id] = n.type;
    }
    compact(targets);
  }
}

void WriteTracker::finish_call(uint32_t command, uint64_t recording) {
  if (recording != 0) {
    types_[recording] = VK_OBJECT_TYPE_COMMAND_BUFFER;
    // vkBeginCommandBuffer starts the recording over.
    if (command == CMD_vkBeginCommandBuffer) {
      links_[recording].clear();
      buffer_writes_.erase(recording);
    }
    if (reads_only(command) || precise_) return;
    auto& targets = links_[recording];
    for (const Named& n : named_) {
      // What a recorded transfer only reads from cannot change; outside command buffers (a
      // descriptor copy) a source still becomes reachable from the destination.
      if (n.read_only || n.id == recording || never_linked(n.type)) continue;
      targets.push_back(n.id);
      types_[n.id] = n.type;
    }
    compact(targets);
    return;
  }
  switch (command) {
    case CMD_vkUpdateDescriptorSets:
      return link_from({VK_OBJECT_TYPE_DESCRIPTOR_SET});
    case CMD_vkBindBufferMemory:
    case CMD_vkBindBufferMemory2:
    case CMD_vkBindImageMemory:
    case CMD_vkBindImageMemory2:
    case CMD_vkQueueBindSparse:
      return link_from({VK_OBJECT_TYPE_BUFFER, VK_OBJECT_TYPE_IMAGE});
    case CMD_vkCreateImageView:
    case CMD_vkCreateBufferView:
    case CMD_vkCreateFramebuffer:
      return link_from({VK_OBJECT_TYPE_IMAGE_VIEW, VK_OBJECT_TYPE_BUFFER_VIEW, VK_OBJECT_TYPE_FRAMEBUFFER}, true);
    case CMD_vkGetBufferDeviceAddress:
    case CMD_vkGetBufferOpaqueCaptureAddress:
    case CMD_vkGetDeviceMemoryOpaqueCaptureAddress:
      addresses_used_ = true;
      return;
    default:
      return;
  }
}

std::unordered_map<uint64_t, std::vector<ByteRange>> WriteTracker::reachable_memory() const {
  std::unordered_map<uint64_t, std::vector<ByteRange>> out;
  std::unordered_set<uint64_t> seen;
  std::vector<uint64_t> todo;
  // A range of a buffer, where the buffer's binding is known; else all memory it links to.
  auto buffer_range = [&](uint64_t buffer, ByteRange range) {
    auto binding = bindings_.find(buffer);
    if (binding == bindings_.end()) return todo.push_back(buffer);
    const ByteRange& bound = binding->second.range;
    if (range.offset >= bound.size) return;
    const uint64_t size = std::min(range.size, bound.size - range.offset);
    out[binding->second.memory].push_back({bound.offset + range.offset, size});
  };
  for (const Named& n : named_)
    if (n.type == VK_OBJECT_TYPE_COMMAND_BUFFER) todo.push_back(n.id);
  while (!todo.empty()) {
    const uint64_t id = todo.back();
    todo.pop_back();
    if (!seen.insert(id).second) continue;
    auto type = types_.find(id);
    const VkObjectType t = type != types_.end() ? type->second : VK_OBJECT_TYPE_UNKNOWN;
    if (t == VK_OBJECT_TYPE_DEVICE_MEMORY) out[id].push_back(ByteRange{});
    if (t == VK_OBJECT_TYPE_BUFFER && bindings_.count(id)) {
      buffer_range(id, ByteRange{});
      continue;
    }
    if (t == VK_OBJECT_TYPE_COMMAND_BUFFER) {
      auto writes = buffer_writes_.find(id);
      if (writes != buffer_writes_.end())
        for (const BufferWrite& write : writes->second) buffer_range(write.buffer, write.range);
    }
    auto it = links_.find(id);
    if (it != links_.end()) todo.insert(todo.end(), it->second.begin(), it->second.end());
  }
  return out;
}

}  // namespace rgpu::vk
