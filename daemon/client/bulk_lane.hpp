// A further connection to a CUDA session's server that carries large no-reply frames (chunks of
// host-to-device copies) on a thread of its own. One TCP stream on loopback moves about 4 GB/s
// and the event loop's one thread sends for all; several lanes with a thread each move a
// process's copies in parallel. The server puts every call back in the application's order.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "session.hpp"

namespace rgpu::client {

class BulkLane {
 public:
  // Runs a function on the daemon's event loop (thread-safe).
  using Post = std::function<void(std::function<void()>)>;
  // Connects, authenticates and joins the session with `lane_key` on a thread of its own. A lane
  // that cannot join logs why and takes no frames; `lost` runs (on the loop) when a lane that had
  // joined loses its connection with frames given to it.
  BulkLane(SessionOptions options, uint64_t lane_key, Post post, std::function<void(const std::string&)> lost);
  ~BulkLane();
  BulkLane(const BulkLane&) = delete;
  BulkLane& operator=(const BulkLane&) = delete;

  // Whether the lane has joined and takes frames.
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  // Queues one encoded frame start and the bytes it borrows; `sent` runs on the loop once both
  // have been written (or the lane is lost).
  void send(std::vector<uint8_t> head, std::span<const uint8_t> body, std::function<void()> sent);

 private:
  struct Job {
    std::vector<uint8_t> head;
    std::span<const uint8_t> body;
    std::function<void()> sent;
  };
  void run(SessionOptions options, uint64_t lane_key);
  // The next frame to write; false when the lane stops, or its connection closed (`closed` says how).
  bool next_job(int fd, Job& job, std::string& closed);
  void wake();
  bool stopping();
  void fail(const std::string& why);

  Post post_;
  std::function<void(const std::string&)> lost_;
  std::mutex mutex_;
  int wake_fd_ = -1;  // an eventfd: a job queued, or the lane stopping
  std::deque<Job> jobs_;
  bool stopping_ = false;
  int fd_ = -1;  // the connection's socket once connected (shut down to stop a blocked write)
  std::atomic<bool> ready_{false};
  std::thread thread_;
};

}  // namespace rgpu::client
