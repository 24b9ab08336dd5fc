// Inside a worker process: the one application session it runs (CUDA or Vulkan) and that
// session's connections, adopted from the main process: its own connection, then its bulk lanes.
// Any of them closing ends the session, and with it the worker.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bulk_lane_reader.hpp"
#include "cuda_session.hpp"
#include "event_loop.hpp"
#include "frame_link.hpp"
#include "loop_threads.hpp"
#include "memory_budget.hpp"
#include "vulkan_session.hpp"
#include "worker_protocol.hpp"

namespace rgpu {

class WorkerSession {
 public:
  // Starts the API's session on the GPUs `start` names; throws std::runtime_error saying why not.
  // `on_end` runs on the loop's thread, once, when the session is over.
  WorkerSession(EventLoop& loop, const WorkerStartMsg& start, std::shared_ptr<MemoryBudget> budget,
                std::function<void(const std::string& reason)> on_end);
  ~WorkerSession();
  WorkerSession(const WorkerSession&) = delete;
  WorkerSession& operator=(const WorkerSession&) = delete;

  // On the loop's thread. A TLS connection arrives with its second handshake done.
  void adopt(WorkerRole role, FrameLink::Handover connection);
  bool has_connection() const { return link_ != nullptr; }
  // Ends the session (and every connection of it).
  void end(const std::string& reason);
  // After the end, off the loop: frees what the session left (and logs what), as far as the GPU
  // lets it; may block behind work still running.
  void release();

 private:
  void on_frame(Frame&& frame);
  void reply_error(uint64_t id, ErrorCode code, const std::string& message);

  EventLoop& loop_;
  std::string client_;
  std::function<void(const std::string&)> on_end_;
  std::shared_ptr<cuda::CudaSession> cuda_;
  std::shared_ptr<vk::VulkanSession> vulkan_;
  std::shared_ptr<FrameLink> link_;  // the session's own connection
  std::unique_ptr<LoopThreads> lane_loops_;
  std::vector<std::shared_ptr<BulkLaneReader>> lanes_;
  bool ended_ = false;
};

}  // namespace rgpu
