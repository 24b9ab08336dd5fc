// One client's Vulkan work on this server. Calls run on a thread of the session's own, in the
// order they came, never on the event loop.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "frame.hpp"
#include "vulkan_replay.hpp"

namespace rgpu::vk {

// A GPU of the session: the server's index (GpuList) and its Vulkan enumeration ordinal.
struct SessionGpu {
  uint32_t index = 0;
  uint32_t vulkan_ordinal = 0;
};

class VulkanSession {
 public:
  // Sends one encoded frame to the client; called from the session's thread (must be thread-safe).
  using SendFn = std::function<void(std::vector<uint8_t> frame)>;

  VulkanSession(std::vector<SessionGpu> gpus, std::shared_ptr<MemoryBudget> budget, SendFn send, std::string client);
  ~VulkanSession();
  VulkanSession(const VulkanSession&) = delete;
  VulkanSession& operator=(const VulkanSession&) = delete;

  // Queues a VulkanCall frame (event loop thread).
  void submit(Frame frame);
  // Stops taking calls and joins the session's thread.
  void close();

 private:
  void run();
  void execute(const Frame& frame);
  // The server ordinal of the session's device `session_device`; throws std::out_of_range.
  uint32_t ordinal(uint32_t session_device) const;
  void reply(uint64_t request_id, int32_t result, std::span<const uint8_t> outputs);
  // Device-level calls: replayed; pipelined ones answer nothing, and their first failure
  // fails every later call that waits.
  void replay(const Frame& frame, uint32_t command, WireReader& reader);
  // Runs a blocking wait here while no other call is queued (see run_wait), then on a thread of
  // its own (start_wait), whose end comes back through the call queue; end_wait answers it.
  void run_wait(uint64_t request_id, uint32_t command, Replay::Wait wait);
  void start_wait(uint64_t request_id, uint32_t command, Replay::Wait wait);
  void end_wait(uint64_t request_id, uint32_t command, VkResult result);
  void enqueue(std::function<void()> call);

  std::vector<SessionGpu> gpus_;
  std::shared_ptr<MemoryBudget> budget_;
  SendFn send_;
  std::string client_;
  std::mutex mutex_;
  std::condition_variable wake_;
  // Calls, and the ends of waits run elsewhere, in the order they are to be handled.
  std::deque<std::function<void()>> calls_;
  std::map<uint64_t, std::thread> waiters_;  // blocking waits (Replay::blocking_wait), by serial
  uint64_t next_waiter_ = 0;
  std::atomic<bool> abandon_waits_{false};
  std::atomic<size_t> queued_{0};
  bool closing_ = false;
  std::unique_ptr<Replay> replay_;
  std::string deferred_failure_;  // the first pipelined call that failed, and how
  std::thread thread_;
};

}  // namespace rgpu::vk
