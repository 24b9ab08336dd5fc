#include "cuda_pool_meter.hpp"

#include "cuda_driver.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
// A pool's reserved and used memory, as the driver reports them.
bool measure(CUmemoryPool pool, uint64_t& reserved, uint64_t& used) {
  auto get = Driver::get().fn<CUresult (*)(CUmemoryPool, CUmemPool_attribute, void*)>("cuMemPoolGetAttribute");
  cuuint64_t r = 0, u = 0;
  if (get == nullptr || get(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &r) != CUDA_SUCCESS ||
      get(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &u) != CUDA_SUCCESS)
    return false;
  reserved = r;
  used = u;
  return true;
}
}  // namespace

CUmemoryPool PoolMeter::current_pool() {
  Driver& d = Driver::get();
  auto device_of = d.fn<CUresult (*)(CUdevice*)>("cuCtxGetDevice");
  auto device_of_v2 = d.fn<CUresult (*)(CUdevice*, CUcontext)>("cuCtxGetDevice_v2");  // NULL: the current one
  auto pool_of = d.fn<CUresult (*)(CUmemoryPool*, CUdevice)>("cuDeviceGetMemPool");
  CUdevice device = 0;
  CUmemoryPool pool = nullptr;
  const CUresult known = device_of ? device_of(&device) : device_of_v2 ? device_of_v2(&device, nullptr) : CUDA_ERROR_NOT_SUPPORTED;
  if (known != CUDA_SUCCESS || pool_of == nullptr || pool_of(&pool, device) != CUDA_SUCCESS) return nullptr;
  return pool;
}

bool PoolMeter::reserve(CUmemoryPool pool, uint64_t bytes, uint64_t& reserved) {
  uint64_t pool_reserved = 0, used = 0;
  // What the pool holds unused serves the allocation first; an unknown pool is charged in full.
  const uint64_t need = pool != nullptr && measure(pool, pool_reserved, used) && used <= pool_reserved
                            ? (bytes > pool_reserved - used ? bytes - (pool_reserved - used) : 0)
                            : bytes;
  reserved = need;
  if (need == 0 || budget_->reserve(need)) return true;
  settle_all();  // pools that gave memory back since they were last measured
  return budget_->reserve(need);
}

void PoolMeter::charge_to(Pool& pool, uint64_t reserved) {
  if (reserved > pool.charged) {
    // Held by the driver already: counted even past the limit, so that later allocations fail.
    if (!budget_->reserve(reserved - pool.charged)) budget_->charge(reserved - pool.charged);
  } else {
    budget_->release(pool.charged - reserved);
  }
  pool.charged = reserved;
}

void PoolMeter::settle(CUmemoryPool pool) {
  if (pool == nullptr || is_destroyed(pool)) return;  // a destroyed pool keeps its charge until forgotten
  uint64_t reserved = 0, used = 0;
  if (!measure(pool, reserved, used)) return;  // no pool of the driver's: nothing to keep
  charge_to(pools_[pool], reserved);
}

void PoolMeter::settle_all() {
  for (auto& [pool, entry] : pools_) settle(pool);
}

void PoolMeter::created(CUmemoryPool pool) { pools_[pool].created = true; }

void PoolMeter::destroyed(CUmemoryPool pool, bool allocations_left) {
  auto it = pools_.find(pool);
  if (it == pools_.end()) return;
  if (!allocations_left) return forget(pool);
  it->second.destroyed = true;
  it->second.created = false;  // the driver frees it with its last allocation
}

void PoolMeter::forget(CUmemoryPool pool) {
  auto it = pools_.find(pool);
  if (it == pools_.end()) return;
  budget_->release(it->second.charged);
  pools_.erase(it);
}

bool PoolMeter::is_destroyed(CUmemoryPool pool) const {
  auto it = pools_.find(pool);
  return it != pools_.end() && it->second.destroyed;
}

uint64_t PoolMeter::charged() const {
  uint64_t bytes = 0;
  for (const auto& [pool, entry] : pools_) bytes += entry.charged;
  return bytes;
}

void PoolMeter::release_all() {
  auto destroy = Driver::get().fn<CUresult (*)(CUmemoryPool)>("cuMemPoolDestroy");
  for (const auto& [pool, entry] : pools_) {
    if (!entry.created || destroy == nullptr) continue;
    if (CUresult r = destroy(pool); r != CUDA_SUCCESS) LOG_DEBUG("cleanup: destroying a memory pool failed: %s", error_name(r));
  }
  budget_->release(charged());
  pools_.clear();
}

}  // namespace rgpu::cuda
