// Event loops on threads of their own, for connections one loop thread cannot keep up with
// (bulk lanes: reading several at once is what makes them faster than one connection).
#pragma once

#include <memory>
#include <thread>
#include <vector>

#include "event_loop.hpp"

namespace rgpu {

class LoopThreads {
 public:
  explicit LoopThreads(size_t count);
  // Stops the loops (after the work already posted to them) and waits for their threads.
  ~LoopThreads();
  LoopThreads(const LoopThreads&) = delete;
  LoopThreads& operator=(const LoopThreads&) = delete;

  // The loops in turn; one may outlive this object (stopped) for those that keep it.
  std::shared_ptr<EventLoop> next();

 private:
  std::vector<std::shared_ptr<EventLoop>> loops_;
  std::vector<std::thread> threads_;
  size_t next_ = 0;
};

}  // namespace rgpu
