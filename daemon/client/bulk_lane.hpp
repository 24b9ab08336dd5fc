// A further connection to a CUDA session's server that carries large frames on a thread of its
// own: chunks of host-to-device copies and, on an unencrypted connection, requests for chunks of
// device-to-host copies, whose answers a second thread receives straight into the application's
// ring. One TCP stream on loopback moves about 4-5 GB/s; several lanes with threads of their own
// move a process's copies in parallel. The server puts every call back in the application's order.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "keepalive.hpp"
#include "session.hpp"

namespace rgpu::client {

class BulkLane {
 public:
  // Runs a function on the daemon's event loop (thread-safe).
  using Post = std::function<void(std::function<void()>)>;
  // Connects, authenticates and joins the session with `lane_key` on a thread of its own. A lane
  // that cannot join logs why and takes no frames; `lost` runs (on the loop) when a lane that had
  // joined loses its connection with frames given to it.
  // `answered` runs (on the loop) with each answer that came over the lane.
  // `keepalive`: how long the server may leave the lane without progress (a write that moves
  // nothing, data it does not acknowledge) or, where the lane receives, silent though pinged,
  // before the lane is lost.
  BulkLane(SessionOptions options, uint64_t lane_key, std::chrono::milliseconds keepalive, Post post,
           std::function<void(const std::string&)> lost, std::function<void(Frame&&)> answered);
  ~BulkLane();
  // Takes no more frames and ends the connection without reporting it lost (the session ends):
  // does not block; the destructor then joins the threads.
  void stop();
  // The first half of stop(): from now on the connection's end is not reported lost. A session
  // marks all its lanes before it stops any, since the server ends the others when one closes.
  void retire();
  BulkLane(const BulkLane&) = delete;
  BulkLane& operator=(const BulkLane&) = delete;

  // Whether the lane has joined and takes frames.
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  // Whether it also takes requests and receives their answers (an unencrypted connection: one
  // thread writes while another reads).
  bool answers() const { return answers_.load(std::memory_order_acquire); }
  // Where the answer to a request goes: straight into `into` when it fits; `owner` keeps that
  // memory until then.
  struct Answer {
    uint64_t request_id = 0;
    std::span<uint8_t> into;
    std::shared_ptr<void> owner;
  };
  // Queues one encoded frame start and the bytes it borrows; `sent` runs on the loop once both
  // have been written (or the lane is lost). A request (only where answers()) names its answer.
  void send(std::vector<uint8_t> head, std::span<const uint8_t> body, std::function<void()> sent,
            std::optional<Answer> answer = std::nullopt);

 private:
  struct Job {
    std::vector<uint8_t> head;
    std::span<const uint8_t> body;
    std::function<void()> sent;
  };
  void run(SessionOptions options, uint64_t lane_key);
  // The next frame to write; false when the lane stops, or its connection closed or went silent
  // (`closed` says how). On a lane that receives (`pinging`) it pings a quiet server.
  bool next_job(BlockingChannel& channel, bool pinging, Job& job, std::string& closed);
  // Keepalive of a lane that receives: pings once it has been quiet for a third of `keepalive_`;
  // false (with `closed`) once it has been quiet for all of it.
  bool keep_alive(BlockingChannel& channel, std::string& closed);
  void wake();
  bool stopping();
  // The connection to `server` ended (`closed` says how): logged and reported once.
  void fail(const std::string& server, const std::string& closed);
  // The answers' thread: reads frames until the connection ends; returns why it ended.
  std::string receive_answers(BlockingChannel& channel);

  Keepalive keepalive_;  // used by the sending thread
  // When the receiving thread last read a frame (Keepalive::Clock's ticks).
  std::atomic<Keepalive::Clock::rep> heard_{0};
  Post post_;
  std::function<void(const std::string&)> lost_;
  std::function<void(Frame&&)> answered_;
  std::atomic<bool> failed_{false};
  std::atomic<bool> answers_{false};
  std::unordered_map<uint64_t, Answer> awaited_;  // by request id, under mutex_
  std::mutex mutex_;
  int wake_fd_ = -1;  // an eventfd: a job queued, or the lane stopping
  std::deque<Job> jobs_;
  bool stopping_ = false;
  int fd_ = -1;  // the connection's socket once connected (shut down to stop a blocked write)
  std::atomic<bool> ready_{false};
  std::thread thread_;
};

}  // namespace rgpu::client
