#include "cuda_resources.hpp"

#include <algorithm>
#include <chrono>

#include "cuda_driver.hpp"
#include "cuda_formats.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
constexpr auto kLaunchSettleInterval = std::chrono::seconds(1);
}  // namespace

uint64_t SessionResources::tracked_bytes() {
  std::lock_guard lock(mutex_);
  uint64_t tracked = virtual_memory_.held() + pools_.charged();
  for (const auto& [pointer, allocation] : allocations_) tracked += allocation.bytes;
  for (const auto& [array, allocation] : arrays_) tracked += allocation.bytes;
  for (const auto& [mipmap, allocation] : mipmaps_) tracked += allocation.bytes;
  return tracked;
}

std::optional<SessionResources::Reading> SessionResources::read_meter() {
  const std::optional<uint64_t> measured = meter_ ? meter_->process_bytes() : std::nullopt;
  if (!measured) return std::nullopt;
  return Reading{*measured, tracked_bytes()};
}

std::optional<SessionResources::Reading> SessionResources::context_creation_begins() {
  {
    std::lock_guard settling(settle_mutex_);
    if (!have_baseline_) return std::nullopt;  // the first reading, before the first load, covers it
  }
  settle(Settle::Load);  // growth so far is the session's, not the new context's
  return read_meter();
}

void SessionResources::context_created(CUcontext context, std::optional<Reading> before) {
  if (!before) return;
  const std::optional<Reading> after = read_meter();
  if (!after) return;
  // The driver's growth while the context was made, beyond allocations made meanwhile.
  const int64_t grew = static_cast<int64_t>(after->measured - before->measured) -
                       static_cast<int64_t>(after->tracked - before->tracked);
  const uint64_t share = grew > 0 ? static_cast<uint64_t>(grew) : 0;
  std::lock_guard settling(settle_mutex_);
  context_shares_[context] += share;
  baseline_ += share;
  LOG_DEBUG("a context took %llu bytes of the driver's own", static_cast<unsigned long long>(share));
}

void SessionResources::context_destroyed(CUcontext context) {
  std::lock_guard settling(settle_mutex_);
  auto share = context_shares_.find(context);
  if (share == context_shares_.end()) return;
  baseline_ -= std::min(baseline_, share->second);
  context_shares_.erase(share);
}

void SessionResources::before_load() {
  {
    std::lock_guard settling(settle_mutex_);
    if (have_baseline_) return;
  }
  settle(Settle::First);
}

CUresult SessionResources::settle_launch() {
  if (!meter_) return CUDA_SUCCESS;
  const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  int64_t last = last_launch_settle_.load(std::memory_order_relaxed);
  if (now - last < std::chrono::nanoseconds(kLaunchSettleInterval).count() ||
      !last_launch_settle_.compare_exchange_strong(last, now))
    return CUDA_SUCCESS;
  return settle(Settle::Launch);
}

CUresult SessionResources::settle(Settle why) {
  std::lock_guard settling(settle_mutex_);
  const std::optional<Reading> reading = read_meter();
  if (!reading) return CUDA_SUCCESS;
  if (!have_baseline_) {
    // The first reading, before any module is loaded: what the driver holds beyond the
    // allocations is its own (the contexts). A launch before any load has nothing to charge.
    baseline_ = reading->measured > reading->tracked ? reading->measured - reading->tracked : 0;
    have_baseline_ = true;
    return CUDA_SUCCESS;
  }
  if (why == Settle::First) return CUDA_SUCCESS;
  const uint64_t now =
      reading->measured > baseline_ + reading->tracked ? reading->measured - baseline_ - reading->tracked : 0;
  if (now < untracked_) {
    budget_->release(untracked_ - now);
    untracked_ = now;
    return CUDA_SUCCESS;
  }
  if (now == untracked_ || budget_->reserve(now - untracked_)) {
    untracked_ = now;
    return CUDA_SUCCESS;
  }
  if (why == Settle::Launch) {
    budget_->charge(now - untracked_);
    untracked_ = now;
  }
  return CUDA_ERROR_OUT_OF_MEMORY;
}

namespace {
// At least as much as the packed and compressed formats take, whose elements are not whole channels.
uint64_t bytes_per_channel(uint32_t format) {
  const uint64_t bytes = array_channel_bytes(format);
  return bytes != 0 ? bytes : 4;
}

constexpr uint64_t kUncountable = uint64_t{1} << 62;  // more than any quota: a size that overflows

// An array's bytes as its descriptor sizes it (the driver's own layout may round it up; what the
// driver holds beyond this is counted by the meter): width x height x depth elements, every
// mipmap level halving each dimension but the layers.
template <typename Descriptor>
uint64_t array_bytes(const Descriptor& d, uint64_t flags, uint64_t depth, uint64_t levels) {
  uint32_t format;
  std::memcpy(&format, &d.Format, sizeof format);
  const bool layered = flags & (CUDA_ARRAY3D_LAYERED | CUDA_ARRAY3D_CUBEMAP);
  uint64_t total = 0;
  for (uint64_t level = 0; level < std::min<uint64_t>(levels, 64); ++level) {
    auto at = [&](uint64_t n) { return std::max<uint64_t>(1, n >> level); };
    uint64_t bytes = bytes_per_channel(format) * std::max<uint64_t>(d.NumChannels, 1);
    for (uint64_t extent : {at(d.Width), at(d.Height), layered ? std::max<uint64_t>(depth, 1) : at(depth)})
      if (__builtin_mul_overflow(bytes, extent, &bytes)) return kUncountable;
    if (__builtin_add_overflow(total, bytes, &total) || total > kUncountable) return kUncountable;
  }
  return total;
}

template <typename Descriptor>
uint64_t array_2d_bytes(const CallContext& call) {
  Descriptor d;
  return call.struct_input(0, d) ? array_bytes(d, 0, 1, 1) : 0;
}
template <typename Descriptor>
uint64_t array_3d_bytes(const CallContext& call, uint64_t levels) {
  Descriptor d;
  return call.struct_input(0, d) ? array_bytes(d, d.Flags, d.Depth, levels) : 0;
}
}  // namespace

uint64_t SessionResources::requested_bytes(const CallContext& call) {
  const std::vector<uint64_t>& ins = call.ins();
  switch (call.function()) {
    case FN_cuMemAlloc_v2:
    case FN_cuMemAllocManaged:
    case FN_cuMemCreate: return ins.empty() ? 0 : ins[0];
    case FN_cuMemAllocPitch:
    case FN_cuMemAllocPitch_v2: return ins.size() < 2 ? 0 : ins[0] * ins[1];  // width * height
    case FN_cuArrayCreate: return array_2d_bytes<CUDA_ARRAY_DESCRIPTOR_v1>(call);
    case FN_cuArrayCreate_v2: return array_2d_bytes<CUDA_ARRAY_DESCRIPTOR>(call);
    case FN_cuArray3DCreate: return array_3d_bytes<CUDA_ARRAY3D_DESCRIPTOR_v1>(call, 1);
    case FN_cuArray3DCreate_v2: return array_3d_bytes<CUDA_ARRAY3D_DESCRIPTOR>(call, 1);
    case FN_cuMipmappedArrayCreate: return ins.empty() ? 0 : array_3d_bytes<CUDA_ARRAY3D_DESCRIPTOR>(call, ins[0]);
    default: return 0;
  }
}

namespace {
// The pool an allocation from a pool takes from (nullptr for other calls).
CUmemoryPool pool_of(uint32_t function, const std::vector<uint64_t>& ins) {
  switch (function) {
    case FN_cuMemAllocAsync:
    case FN_cuMemAllocAsync_ptsz: return PoolMeter::current_pool();
    case FN_cuMemAllocFromPoolAsync:
    case FN_cuMemAllocFromPoolAsync_ptsz: return ins.size() < 2 ? nullptr : reinterpret_cast<CUmemoryPool>(ins[1]);
    default: return nullptr;
  }
}

bool from_pool(uint32_t function) {
  return function == FN_cuMemAllocAsync || function == FN_cuMemAllocAsync_ptsz ||
         function == FN_cuMemAllocFromPoolAsync || function == FN_cuMemAllocFromPoolAsync_ptsz;
}
}  // namespace

CUresult SessionResources::veto(CallContext& call) {
  if (from_pool(call.function())) {
    // What the pool would grow by; its memory is counted once the driver has allocated.
    uint64_t reserved = 0;
    std::lock_guard lock(mutex_);
    if (call.ins().empty() || !pools_.reserve(pool_of(call.function(), call.ins()), call.ins()[0], reserved))
      return CUDA_ERROR_OUT_OF_MEMORY;
    call.set_reserved(reserved);
    return CUDA_SUCCESS;
  }
  const uint64_t bytes = requested_bytes(call);
  if (bytes == 0) return CUDA_SUCCESS;
  if (!budget_->reserve(bytes)) return CUDA_ERROR_OUT_OF_MEMORY;
  call.set_reserved(bytes);
  return CUDA_SUCCESS;
}

void SessionResources::abandon(const CallContext& call) { budget_->release(call.reserved()); }

void SessionResources::record(CallContext& call, CUcontext context) {
  std::lock_guard lock(mutex_);
  record_locked(call.function(), call.ins(), call.outs(), context, call.reserved());
}

void SessionResources::record(uint32_t function, const std::vector<uint64_t>& ins, std::vector<uint64_t>& outs,
                              CUcontext context) {
  std::lock_guard lock(mutex_);
  record_locked(function, ins, outs, context, 0);
}

void SessionResources::record_locked(uint32_t function, const std::vector<uint64_t>& ins, std::vector<uint64_t>& outs,
                                     CUcontext context, uint64_t reserved) {
  switch (function) {
    case FN_cuMemAllocPitch:
    case FN_cuMemAllocPitch_v2: {
      // The quota was checked against width * height; the driver used pitch * height.
      const uint64_t actual = outs.size() > 1 ? outs[1] * ins[1] : reserved;
      if (actual > reserved) budget_->reserve(actual - reserved);
      if (!outs.empty()) allocations_[outs[0]] = {actual, context};
      return;
    }
    case FN_cuMemAlloc_v2:
    case FN_cuMemAllocManaged:
      if (!outs.empty()) allocations_[outs[0]] = {reserved, context};
      return;
    case FN_cuMemAllocAsync:
    case FN_cuMemAllocAsync_ptsz:
    case FN_cuMemAllocFromPoolAsync:
    case FN_cuMemAllocFromPoolAsync_ptsz: {
      const CUmemoryPool pool = pool_of(function, ins);
      if (pool == nullptr) {  // a pool the driver did not name: counted as a plain allocation
        if (!outs.empty()) allocations_[outs[0]] = {reserved, context};
        return;
      }
      if (!outs.empty()) allocations_[outs[0]] = {0, context, pool};
      budget_->release(reserved);  // the pool's growth is charged as measured
      pools_.settle(pool);
      return;
    }
    case FN_cuMemCreate:
      if (!outs.empty()) virtual_memory_.created(outs[0], reserved);
      return;
    case FN_cuMemRetainAllocationHandle:
      if (!outs.empty()) virtual_memory_.retained(outs[0]);
      return;
    case FN_cuMemRelease: virtual_memory_.released(ins[0]); return;
    case FN_cuMemMap: virtual_memory_.mapped(ins[0], ins[1], ins[3]); return;
    case FN_cuMemUnmap: virtual_memory_.unmapped(ins[0], ins[1]); return;
    case FN_cuMemAddressReserve:
      if (!outs.empty()) virtual_memory_.reserved(outs[0], ins[0]);
      return;
    case FN_cuMemAddressFree: virtual_memory_.freed(ins[0]); return;
    case FN_cuMemPoolCreate:
      if (!outs.empty()) pools_.created(reinterpret_cast<CUmemoryPool>(outs[0]));
      return;
    case FN_cuMemPoolDestroy: {
      const auto pool = reinterpret_cast<CUmemoryPool>(ins[0]);
      const bool left = std::any_of(allocations_.begin(), allocations_.end(),
                                    [&](const auto& entry) { return entry.second.pool == pool; });
      pools_.destroyed(pool, left);
      return;
    }
    case FN_cuMemPoolTrimTo: pools_.settle(reinterpret_cast<CUmemoryPool>(ins[0])); return;
    case FN_cuStreamSynchronize:
    case FN_cuStreamSynchronize_ptsz:
    case FN_cuCtxSynchronize:
    case FN_cuCtxSynchronize_v2:
    case FN_cuEventSynchronize: pools_.settle_all(); return;
    case FN_cuArrayCreate:
    case FN_cuArrayCreate_v2:
    case FN_cuArray3DCreate:
    case FN_cuArray3DCreate_v2:
      if (!outs.empty()) arrays_[reinterpret_cast<CUarray>(outs[0])] = {reserved, context};
      return;
    case FN_cuMipmappedArrayCreate:
      if (!outs.empty()) mipmaps_[reinterpret_cast<CUmipmappedArray>(outs[0])] = {reserved, context};
      return;
    case FN_cuArrayDestroy:
      if (auto it = arrays_.find(reinterpret_cast<CUarray>(ins[0])); it != arrays_.end()) {
        budget_->release(it->second.bytes);
        arrays_.erase(it);
      }
      return;
    case FN_cuMipmappedArrayDestroy:
      if (auto it = mipmaps_.find(reinterpret_cast<CUmipmappedArray>(ins[0])); it != mipmaps_.end()) {
        budget_->release(it->second.bytes);
        mipmaps_.erase(it);
      }
      return;
    case FN_cuTexObjectCreate:
      if (!outs.empty()) textures_[outs[0]] = context;
      return;
    case FN_cuTexObjectDestroy: textures_.erase(ins[0]); return;
    case FN_cuSurfObjectCreate:
      if (!outs.empty()) surfaces_[outs[0]] = context;
      return;
    case FN_cuSurfObjectDestroy: surfaces_.erase(ins[0]); return;
    case FN_cuMemFree:
    case FN_cuMemFree_v2:
    case FN_cuMemFreeAsync:
    case FN_cuMemFreeAsync_ptsz:
      if (auto it = allocations_.find(ins[0]); it != allocations_.end()) {
        const Allocation gone = it->second;
        allocations_.erase(it);
        allocation_gone(gone);
      }
      return;
    case FN_cuMemGetInfo:
    case FN_cuMemGetInfo_v2:
      // With a quota, the device looks as large as the quota.
      if (budget_->limit() != 0 && outs.size() == 2) {
        const uint64_t left = budget_->limit() - std::min(budget_->limit(), budget_->used());
        outs[0] = std::min(outs[0], left);
        outs[1] = std::min(outs[1], budget_->limit());
      }
      return;
    case FN_cuStreamCreate:
    case FN_cuStreamCreateWithPriority:
      if (!outs.empty()) streams_[reinterpret_cast<CUstream>(outs[0])] = context;
      return;
    case FN_cuStreamDestroy:
    case FN_cuStreamDestroy_v2: streams_.erase(reinterpret_cast<CUstream>(ins[0])); return;
    case FN_cuEventCreate:
      if (!outs.empty()) events_[reinterpret_cast<CUevent>(outs[0])] = context;
      return;
    case FN_cuEventDestroy:
    case FN_cuEventDestroy_v2: events_.erase(reinterpret_cast<CUevent>(ins[0])); return;
    case FN_cuModuleUnload: modules_.erase(reinterpret_cast<CUmodule>(ins[0])); return;
    case FN_cuLibraryUnload: std::erase(libraries_, reinterpret_cast<CUlibrary>(ins[0])); return;
    case FN_cuCtxDestroy_v2: forget_context(reinterpret_cast<CUcontext>(ins[0])); return;
    case FN_cuDevicePrimaryCtxRetain: ++primary_retains_[static_cast<CUdevice>(ins[0])]; return;
    case FN_cuDevicePrimaryCtxRelease_v2:
      if (--primary_retains_[static_cast<CUdevice>(ins[0])] <= 0) primary_retains_.erase(static_cast<CUdevice>(ins[0]));
      return;  // (the context's share leaves with it: primary_released)
    default: return;
  }
}

void SessionResources::allocation_gone(const Allocation& allocation) {
  budget_->release(allocation.bytes);
  if (allocation.pool == nullptr) return;
  const bool left = std::any_of(allocations_.begin(), allocations_.end(),
                                [&](const auto& entry) { return entry.second.pool == allocation.pool; });
  if (pools_.is_destroyed(allocation.pool)) {
    if (!left) pools_.forget(allocation.pool);  // the driver freed the pool with its last allocation
  } else {
    pools_.settle(allocation.pool);
  }
}

void SessionResources::forget_context(CUcontext context) {
  std::erase(contexts_, context);
  for (auto it = allocations_.begin(); it != allocations_.end();) {
    if (it->second.context == context) {
      const Allocation gone = it->second;
      it = allocations_.erase(it);
      allocation_gone(gone);
    } else {
      ++it;
    }
  }
  auto in_context = [&](const auto& entry) { return entry.second == context; };
  std::erase_if(streams_, in_context);
  std::erase_if(events_, in_context);
  std::erase_if(modules_, in_context);
  std::erase_if(textures_, in_context);
  std::erase_if(surfaces_, in_context);
  std::erase_if(arrays_, [&](const auto& entry) {
    if (entry.second.context != context) return false;
    budget_->release(entry.second.bytes);
    return true;
  });
  std::erase_if(mipmaps_, [&](const auto& entry) {
    if (entry.second.context != context) return false;
    budget_->release(entry.second.bytes);
    return true;
  });
}

void SessionResources::add_module(CUmodule module, CUcontext context) {
  std::lock_guard lock(mutex_);
  modules_[module] = context;
}

void SessionResources::add_library(CUlibrary library) {
  std::lock_guard lock(mutex_);
  libraries_.push_back(library);
}

void SessionResources::add_link(CUlinkState link) {
  std::lock_guard lock(mutex_);
  links_.insert(link);
}

bool SessionResources::has_link(CUlinkState link) {
  std::lock_guard lock(mutex_);
  return links_.contains(link);
}

bool SessionResources::remove_link(CUlinkState link) {
  std::lock_guard lock(mutex_);
  return links_.erase(link) == 1;
}

void SessionResources::add_context(CUcontext context) {
  std::lock_guard lock(mutex_);
  contexts_.push_back(context);
}

void SessionResources::pool_changed(CUmemoryPool pool) {
  std::lock_guard lock(mutex_);
  pools_.settle(pool);
}

int SessionResources::primary_retains(CUdevice device) {
  std::lock_guard lock(mutex_);
  auto it = primary_retains_.find(device);
  return it == primary_retains_.end() ? 0 : it->second;
}

namespace {
struct DriverCalls {
  Driver& d = Driver::get();
  CUresult (*set_current)(CUcontext) = d.fn<CUresult (*)(CUcontext)>("cuCtxSetCurrent");
  CUresult (*mem_free)(CUdeviceptr) = d.fn<CUresult (*)(CUdeviceptr)>("cuMemFree_v2");
  CUresult (*stream_destroy)(CUstream) = d.fn<CUresult (*)(CUstream)>("cuStreamDestroy_v2");
  CUresult (*event_destroy)(CUevent) = d.fn<CUresult (*)(CUevent)>("cuEventDestroy_v2");
  CUresult (*module_unload)(CUmodule) = d.fn<CUresult (*)(CUmodule)>("cuModuleUnload");
  CUresult (*library_unload)(CUlibrary) = d.fn<CUresult (*)(CUlibrary)>("cuLibraryUnload");
  CUresult (*link_destroy)(CUlinkState) = d.fn<CUresult (*)(CUlinkState)>("cuLinkDestroy");
  CUresult (*ctx_destroy)(CUcontext) = d.fn<CUresult (*)(CUcontext)>("cuCtxDestroy_v2");
  CUresult (*ctx_synchronize)() = d.fn<CUresult (*)()>("cuCtxSynchronize");
  CUresult (*primary_release)(CUdevice) = d.fn<CUresult (*)(CUdevice)>("cuDevicePrimaryCtxRelease_v2");
  CUresult (*texture_destroy)(CUtexObject) = d.fn<CUresult (*)(CUtexObject)>("cuTexObjectDestroy");
  CUresult (*surface_destroy)(CUsurfObject) = d.fn<CUresult (*)(CUsurfObject)>("cuSurfObjectDestroy");
  CUresult (*array_destroy)(CUarray) = d.fn<CUresult (*)(CUarray)>("cuArrayDestroy");
  CUresult (*mipmap_destroy)(CUmipmappedArray) = d.fn<CUresult (*)(CUmipmappedArray)>("cuMipmappedArrayDestroy");
};

CUcontext context_of(CUcontext context) { return context; }
template <typename T>
CUcontext context_of(const T& owned) {
  return owned.context;
}

template <typename Map, typename Fn>
void destroy_each(Map& map, CUresult (*set_current)(CUcontext), Fn destroy, const char* what) {
  for (auto& [handle, context] : map) {
    if (set_current) set_current(context);
    if (destroy) {
      CUresult r = destroy(handle);
      if (r != CUDA_SUCCESS) LOG_DEBUG("cleanup: destroying a %s failed: %s", what, error_name(r));
    }
  }
  map.clear();
}
}  // namespace

void SessionResources::free_allocations_if(const std::function<bool(const Allocation&)>& which) {
  DriverCalls calls;
  for (auto it = allocations_.begin(); it != allocations_.end();) {
    if (!which(it->second)) {
      ++it;
      continue;
    }
    if (calls.set_current) calls.set_current(it->second.context);
    if (calls.mem_free) calls.mem_free(it->first);
    const Allocation gone = it->second;
    it = allocations_.erase(it);
    allocation_gone(gone);
  }
}

void SessionResources::destroy_arrays_if(const std::function<bool(CUcontext)>& which) {
  DriverCalls calls;
  auto destroy = [&](auto& map, auto* destroy_fn, const char* what) {
    for (auto it = map.begin(); it != map.end();) {
      const CUcontext context = context_of(it->second);
      if (!which(context)) {
        ++it;
        continue;
      }
      if (calls.set_current) calls.set_current(context);
      if (destroy_fn) {
        if (CUresult r = destroy_fn(it->first); r != CUDA_SUCCESS)
          LOG_DEBUG("cleanup: destroying a %s failed: %s", what, error_name(r));
      }
      if constexpr (std::is_same_v<std::decay_t<decltype(it->second)>, Allocation>) budget_->release(it->second.bytes);
      it = map.erase(it);
    }
  };
  // Objects first: they refer to the arrays.
  destroy(textures_, calls.texture_destroy, "texture object");
  destroy(surfaces_, calls.surface_destroy, "surface object");
  destroy(arrays_, calls.array_destroy, "array");
  destroy(mipmaps_, calls.mipmap_destroy, "mipmapped array");
}

void SessionResources::release_primary_context_resources(CUcontext primary) {
  std::lock_guard lock(mutex_);
  DriverCalls calls;
  if (calls.set_current) calls.set_current(primary);
  if (calls.ctx_synchronize) calls.ctx_synchronize();
  destroy_arrays_if([&](CUcontext context) { return context == primary; });
  if (calls.set_current) calls.set_current(primary);
  free_allocations_if([&](const Allocation& a) { return a.context == primary; });
  for (auto* map : {&streams_}) {
    for (auto it = map->begin(); it != map->end();)
      if (it->second == primary) {
        if (calls.stream_destroy) calls.stream_destroy(it->first);
        it = map->erase(it);
      } else {
        ++it;
      }
  }
  for (auto it = events_.begin(); it != events_.end();)
    if (it->second == primary) {
      if (calls.event_destroy) calls.event_destroy(it->first);
      it = events_.erase(it);
    } else {
      ++it;
    }
  for (auto it = modules_.begin(); it != modules_.end();)
    if (it->second == primary) {
      if (calls.module_unload) calls.module_unload(it->first);
      it = modules_.erase(it);
    } else {
      ++it;
    }
}

void SessionResources::release_all() {
  std::lock_guard lock(mutex_);
  DriverCalls calls;
  const size_t counts[] = {allocations_.size(), streams_.size(), events_.size(), modules_.size(), libraries_.size(),
                           contexts_.size(), arrays_.size() + mipmaps_.size()};
  destroy_arrays_if([](CUcontext) { return true; });
  free_allocations_if([](const Allocation&) { return true; });
  pools_.release_all();
  virtual_memory_.release_all();
  destroy_each(streams_, calls.set_current, calls.stream_destroy, "stream");
  destroy_each(events_, calls.set_current, calls.event_destroy, "event");
  destroy_each(modules_, calls.set_current, calls.module_unload, "module");
  for (CUlibrary library : libraries_)
    if (calls.library_unload) calls.library_unload(library);
  libraries_.clear();
  for (CUlinkState link : links_)
    if (calls.link_destroy) calls.link_destroy(link);
  links_.clear();
  for (CUcontext context : contexts_)
    if (calls.ctx_destroy) calls.ctx_destroy(context);
  contexts_.clear();
  for (auto [device, count] : primary_retains_)
    for (int i = 0; i < count && calls.primary_release; ++i) calls.primary_release(devices_.to_real(device));
  primary_retains_.clear();
  if (calls.set_current) calls.set_current(nullptr);
  LOG_INFO("freed %zu allocations, %zu streams, %zu events, %zu modules, %zu libraries, %zu contexts, %zu arrays",
           counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], counts[6]);
}

}  // namespace rgpu::cuda
