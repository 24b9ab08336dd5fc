// Threads with an owner: a group joins every thread it started; a stop-signal waiter calls its
// stop function on SIGTERM and otherwise ends with its owner.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "owned_threads.hpp"

namespace rgpu {
namespace {

TEST(ThreadGroup, JoinsEveryThreadItStarted) {
  std::atomic<int> finished{0};
  {
    ThreadGroup group;
    for (int i = 0; i < 20; ++i)
      group.start([&finished, i] {
        std::this_thread::sleep_for(std::chrono::milliseconds(i % 3));  // some still run when it goes
        ++finished;
      });
  }
  EXPECT_EQ(finished.load(), 20);
}

TEST(StopOnSignal, CallsStopOnSigterm) {
  std::mutex mutex;
  std::condition_variable called;
  int received = 0;
  StopOnSignal waiter([&](int signal) {
    std::lock_guard lock(mutex);
    received = signal;
    called.notify_all();
  });
  ASSERT_EQ(::kill(::getpid(), SIGTERM), 0);
  std::unique_lock lock(mutex);
  EXPECT_TRUE(called.wait_for(lock, std::chrono::seconds(10), [&] { return received != 0; }));
  EXPECT_EQ(received, SIGTERM);
}

TEST(StopOnSignal, EndsWithItsOwnerWhenNoSignalCame) {
  bool stopped = false;
  { StopOnSignal waiter([&](int) { stopped = true; }); }
  EXPECT_FALSE(stopped);
}

}  // namespace
}  // namespace rgpu
