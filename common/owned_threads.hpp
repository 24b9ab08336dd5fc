// Threads with an owner: blocking work started from an event loop (a handshake, stopping a
// connection), and the wait for a stopping signal. Each is joined by its owner, never detached.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

namespace rgpu {

// Runs each piece of work on a thread of its own. Threads that have finished are joined when the
// next one starts; the others when the group is destroyed, which waits for them (so the work must
// end by itself: give blocking calls a time limit).
class ThreadGroup {
 public:
  ThreadGroup() = default;
  ~ThreadGroup();
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;

  void start(std::function<void()> work);

 private:
  struct Entry {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::mutex mutex_;  // guards threads_
  std::list<Entry> threads_;
};

// Blocks SIGINT and SIGTERM in the calling thread (and the threads it starts from then on); call it
// before any other thread exists, so that no thread can be killed by them.
void block_stop_signals();

// Waits on a thread of its own for SIGINT or SIGTERM (see block_stop_signals) and then calls `stop`
// (which must be safe from another thread). The destructor ends the wait if no signal came and
// joins the thread.
class StopOnSignal {
 public:
  explicit StopOnSignal(std::function<void(int signal)> stop);
  ~StopOnSignal();
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;

 private:
  std::atomic<bool> leaving_{false};
  std::thread thread_;
};

}  // namespace rgpu
