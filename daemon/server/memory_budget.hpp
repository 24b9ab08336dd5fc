// Device memory used by all sessions of one token, CUDA and Vulkan alike (`max_memory`).
#pragma once

#include <atomic>
#include <cstdint>

namespace rgpu {

struct MemoryBudget {
  uint64_t limit = 0;  // 0: unlimited
  std::atomic<uint64_t> used{0};
  // Reserves bytes if they fit under the limit.
  bool reserve(uint64_t bytes);
  void release(uint64_t bytes);
};

}  // namespace rgpu
