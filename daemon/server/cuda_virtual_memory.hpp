// The virtual memory one CUDA session holds (physical allocations, their mappings, reserved
// address ranges), freed with the session; and the physical memory's place in the quota, from
// cuMemCreate until its last handle reference and its last mapping are gone, as the driver holds it.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <map>
#include <memory>

#include "memory_budget.hpp"

namespace rgpu::cuda {

// Not thread-safe: SessionResources calls it under its lock.
class VirtualMemory {
 public:
  explicit VirtualMemory(std::shared_ptr<MemoryBudget> budget) : budget_(std::move(budget)) {}

  // After the driver's success. `bytes` of the quota were reserved before cuMemCreate.
  void created(uint64_t handle, uint64_t bytes);
  void retained(uint64_t handle);
  void released(uint64_t handle);
  void mapped(CUdeviceptr at, uint64_t bytes, uint64_t handle);
  // Every mapping in [at, at + bytes).
  void unmapped(CUdeviceptr at, uint64_t bytes);
  void reserved(CUdeviceptr at, uint64_t bytes);
  void freed(CUdeviceptr at);

  // Physical memory the quota counts.
  uint64_t held() const;
  // Unmaps, releases and frees what is left, on the calling thread.
  void release_all();

 private:
  struct Physical {
    uint64_t bytes;
    int references;
    int mappings;
  };
  struct Mapping {
    uint64_t bytes;
    uint64_t handle;
  };
  // Gives the memory back to the quota once nothing holds it.
  void drop_if_unused(uint64_t handle);

  std::shared_ptr<MemoryBudget> budget_;
  std::map<uint64_t, Physical> physical_;
  std::map<CUdeviceptr, Mapping> mappings_;
  std::map<CUdeviceptr, uint64_t> reservations_;
};

}  // namespace rgpu::cuda
