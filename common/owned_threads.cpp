#include "owned_threads.hpp"

#include <pthread.h>
#include <signal.h>

namespace rgpu {

ThreadGroup::~ThreadGroup() {
  std::list<Entry> all;
  {
    std::lock_guard lock(mutex_);
    all.swap(threads_);
  }
  for (auto& entry : all) entry.thread.join();
}

void ThreadGroup::start(std::function<void()> work) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::list<Entry> finished;
  std::lock_guard lock(mutex_);
  for (auto it = threads_.begin(); it != threads_.end();) {
    auto next = std::next(it);
    if (it->done->load(std::memory_order_acquire)) finished.splice(finished.end(), threads_, it);
    it = next;
  }
  threads_.push_back(Entry{std::thread([work = std::move(work), done] {
                             work();
                             done->store(true, std::memory_order_release);
                           }),
                           done});
  for (auto& entry : finished) entry.thread.join();  // already at their end
}

namespace {
sigset_t stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  return signals;
}
}  // namespace

void block_stop_signals() {
  const sigset_t signals = stop_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

StopOnSignal::StopOnSignal(std::function<void(int)> stop) {
  block_stop_signals();
  thread_ = std::thread([this, stop = std::move(stop)] {
    const sigset_t signals = stop_signals();
    int received = 0;
    sigwait(&signals, &received);
    if (!leaving_.load()) stop(received);
  });
}

StopOnSignal::~StopOnSignal() {
  leaving_.store(true);
  // Ends the wait if no signal came (if one did, the thread has ended or is ending).
  pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

}  // namespace rgpu
