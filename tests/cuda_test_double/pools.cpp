// The test double's memory pools: a default and a current pool per device, pools made with
// cuMemPoolCreate, the memory each reserves (grown in 2 MiB steps as allocations need it, kept
// when they are freed, given back at synchronisations down to the release threshold, or by
// cuMemPoolTrimTo), their attributes and access.
#include <algorithm>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
constexpr uint64_t kPoolStep = 2u << 20;

struct Pool {
  CUmemPoolProps props{};
  CUdevice device = 0;
  bool is_default = false;
  bool destroyed = false;  // by cuMemPoolDestroy, with allocations still out
  uint64_t reserved = 0, used = 0, reserved_high = 0, used_high = 0;
  uint64_t threshold = 0;
  int reuse[3] = {1, 1, 1};  // follow event dependencies, opportunistic, internal dependencies
  unsigned long long access[kDeviceCount] = {};
};
Registry<CUmemoryPool, Pool> g_pools;
CUmemoryPool g_default[kDeviceCount] = {};
CUmemoryPool g_current[kDeviceCount] = {};

CUmemoryPool default_pool(CUdevice device) {
  if (g_default[device] == nullptr) {
    Pool pool;
    pool.device = device;
    pool.is_default = true;
    pool.props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    pool.props.location = {CU_MEM_LOCATION_TYPE_DEVICE, device};
    pool.access[device] = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    g_default[device] = g_pools.add(pool);
  }
  return g_default[device];
}

// The pool's reserved memory that no allocation uses counts as the device's.
void resize(Pool& pool, uint64_t reserved) {
  const uint64_t idle_before = pool.reserved - pool.used;
  pool.reserved = reserved;
  const uint64_t idle_after = pool.reserved - pool.used;
  if (idle_after > idle_before) take_device_memory(pool.device, idle_after - idle_before);
  else give_device_memory(pool.device, idle_before - idle_after);
  pool.reserved_high = std::max(pool.reserved_high, pool.reserved);
}

void shrink_to(CUmemoryPool handle, Pool& pool, uint64_t keep) {
  resize(pool, std::max(pool.used, std::min(pool.reserved, keep)));
  if (pool.destroyed && pool.used == 0) {
    resize(pool, 0);
    g_pools.remove(handle);
  }
}

bool device_location(const CUmemLocation* location, CUdevice& device) {
  if (location == nullptr || location->type != CU_MEM_LOCATION_TYPE_DEVICE || location->id < 0 ||
      location->id >= kDeviceCount)
    return false;
  device = location->id;
  return true;
}

CUresult check_pool(CUmemoryPool handle, Pool*& pool) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  pool = g_pools.find(handle);
  return pool == nullptr || pool->destroyed ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}
}  // namespace

CUmemoryPool current_pool(CUdevice device) {
  if (g_current[device] == nullptr) g_current[device] = default_pool(device);
  return g_current[device];
}

CUresult allocate_from_pool(CUcontext context, CUmemoryPool handle, size_t bytes, CUdeviceptr& pointer) {
  Pool* pool = g_pools.find(handle);
  if (pool == nullptr || pool->destroyed || pool->device != find_context(context)->device) return CUDA_ERROR_INVALID_VALUE;
  const uint64_t pages = (bytes + kDevicePage - 1) / kDevicePage * kDevicePage;
  // Grown as needed, in steps; the allocation's own pages are counted by the allocation.
  if (pool->used + pages > pool->reserved) {
    const uint64_t grown = (pool->used + pages + kPoolStep - 1) / kPoolStep * kPoolStep;
    if (pool->props.maxSize != 0 && grown > pool->props.maxSize) return CUDA_ERROR_OUT_OF_MEMORY;
    if (!take_device_memory(pool->device, grown - pool->reserved)) return CUDA_ERROR_OUT_OF_MEMORY;
    give_device_memory(pool->device, grown - pool->reserved);
    resize(*pool, grown);
  }
  give_device_memory(pool->device, pages);  // from idle to in use: the allocation counts them again
  pool->used += pages;
  pool->used_high = std::max(pool->used_high, pool->used);
  if (CUresult r = allocate_pool_memory(context, bytes, handle, pointer); r != CUDA_SUCCESS) {
    pool->used -= pages;
    take_device_memory(pool->device, pages);
    return r;
  }
  return CUDA_SUCCESS;
}

void pool_memory_freed(CUmemoryPool handle, size_t bytes) {
  Pool* pool = g_pools.find(handle);
  if (pool == nullptr) return;
  pool->used -= std::min<uint64_t>(bytes, pool->used);
  take_device_memory(pool->device, bytes);  // idle in the pool now
  if (pool->destroyed) shrink_to(handle, *pool, 0);
}

void release_pool_memory() {
  for (CUmemoryPool handle : g_pools.handles_if([](const Pool&) { return true; })) {
    Pool& pool = *g_pools.find(handle);
    shrink_to(handle, pool, pool.threshold);
  }
}

}  // namespace rgpu::cuda_double

using namespace rgpu::cuda_double;

DOUBLE_EXPORT CUresult cuMemPoolCreate(CUmemoryPool* handle, const CUmemPoolProps* props) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CUdevice device = 0;
  if (handle == nullptr || props == nullptr || props->allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
      !device_location(&props->location, device) || props->win32SecurityAttributes != nullptr)
    return CUDA_ERROR_INVALID_VALUE;
  Pool pool;
  pool.props = *props;
  pool.device = device;
  pool.access[device] = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  *handle = g_pools.add(pool);
  return CUDA_SUCCESS;
}

// A pool with allocations still out goes once they are freed.
DOUBLE_EXPORT CUresult cuMemPoolDestroy(CUmemoryPool handle) {
  auto lock = lock_driver();
  Pool* pool = nullptr;
  if (CUresult r = check_pool(handle, pool); r != CUDA_SUCCESS) return r;
  if (pool->is_default) return CUDA_ERROR_INVALID_VALUE;
  if (g_current[pool->device] == handle) g_current[pool->device] = default_pool(pool->device);
  pool->destroyed = true;
  shrink_to(handle, *pool, 0);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr* pointer, size_t bytes, CUmemoryPool pool, CUstream stream) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_stream(stream, context); r != CUDA_SUCCESS) return r;
  if (pointer == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  return allocate_from_pool(context, pool, bytes, *pointer);
}

DOUBLE_EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool handle, size_t keep) {
  auto lock = lock_driver();
  Pool* pool = nullptr;
  if (CUresult r = check_pool(handle, pool); r != CUDA_SUCCESS) return r;
  shrink_to(handle, *pool, keep);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool handle, CUmemPool_attribute attribute, void* value) {
  auto lock = lock_driver();
  Pool* pool = nullptr;
  if (CUresult r = check_pool(handle, pool); r != CUDA_SUCCESS) return r;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  switch (attribute) {
    case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
      std::memcpy(&pool->reuse[attribute - CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES], value, sizeof(int));
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD: std::memcpy(&pool->threshold, value, sizeof(cuuint64_t)); return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
    case CU_MEMPOOL_ATTR_USED_MEM_HIGH: {
      cuuint64_t reset;
      std::memcpy(&reset, value, sizeof reset);
      if (reset != 0) return CUDA_ERROR_INVALID_VALUE;  // only a reset to the current value
      if (attribute == CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH) pool->reserved_high = pool->reserved;
      else pool->used_high = pool->used;
      return CUDA_SUCCESS;
    }
    default: return CUDA_ERROR_INVALID_VALUE;
  }
}

DOUBLE_EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool handle, CUmemPool_attribute attribute, void* value) {
  auto lock = lock_driver();
  Pool* pool = nullptr;
  if (CUresult r = check_pool(handle, pool); r != CUDA_SUCCESS) return r;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  cuuint64_t number = 0;
  switch (attribute) {
    case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
      std::memcpy(value, &pool->reuse[attribute - CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES], sizeof(int));
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD: number = pool->threshold; break;
    case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT: number = pool->reserved; break;
    case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH: number = pool->reserved_high; break;
    case CU_MEMPOOL_ATTR_USED_MEM_CURRENT: number = pool->used; break;
    case CU_MEMPOOL_ATTR_USED_MEM_HIGH: number = pool->used_high; break;
    default: return CUDA_ERROR_INVALID_VALUE;
  }
  std::memcpy(value, &number, sizeof number);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemPoolSetAccess(CUmemoryPool handle, const CUmemAccessDesc* descriptors, size_t count) {
  auto lock = lock_driver();
  Pool* pool = nullptr;
  if (CUresult r = check_pool(handle, pool); r != CUDA_SUCCESS) return r;
  if (descriptors == nullptr && count != 0) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < count; ++i) {
    CUdevice device = 0;
    if (!device_location(&descriptors[i].location, device)) return CUDA_ERROR_INVALID_VALUE;
    if (device == pool->device && descriptors[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
      return CUDA_ERROR_INVALID_VALUE;  // its own device keeps read and write access
  }
  for (size_t i = 0; i < count; ++i) pool->access[descriptors[i].location.id] = descriptors[i].flags;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemPoolGetAccess(CUmemAccess_flags* flags, CUmemoryPool handle, CUmemLocation* location) {
  auto lock = lock_driver();
  Pool* pool = nullptr;
  if (CUresult r = check_pool(handle, pool); r != CUDA_SUCCESS) return r;
  CUdevice device = 0;
  if (flags == nullptr || !device_location(location, device)) return CUDA_ERROR_INVALID_VALUE;
  *flags = static_cast<CUmemAccess_flags>(pool->access[device]);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool* pool, CUdevice device) {
  auto lock = lock_driver();
  if (CUresult r = check_device(device); r != CUDA_SUCCESS) return r;
  if (pool == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *pool = default_pool(device);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuDeviceGetMemPool(CUmemoryPool* pool, CUdevice device) {
  auto lock = lock_driver();
  if (CUresult r = check_device(device); r != CUDA_SUCCESS) return r;
  if (pool == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *pool = current_pool(device);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuDeviceSetMemPool(CUdevice device, CUmemoryPool handle) {
  auto lock = lock_driver();
  if (CUresult r = check_device(device); r != CUDA_SUCCESS) return r;
  Pool* pool = nullptr;
  if (CUresult r = check_pool(handle, pool); r != CUDA_SUCCESS) return r;
  if (pool->device != device) return CUDA_ERROR_INVALID_DEVICE;
  g_current[device] = handle;
  return CUDA_SUCCESS;
}

// The location forms (CUDA 13) of the three above, for device memory.
namespace {
CUresult pool_of_location(CUmemoryPool* pool, const CUmemLocation* location, CUmemAllocationType type,
                          CUmemoryPool (*which)(CUdevice)) {
  CUdevice device = 0;
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (pool == nullptr || !device_location(location, device) || type != CU_MEM_ALLOCATION_TYPE_PINNED)
    return CUDA_ERROR_INVALID_VALUE;
  *pool = which(device);
  return CUDA_SUCCESS;
}
}  // namespace

DOUBLE_EXPORT CUresult cuMemGetDefaultMemPool(CUmemoryPool* pool, CUmemLocation* location, CUmemAllocationType type) {
  auto lock = lock_driver();
  return pool_of_location(pool, location, type, default_pool);
}

DOUBLE_EXPORT CUresult cuMemGetMemPool(CUmemoryPool* pool, CUmemLocation* location, CUmemAllocationType type) {
  auto lock = lock_driver();
  return pool_of_location(pool, location, type, current_pool);
}

DOUBLE_EXPORT CUresult cuMemSetMemPool(CUmemLocation* location, CUmemAllocationType type, CUmemoryPool handle) {
  auto lock = lock_driver();
  CUdevice device = 0;
  Pool* pool = nullptr;
  if (CUresult r = check_pool(handle, pool); r != CUDA_SUCCESS) return r;
  if (!device_location(location, device) || type != CU_MEM_ALLOCATION_TYPE_PINNED || pool->device != device)
    return CUDA_ERROR_INVALID_VALUE;
  g_current[device] = handle;
  return CUDA_SUCCESS;
}
