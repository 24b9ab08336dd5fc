// Which host-mapped memory the device may write: what submitted command buffers name, followed
// through descriptor sets, views, framebuffers and memory bindings, down to byte ranges where the
// server knows them (a buffer's binding; the destination range of a recorded transfer). After a
// wait the server compares only those ranges with the client's copy, instead of all mapped
// memory. Once the application has asked for a device address, shaders can reach any memory:
// then all of it is compared.
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace rgpu::vk {

struct ByteRange {
  uint64_t offset = 0;
  uint64_t size = std::numeric_limits<uint64_t>::max();  // the default: the whole allocation
};

class WriteTracker {
 public:
  // Every handle one call names (its arguments, resolved) or creates.
  void start_call() {
    named_.clear();
    precise_ = false;
  }
  void named(uint64_t id, VkObjectType type) { named_.push_back({id, type, false}); }
  // The object just named is only read by the call (the source of a transfer).
  void read_only(uint64_t id) {
    if (!named_.empty() && named_.back().id == id) named_.back().read_only = true;
  }
  // The nth object of `type` the current call named (0 if none).
  uint64_t named_id(VkObjectType type, size_t nth = 0) const;

  // A buffer's place in its memory (vkBindBufferMemory).
  void bound(uint64_t buffer, uint64_t memory, uint64_t offset, uint64_t size) {
    bindings_[buffer] = {memory, {offset, size}};
  }
  // The recorded command writes only this range of `buffer` (replaces linking all it names).
  void writes(uint64_t recording, uint64_t buffer, uint64_t offset, uint64_t size);

  // After a call that succeeded: records what it linked. `recording`: the command buffer whose
  // recorded commands are being replayed (0 outside a batch).
  void finish_call(uint32_t command, uint64_t recording);
  // The memory ranges that the command buffers named by the last call (a submission) can write.
  std::unordered_map<uint64_t, std::vector<ByteRange>> reachable_memory() const;
  bool addresses_used() const { return addresses_used_; }
  void forget(uint64_t id);

 private:
  struct Named {
    uint64_t id;
    VkObjectType type;
    bool read_only;
  };
  struct Binding {
    uint64_t memory;
    ByteRange range;
  };
  struct BufferWrite {
    uint64_t buffer;
    ByteRange range;  // within the buffer
  };
  // Links every named object of a type in `from` to every other named object.
  void link_from(std::initializer_list<VkObjectType> from, bool created_only = false);
  void compact(std::vector<uint64_t>& targets) const;

  std::vector<Named> named_;
  bool precise_ = false;  // the current call's writes were recorded as ranges
  std::unordered_map<uint64_t, std::vector<uint64_t>> links_;  // holder -> what it refers to
  std::unordered_map<uint64_t, VkObjectType> types_;           // of every object linked to
  std::unordered_map<uint64_t, Binding> bindings_;             // buffer -> where its memory is
  std::unordered_map<uint64_t, std::vector<BufferWrite>> buffer_writes_;  // command buffer -> ranges
  bool addresses_used_ = false;
};

}  // namespace rgpu::vk
