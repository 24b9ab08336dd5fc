// A single-threaded io_uring event loop. Each submitted operation carries its completion handler;
// post() lets other threads (executors, signal handlers) run work on the loop's thread.
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <span>
#include <unordered_set>
#include <vector>

#include "net.hpp"

namespace rgpu {

class EventLoop {
 public:
  // res is the operation's result: >= 0 on success, -errno on failure.
  using Handler = std::function<void(int res)>;

  explicit EventLoop(unsigned entries = 512);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  void accept(int listen_fd, Handler handler);
  void recv(int fd, std::span<uint8_t> buffer, Handler handler);
  void send(int fd, std::span<const uint8_t> data, Handler handler);
  // The msghdr (and what it points to) must stay valid until the handler runs.
  void sendmsg(int fd, const msghdr* message, Handler handler);
  // One-shot readiness: handler gets the poll mask.
  void poll(int fd, short events, Handler handler);
  void after(std::chrono::milliseconds delay, Handler handler);

  // Thread-safe: queues work for the loop thread and wakes it.
  void post(std::function<void()> work);
  // Runs until stop(); handlers run on this thread.
  void run();
  // Thread-safe.
  void stop();

 private:
  io_uring_sqe* next_sqe();
  void submit_with(io_uring_sqe* sqe, Handler handler);
  void arm_wakeup();
  void run_posted();
  bool poll_briefly();

  struct Operation;
  Operation* track(Handler handler);

  io_uring ring_{};
  // Operations submitted and not yet completed; freed (handlers not run) when the loop is destroyed.
  std::unordered_set<Operation*> in_flight_;
  std::vector<std::pair<Operation*, int>> completed_;
  UniqueFd wakeup_fd_;
  uint64_t wakeup_value_ = 0;
  std::mutex posted_mutex_;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> has_posted_{false};
  bool stopping_ = false;
};

}  // namespace rgpu
