// Which host-mapped memory the device may write: the memory behind everything submitted command
// buffers name, followed through descriptor sets, views, framebuffers and memory bindings. The
// server compares only that memory with the client's copy after a wait, instead of all of it.
// Once the application has asked for a device address, shaders can reach any memory: then all
// of it is compared.
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <cstdint>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace rgpu::vk {

class WriteTracker {
 public:
  // Every handle one call names (its arguments, resolved) or creates.
  void named(uint64_t id, VkObjectType type) { named_.push_back({id, type, false}); }
  // The object just named is only read by the call (the source of a transfer).
  void read_only(uint64_t id) {
    if (!named_.empty() && named_.back().id == id) named_.back().read_only = true;
  }
  void start_call() { named_.clear(); }
  // After a call that succeeded: records what it linked. `recording`: the command buffer whose
  // recorded commands are being replayed (0 outside a batch).
  void finish_call(uint32_t command, uint64_t recording);
  // The memory ids that the command buffers named by the last call (a submission) can reach.
  std::unordered_set<uint64_t> reachable_memory() const;
  bool addresses_used() const { return addresses_used_; }
  void forget(uint64_t id) {
    links_.erase(id);
    types_.erase(id);
  }

 private:
  struct Named {
    uint64_t id;
    VkObjectType type;
    bool read_only;
  };
  // Links every named object of a type in `from` to every other named object.
  void link_from(std::initializer_list<VkObjectType> from, bool created_only = false);
  void compact(std::vector<uint64_t>& targets) const;

  std::vector<Named> named_;
  std::unordered_map<uint64_t, std::vector<uint64_t>> links_;  // holder -> what it refers to
  std::unordered_map<uint64_t, VkObjectType> types_;           // of every object linked to
  bool addresses_used_ = false;
};

}  // namespace rgpu::vk
