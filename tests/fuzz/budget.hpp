// A token's memory budget as a worker holds it: the main process's block, attached at slot 0.
#pragma once

#include <unistd.h>

#include <memory>

#include "memory_budget.hpp"

namespace rgpu::fuzz {

struct Budget {
  std::shared_ptr<MemoryBudget> main;    // what the server's main process sees
  std::shared_ptr<MemoryBudget> worker;  // what the session counts with
};

inline const Budget& worker_budget(uint64_t limit) {
  static const Budget budget = [limit] {
    Budget b;
    b.main = MemoryBudget::create_shared(limit, 1);
    b.worker = MemoryBudget::attach(::dup(b.main->memfd()), b.main->take_slot());
    return b;
  }();
  return budget;
}

}  // namespace rgpu::fuzz
