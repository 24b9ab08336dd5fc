// The ICD's connection to the client daemon: one per VkInstance, opened with an AppHello that
// asks for a Vulkan session; the server's session lives as long as this connection.
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "app_protocol.hpp"
#include "frame.hpp"
#include "vulkan_wire.hpp"

namespace rgpu::icd {

class DaemonSession {
 public:
  // Connects and says hello; nullptr with `problem` saying why (daemon unreachable, refused, ...).
  static std::unique_ptr<DaemonSession> open(std::string& problem);
  ~DaemonSession();
  DaemonSession(const DaemonSession&) = delete;
  DaemonSession& operator=(const DaemonSession&) = delete;

  const AppWelcomeMsg& welcome() const { return welcome_; }

  // One VulkanCall and its answer: the reply's VkResult, with its outputs in `outputs`. Failures
  // of the link or refusals by the server return VK_ERROR_INITIALIZATION_FAILED (or
  // VK_ERROR_DEVICE_LOST once the server is gone) with `problem` set.
  VkResult call(uint32_t command, std::span<const uint8_t> arguments, std::vector<uint8_t>& outputs,
                std::string& problem);
  // The same with the whole payload (u32 command, then its arguments) built by the caller. On a
  // failure reply `problem` carries the server's reason. Threads wait for their answers side by
  // side: one reads for all, the others may send meanwhile. Must not be called with lock() held.
  // A call that waits on the server at most `wait_limit` nanoseconds (vkWaitForFences' timeout, ...)
  // returns VK_TIMEOUT when no answer has come by then and kAnswerGrace: the server may have
  // stopped, and the application asked not to wait longer. A later answer is dropped.
  VkResult request(std::span<const uint8_t> payload, std::vector<uint8_t>& outputs, std::string& problem,
                   std::optional<uint64_t> wait_limit = std::nullopt);
  // Past a wait's own timeout: for the answer's way back from the server.
  static constexpr std::chrono::seconds kAnswerGrace{1};
  // A pipelined call: sent, not answered. False (with `problem`) when the connection is lost.
  bool post(std::span<const uint8_t> payload, std::string& problem);
  // A pipelined call whose payload is `head` followed by `data`. `data` is copied into a free slot
  // of the shared-memory ring (the daemon sends it to the server from there), or, when none is
  // free or it does not fit one, written to the socket after `head`.
  bool post(std::span<const uint8_t> head, std::span<const uint8_t> data, std::string& problem);

  // Receives the bytes the device changed in mapped memory (kMsgVulkanMemory frames, which the
  // server sends before the answer that makes them visible). Called with the session locked.
  using MemorySink = std::function<void(uint64_t memory, uint64_t offset, std::span<const uint8_t> bytes)>;
  void set_memory_sink(MemorySink sink) { memory_sink_ = std::move(sink); }

  // The session's lock: held while a call is sent and while an answer is handed out; the ICD's
  // mapped-memory bookkeeping is under it too.
  std::unique_lock<std::recursive_mutex> lock() { return std::unique_lock(mutex_); }

 private:
  DaemonSession() = default;

  int fd_ = -1;
  FrameDecoder decoder_{kMaxFramePayload, kFrameRing};
  AppWelcomeMsg welcome_;
  struct Answer {
    bool done = false;
    VkResult result = VK_SUCCESS;
    std::vector<uint8_t> outputs;
    std::string problem;
  };
  bool send(std::span<const uint8_t> payload, uint64_t id, uint16_t flags, std::string& problem,
            uint16_t type = vk::kMsgVulkanCall);
  // A kMsgVulkanMemory payload (u64 memory, u64 offset, bytes), to the memory sink.
  void take_memory(std::span<const uint8_t> payload);
  VkResult lose(const std::string& why, std::string& problem);
  // Hands a frame read from the daemon to whoever it is for (lock held).
  void dispatch(Frame& frame);
  // Reads and dispatches one frame, or waits while another thread does (lock held by `lock`), at
  // most until `deadline`.
  void take_turn(std::unique_lock<std::recursive_mutex>& lock, std::string& problem,
                 std::chrono::steady_clock::time_point deadline);

  std::recursive_mutex mutex_;  // one call at a time on the connection
  MemorySink memory_sink_;
  std::condition_variable_any answered_;
  std::map<uint64_t, Answer*> waiting_;  // requests sent and not answered yet
  bool reading_ = false;                 // a thread is reading the daemon's frames for all
  std::string lost_reason_;
  // The shared-memory ring from the daemon; the slots of its lower half (vk::vulkan_ring_layout)
  // carry mapped-memory writes, each busy from its send until the daemon's RingRelease.
  uint8_t* ring_ = nullptr;
  size_t ring_size_ = 0;
  size_t ring_slot_size_ = 0;
  std::vector<bool> slot_busy_;
  uint64_t next_request_ = 1;
  bool lost_ = false;
};

}  // namespace rgpu::icd
