// How the generated entry points (vk_icd.gen.cpp) reach the server: a Call is one command sent
// on the instance's session, pipelined or awaited; a Recording appends one vkCmd* to its command
// buffer's stream.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "icd_objects.hpp"
#include "vk_codec.gen.hpp"
#include "vk_commands.gen.hpp"
#include "wire.hpp"

namespace rgpu::icd {

// A fresh id for a non-dispatchable object (its handle value on this side).
uint64_t next_object_id();
template <typename Handle>
Handle new_handle() {
  return vk::from_wire<Handle>(next_object_id());
}

class Call {
 public:
  Call(VkDevice device, uint32_t command, const char* name);
  Call(VkQueue queue, uint32_t command, const char* name);
  Call(VkCommandBuffer buffer, uint32_t command, const char* name);
  Call(VkPhysicalDevice physical, uint32_t command, const char* name);

  WireWriter& args() { return writer_; }
  // Sends without waiting: VK_SUCCESS, or VK_ERROR_DEVICE_LOST once the connection is gone.
  VkResult send_pipelined();
  // A wait whose timeout is `timeout` nanoseconds: send_and_wait() returns VK_TIMEOUT shortly after
  // it even when no answer comes (DaemonSession::request).
  void wait_at_most(uint64_t timeout) { wait_limit_ = timeout; }
  // Sends and waits for the answer (then read with answer()).
  VkResult send_and_wait();
  WireReader& answer() { return *reader_; }
  void malformed_answer(const WireError& e);
  bool failed() const { return failed_; }

 private:
  Call(DaemonSession& session, uint32_t command, const char* name);

  DaemonSession& session_;
  const char* name_;
  std::vector<uint8_t> payload_;
  WireWriter writer_{payload_};
  std::vector<uint8_t> outputs_;
  std::optional<WireReader> reader_;
  std::optional<uint64_t> wait_limit_;
  bool failed_ = false;
};

class Recording {
 public:
  Recording(VkCommandBuffer buffer, uint32_t command);
  ~Recording();
  Recording(const Recording&) = delete;
  Recording& operator=(const Recording&) = delete;
  WireWriter& args() { return writer_; }

 private:
  CommandBuffer* buffer_;
  WireWriter writer_;
  size_t length_at_;
};

// A physical device on the wire: its place in the session's device list.
inline uint64_t physical_device_id(VkPhysicalDevice physical) { return from_handle(physical)->session_index; }

// Sends what the application changed in the mapped memory of the device's instance (before a
// submission or a host signal lets the device read it).
void push_mapped_memory(Device* device);
inline void push_mapped_memory(VkDevice device) { push_mapped_memory(from_handle(device)); }
inline void push_mapped_memory(VkQueue queue) { push_mapped_memory(from_handle(queue)->device); }

}  // namespace rgpu::icd
