// Everything one client session created on the server's GPUs, so that it can be freed when the
// client disconnects or dies, and the token's max_memory quota.
#pragma once

#include <cuda.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <vector>

#include "cuda_dispatch.hpp"
#include "memory_budget.hpp"

namespace rgpu::cuda {

using MemoryBudget = rgpu::MemoryBudget;

class SessionResources {
 public:
  SessionResources(std::shared_ptr<MemoryBudget> budget, DeviceMap devices)
      : budget_(std::move(budget)), devices_(std::move(devices)) {}

  // Before a driver call: CUDA_ERROR_OUT_OF_MEMORY when an allocation would pass the quota.
  CUresult veto(const CallContext& call);
  // After a successful driver call (context: the calling thread's current context).
  void record(uint32_t function, const std::vector<uint64_t>& ins, std::vector<uint64_t>& outs, CUcontext context);
  // After a failed one: gives back what veto() reserved.
  void abandon(uint32_t function, const std::vector<uint64_t>& ins);

  void add_module(CUmodule module, CUcontext context);
  void add_library(CUlibrary library);
  void add_link(CUlinkState link);
  // False when the session did not create `link` (or destroyed it already).
  bool has_link(CUlinkState link);
  bool remove_link(CUlinkState link);
  void add_context(CUcontext context);
  // How many retains of the device's primary context this session holds (the application's ordinal).
  int primary_retains(CUdevice device);

  // Frees everything this session's resources in the primary context of `device` (what
  // cuDevicePrimaryCtxReset means for one client of a shared server).
  void release_primary_context_resources(CUcontext primary);
  // Frees everything, on the calling thread. Called once, after the session's threads stopped.
  void release_all();

 private:
  struct Allocation {
    uint64_t bytes;
    CUcontext context;
  };
  static uint64_t requested_bytes(uint32_t function, const std::vector<uint64_t>& ins);
  // The driver destroyed the context and everything in it: forgets that, without calling it.
  void forget_context(CUcontext context);
  void free_allocations_if(const std::function<bool(const Allocation&)>& which);

  std::shared_ptr<MemoryBudget> budget_;
  DeviceMap devices_;
  std::mutex mutex_;
  std::map<CUdeviceptr, Allocation> allocations_;
  std::map<CUstream, CUcontext> streams_;
  std::map<CUevent, CUcontext> events_;
  std::map<CUmodule, CUcontext> modules_;
  std::vector<CUlibrary> libraries_;
  std::set<CUlinkState> links_;
  std::vector<CUcontext> contexts_;
  std::map<CUdevice, int> primary_retains_;  // application's device ordinal -> retain count
};

}  // namespace rgpu::cuda
