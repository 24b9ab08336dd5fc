#include "parallel_copy.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

namespace rgpu {

namespace {
// Below this a copy is not worth waking anybody for.
constexpr size_t kMinParallelBytes = 1u << 20;
// Parts are at least this large and aligned to it (whole pages, whole cache lines).
constexpr size_t kPartAlign = 64u << 10;
constexpr unsigned kMaxHelpers = 3;

struct Done {
  std::mutex mutex;
  std::condition_variable all_done;
  size_t left = 0;
};

struct Part {
  uint8_t* dst;
  const uint8_t* src;
  size_t bytes;
  Done* done;
};

// The helpers of one process. Loaded into applications: never destroyed (threads may still wait
// on it at exit), and made anew in a forked child, which has none of its parent's threads.
class Helpers {
 public:
  // No lock here: a fork() while another thread held it would leave the child's copies stuck.
  static Helpers* for_this_process() {
    static std::atomic<Helpers*> current{nullptr};
    Helpers* helpers = current.load(std::memory_order_acquire);
    if (helpers != nullptr && helpers->pid_ == ::getpid()) return helpers;
    auto* made = new Helpers();
    // Two threads may make them at once: the one that loses leaves its idle helpers be.
    return current.compare_exchange_strong(helpers, made, std::memory_order_acq_rel) ? made : helpers;
  }

  unsigned count() const { return count_; }

  void run(std::deque<Part> parts) {
    {
      std::lock_guard lock(mutex_);
      for (Part& part : parts) queue_.push_back(part);
    }
    work_.notify_all();
  }

 private:
  Helpers() : pid_(::getpid()) {
    const unsigned wanted = std::clamp(std::thread::hardware_concurrency() / 4, 1u, kMaxHelpers);
    try {
      for (; count_ < wanted; ++count_) std::thread([this] { work(); }).detach();
    } catch (const std::system_error&) {
      // No more threads to be had: copy with those there are (the caller alone, if none).
    }
  }

  void work() {
    for (;;) {
      Part part;
      {
        std::unique_lock lock(mutex_);
        work_.wait(lock, [&] { return !queue_.empty(); });
        part = queue_.front();
        queue_.pop_front();
      }
      std::memcpy(part.dst, part.src, part.bytes);
      std::lock_guard lock(part.done->mutex);
      if (--part.done->left == 0) part.done->all_done.notify_one();
    }
  }

  const pid_t pid_;
  unsigned count_ = 0;
  std::mutex mutex_;
  std::condition_variable work_;
  std::deque<Part> queue_;
};
}  // namespace

void parallel_copy(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;  // the pointers of an empty copy may be null, which memcpy may not take
  Helpers* helpers = bytes >= kMinParallelBytes ? Helpers::for_this_process() : nullptr;
  if (helpers == nullptr || helpers->count() == 0) {
    std::memcpy(dst, src, bytes);
    return;
  }
  auto* to = static_cast<uint8_t*>(dst);
  const auto* from = static_cast<const uint8_t*>(src);
  // The caller copies a share too: helpers + 1 parts.
  const size_t shares = helpers->count() + 1;
  const size_t part = std::max(kPartAlign, (bytes / shares + kPartAlign - 1) / kPartAlign * kPartAlign);
  Done done;
  std::deque<Part> given;
  size_t at = part;  // the first part is the caller's
  for (; at < bytes; at += part) given.push_back(Part{to + at, from + at, std::min(part, bytes - at), &done});
  done.left = given.size();
  helpers->run(std::move(given));
  std::memcpy(to, from, std::min(part, bytes));
  std::unique_lock lock(done.mutex);
  done.all_done.wait(lock, [&] { return done.left == 0; });
}

}  // namespace rgpu
