// The memory pools a CUDA session allocates from, and their place in the quota. A pool holds what
// it has reserved, used or not (freed allocations stay in it up to its release threshold, and a
// trim or a synchronisation gives them back), so the quota counts each pool's reserved memory as
// the driver reports it, not the allocations made from it.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <map>
#include <memory>

#include "memory_budget.hpp"

namespace rgpu::cuda {

// Not thread-safe: SessionResources calls it under its lock.
class PoolMeter {
 public:
  explicit PoolMeter(std::shared_ptr<MemoryBudget> budget) : budget_(std::move(budget)) {}

  // Before an allocation of `bytes` from `pool`: reserves what the pool would have to grow by
  // (`reserved`); false when that does not fit the quota, even once every pool is measured again.
  bool reserve(CUmemoryPool pool, uint64_t bytes, uint64_t& reserved);
  // The pool's reserved memory measured again (after an allocation, a free, a trim, a new
  // threshold), its difference charged or given back.
  void settle(CUmemoryPool pool);
  // Every pool, after a synchronisation (when pools give memory back).
  void settle_all();
  void created(CUmemoryPool pool);
  // cuMemPoolDestroy: the pool goes once its allocations are freed (forget()), keeping its memory until then.
  void destroyed(CUmemoryPool pool, bool allocations_left);
  void forget(CUmemoryPool pool);
  bool is_destroyed(CUmemoryPool pool) const;

  uint64_t charged() const;
  // Destroys the pools the session made and gives back every charge, on the calling thread (its
  // allocations are freed first).
  void release_all();
  // The pool cuMemAllocAsync takes from on this thread: the current pool of the current
  // context's device (nullptr when the driver does not say).
  static CUmemoryPool current_pool();

 private:
  struct Pool {
    uint64_t charged = 0;
    bool created = false;    // by this session, with cuMemPoolCreate
    bool destroyed = false;  // with allocations still out
  };
  void charge_to(Pool& pool, uint64_t reserved);

  std::shared_ptr<MemoryBudget> budget_;
  std::map<CUmemoryPool, Pool> pools_;
};

}  // namespace rgpu::cuda
