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
#include <optional>
#include <vector>

#include "cuda_dispatch.hpp"
#include "cuda_pool_meter.hpp"
#include "cuda_virtual_memory.hpp"
#include "device_memory_meter.hpp"
#include "memory_budget.hpp"

namespace rgpu::cuda {

using MemoryBudget = rgpu::MemoryBudget;

class SessionResources {
 public:
  SessionResources(std::shared_ptr<MemoryBudget> budget, DeviceMap devices)
      : budget_(std::move(budget)), devices_(std::move(devices)), virtual_memory_(budget_), pools_(budget_) {}

  // What the driver says the session holds beyond its allocation calls (module code and globals,
  // lazily loaded kernels, local memory) is charged too, when a meter is set. The driver's own
  // memory is left out: what it held at the first reading (before the first load: the first
  // contexts), and what it grew by while each later context was made, until that context goes.
  void set_meter(std::unique_ptr<DeviceMemoryMeter> meter) { meter_ = std::move(meter); }
  struct Reading {
    uint64_t measured = 0;  // the driver's count for this process
    uint64_t tracked = 0;   // the session's allocations then
  };
  // Around a context's creation: a reading before (none before the first reading), and the
  // context's share after.
  std::optional<Reading> context_creation_begins();
  void context_created(CUcontext context, std::optional<Reading> before);
  // The context is gone (destroyed, or its last primary retain released): its share with it.
  void context_destroyed(CUcontext context);
  // Before a module or library load.
  void before_load();
  // After a module or library load: CUDA_ERROR_OUT_OF_MEMORY (nothing charged) when the quota
  // cannot hold what it took; the caller unloads it. After an unload: gives back what it held.
  CUresult settle_load() { return settle(Settle::Load); }
  // After a launch (which may have loaded its kernel): at most once a second, as a query costs the
  // driver time. Over the quota, the memory is charged anyway (no later allocation fits) and the
  // launch reports CUDA_ERROR_OUT_OF_MEMORY, as a lazily loaded kernel that does not fit does.
  CUresult settle_launch();

  // Before a driver call: CUDA_ERROR_OUT_OF_MEMORY when an allocation would pass the quota; what
  // it reserves is noted in the call.
  CUresult veto(CallContext& call);
  // After a successful generic driver call (context: the calling thread's current context).
  void record(CallContext& call, CUcontext context);
  // After a successful hand-written one.
  void record(uint32_t function, const std::vector<uint64_t>& ins, std::vector<uint64_t>& outs, CUcontext context);
  // After a failed one: gives back what veto() reserved.
  void abandon(const CallContext& call);

  void add_module(CUmodule module, CUcontext context);
  void add_library(CUlibrary library);
  void add_link(CUlinkState link);
  // False when the session did not create `link` (or destroyed it already).
  bool has_link(CUlinkState link);
  bool remove_link(CUlinkState link);
  void add_context(CUcontext context);
  // How many retains of the device's primary context this session holds (the application's ordinal).
  int primary_retains(CUdevice device);
  // cuMemPoolSetAttribute changed a pool (its release threshold may give memory back).
  void pool_changed(CUmemoryPool pool);

  // Frees everything this session's resources in the primary context of `device` (what
  // cuDevicePrimaryCtxReset means for one client of a shared server).
  void release_primary_context_resources(CUcontext primary);
  // Frees everything, on the calling thread. Called once, after the session's threads stopped.
  void release_all();

 private:
  struct Allocation {
    uint64_t bytes;  // 0 for an allocation from a pool: the pool's memory is counted (PoolMeter)
    CUcontext context;
    CUmemoryPool pool = nullptr;
  };
  static uint64_t requested_bytes(const CallContext& call);
  void record_locked(uint32_t function, const std::vector<uint64_t>& ins, std::vector<uint64_t>& outs,
                     CUcontext context, uint64_t reserved);
  // Destroys the texture and surface objects, arrays and mipmapped arrays `which` picks (by context).
  void destroy_arrays_if(const std::function<bool(CUcontext)>& which);
  // An allocation is gone: its quota, or its pool measured again.
  void allocation_gone(const Allocation& allocation);
  // The driver destroyed the context and everything in it: forgets that, without calling it.
  void forget_context(CUcontext context);
  void free_allocations_if(const std::function<bool(const Allocation&)>& which);

  enum class Settle { First, Load, Launch };
  CUresult settle(Settle why);
  std::optional<Reading> read_meter();
  uint64_t tracked_bytes();

  std::shared_ptr<MemoryBudget> budget_;
  DeviceMap devices_;
  std::unique_ptr<DeviceMemoryMeter> meter_;
  std::mutex settle_mutex_;  // guards the four below; taken before mutex_
  uint64_t baseline_ = 0;    // what the driver holds for itself (contexts)
  uint64_t untracked_ = 0;   // charged beyond the allocations
  bool have_baseline_ = false;
  std::map<CUcontext, uint64_t> context_shares_;  // each later context's part of baseline_
  std::atomic<int64_t> last_launch_settle_{0};  // steady clock, ns
  std::mutex mutex_;  // guards what follows
  std::map<CUdeviceptr, Allocation> allocations_;
  std::map<CUstream, CUcontext> streams_;
  std::map<CUevent, CUcontext> events_;
  std::map<CUmodule, CUcontext> modules_;
  std::vector<CUlibrary> libraries_;
  std::set<CUlinkState> links_;
  std::vector<CUcontext> contexts_;
  std::map<CUdevice, int> primary_retains_;  // application's device ordinal -> retain count
  std::map<CUarray, Allocation> arrays_;     // made by cuArrayCreate and cuArray3DCreate
  std::map<CUmipmappedArray, Allocation> mipmaps_;
  std::map<CUtexObject, CUcontext> textures_;
  std::map<CUsurfObject, CUcontext> surfaces_;
  VirtualMemory virtual_memory_;
  PoolMeter pools_;
};

}  // namespace rgpu::cuda
