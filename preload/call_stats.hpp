// Where an application's time through RGPU goes: with RGPU_CALL_STATS set (to a file, or to 1 for
// standard error), the interpose counts each driver call it sends (waited for or pipelined, and the
// time waited) and the work of keeping managed and mapped memory in step, and prints the table
// when the process exits.
#pragma once

#include <chrono>
#include <cstdint>

namespace rgpu::cuda {

bool call_stats_enabled();
// A call sent to the server: `waited` for its answer for `nanoseconds`, or pipelined.
void count_call(uint32_t function, bool waited, uint64_t nanoseconds);
// Any other work worth counting (`what` a constant string): how often, and how much.
void count_work(const char* what, uint64_t amount);

// Times a waited call while stats are on.
class CallTimer {
 public:
  explicit CallTimer(uint32_t function) : function_(function), on_(call_stats_enabled()) {
    if (on_) start_ = std::chrono::steady_clock::now();
  }
  ~CallTimer() {
    if (on_)
      count_call(function_, true,
                 static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                           std::chrono::steady_clock::now() - start_)
                                           .count()));
  }
  CallTimer(const CallTimer&) = delete;
  CallTimer& operator=(const CallTimer&) = delete;

 private:
  uint32_t function_;
  bool on_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace rgpu::cuda
