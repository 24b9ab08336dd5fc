#include "memory_budget.hpp"

#include <algorithm>

namespace rgpu {

bool MemoryBudget::reserve(uint64_t bytes) {
  if (limit == 0) {
    used.fetch_add(bytes);
    return true;
  }
  uint64_t current = used.load();
  do {
    if (current + bytes > limit || current + bytes < current) return false;
  } while (!used.compare_exchange_weak(current, current + bytes));
  return true;
}

void MemoryBudget::release(uint64_t bytes) { used.fetch_sub(std::min(bytes, used.load())); }

}  // namespace rgpu
