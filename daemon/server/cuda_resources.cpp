#include "cuda_resources.hpp"

#include <algorithm>
#include <chrono>

#include "cuda_driver.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
constexpr auto kLaunchSettleInterval = std::chrono::seconds(1);
}  // namespace

uint64_t SessionResources::tracked_bytes() {
  std::lock_guard lock(mutex_);
  uint64_t tracked = 0;
  for (const auto& [pointer, allocation] : allocations_) tracked += allocation.bytes;
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

uint64_t SessionResources::requested_bytes(uint32_t function, const std::vector<uint64_t>& ins) {
  switch (function) {
    case FN_cuMemAlloc_v2:
    case FN_cuMemAllocManaged:
    case FN_cuMemAllocAsync:
    case FN_cuMemAllocAsync_ptsz:
    case FN_cuMemAllocFromPoolAsync:
    case FN_cuMemAllocFromPoolAsync_ptsz: return ins.empty() ? 0 : ins[0];
    case FN_cuMemAllocPitch:
    case FN_cuMemAllocPitch_v2: return ins.size() < 2 ? 0 : ins[0] * ins[1];  // width * height
    default: return 0;
  }
}

CUresult SessionResources::veto(const CallContext& call) {
  const uint64_t bytes = requested_bytes(call.function(), call.ins());
  if (bytes == 0) return CUDA_SUCCESS;
  return budget_->reserve(bytes) ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

void SessionResources::abandon(uint32_t function, const std::vector<uint64_t>& ins) {
  if (uint64_t bytes = requested_bytes(function, ins)) budget_->release(bytes);
}

void SessionResources::record(uint32_t function, const std::vector<uint64_t>& ins, std::vector<uint64_t>& outs,
                              CUcontext context) {
  std::lock_guard lock(mutex_);
  const uint64_t reserved = requested_bytes(function, ins);
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
    case FN_cuMemAllocAsync:
    case FN_cuMemAllocAsync_ptsz:
    case FN_cuMemAllocFromPoolAsync:
    case FN_cuMemAllocFromPoolAsync_ptsz:
      if (!outs.empty()) allocations_[outs[0]] = {reserved, context};
      return;
    case FN_cuMemFree:
    case FN_cuMemFree_v2:
    case FN_cuMemFreeAsync:
    case FN_cuMemFreeAsync_ptsz:
      if (auto it = allocations_.find(ins[0]); it != allocations_.end()) {
        budget_->release(it->second.bytes);
        allocations_.erase(it);
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

void SessionResources::forget_context(CUcontext context) {
  std::erase(contexts_, context);
  for (auto it = allocations_.begin(); it != allocations_.end();) {
    if (it->second.context == context) {
      budget_->release(it->second.bytes);
      it = allocations_.erase(it);
    } else {
      ++it;
    }
  }
  auto in_context = [&](const auto& entry) { return entry.second == context; };
  std::erase_if(streams_, in_context);
  std::erase_if(events_, in_context);
  std::erase_if(modules_, in_context);
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
};

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
    budget_->release(it->second.bytes);
    it = allocations_.erase(it);
  }
}

void SessionResources::release_primary_context_resources(CUcontext primary) {
  std::lock_guard lock(mutex_);
  DriverCalls calls;
  if (calls.set_current) calls.set_current(primary);
  if (calls.ctx_synchronize) calls.ctx_synchronize();
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
                           contexts_.size()};
  free_allocations_if([](const Allocation&) { return true; });
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
  LOG_INFO("freed %zu allocations, %zu streams, %zu events, %zu modules, %zu libraries, %zu contexts", counts[0],
           counts[1], counts[2], counts[3], counts[4], counts[5]);
}

}  // namespace rgpu::cuda
