// Threads with an owner: a group joins every thread it started; a stop-signal waiter calls its
// stop function on SIGTERM and otherwise ends with its owner.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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

// In a child of its own: a process-directed signal goes to any thread that does not block it, and
// this test process may have threads of other tests that do not.
TEST(StopOnSignal, CallsStopOnSigterm) {
  const pid_t child = ::fork();
  if (child == 0) {
    std::mutex mutex;
    std::condition_variable called;
    int received = 0;
    StopOnSignal waiter([&](int signal) {
      std::lock_guard lock(mutex);
      received = signal;
      called.notify_all();
    });
    if (::kill(::getpid(), SIGTERM) != 0) _exit(2);
    std::unique_lock lock(mutex);
    if (!called.wait_for(lock, std::chrono::seconds(10), [&] { return received != 0; })) _exit(3);
    _exit(received == SIGTERM ? 0 : 4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child was ended by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(StopOnSignal, EndsWithItsOwnerWhenNoSignalCame) {
  bool stopped = false;
  { StopOnSignal waiter([&](int) { stopped = true; }); }
  EXPECT_FALSE(stopped);
}

}  // namespace
}  // namespace rgpu
