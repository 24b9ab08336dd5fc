// The test double's virtual memory management: physical allocations (a memory file each, counted
// as the device's memory), address ranges reserved apart from the allocations, mappings of the
// one onto the other (mmap of the file, so that two mappings of one allocation see the same
// bytes), access per device, and the handles' references.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
constexpr size_t kGranularity = 2u << 20;

struct Physical {
  CUmemAllocationProp prop;
  CUdevice device;
  size_t bytes;
  int fd;
  int references = 1;  // cuMemCreate and each cuMemRetainAllocationHandle
  int mappings = 0;
};
struct Mapping {
  size_t bytes;
  CUmemGenericAllocationHandle handle;
  unsigned long long access[kDeviceCount] = {};
};
std::map<CUmemGenericAllocationHandle, Physical> g_allocations;  // handles are numbers, from next_handle()
std::map<CUdeviceptr, size_t> g_reservations;                    // base, bytes
std::map<CUdeviceptr, Mapping> g_mappings;                       // by base

Physical* find(CUmemGenericAllocationHandle handle) {
  auto it = g_allocations.find(handle);
  return it == g_allocations.end() ? nullptr : &it->second;
}

void drop_if_unused(CUmemGenericAllocationHandle handle) {
  Physical* physical = find(handle);
  if (physical == nullptr || physical->references > 0 || physical->mappings > 0) return;
  ::close(physical->fd);
  give_device_memory(physical->device, physical->bytes);
  g_allocations.erase(handle);
}

bool device_of(const CUmemLocation& location, CUdevice& device) {
  if (location.type != CU_MEM_LOCATION_TYPE_DEVICE || location.id < 0 || location.id >= kDeviceCount) return false;
  device = location.id;
  return true;
}

bool aligned(uint64_t value) { return value % kGranularity == 0; }

// The mappings that cover [at, at + bytes) exactly, one after another; empty when they do not.
std::vector<std::map<CUdeviceptr, Mapping>::iterator> covering(CUdeviceptr at, size_t bytes) {
  std::vector<std::map<CUdeviceptr, Mapping>::iterator> found;
  auto it = g_mappings.find(at);
  CUdeviceptr next = at;
  while (it != g_mappings.end() && it->first == next && next < at + bytes) {
    found.push_back(it);
    next += it->second.bytes;
    ++it;
  }
  if (next != at + bytes) found.clear();
  return found;
}

// The mapping holding `at`.
Mapping* mapping_at(CUdeviceptr at) {
  auto it = g_mappings.upper_bound(at);
  if (it == g_mappings.begin()) return nullptr;
  --it;
  return at < it->first + it->second.bytes ? &it->second : nullptr;
}
}  // namespace

}  // namespace rgpu::cuda_double

using namespace rgpu::cuda_double;

DOUBLE_EXPORT CUresult cuMemGetAllocationGranularity(size_t* granularity, const CUmemAllocationProp* prop,
                                                     CUmemAllocationGranularity_flags option) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CUdevice device;
  if (granularity == nullptr || prop == nullptr || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
      !device_of(prop->location, device) ||
      (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM && option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED))
    return CUDA_ERROR_INVALID_VALUE;
  *granularity = kGranularity;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle* handle, size_t bytes, const CUmemAllocationProp* prop,
                                   unsigned long long flags) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CUdevice device;
  if (handle == nullptr || prop == nullptr || flags != 0 || bytes == 0 || !aligned(bytes) ||
      prop->type != CU_MEM_ALLOCATION_TYPE_PINNED || !device_of(prop->location, device) ||
      prop->win32HandleMetaData != nullptr)
    return CUDA_ERROR_INVALID_VALUE;
  if (!take_device_memory(device, bytes)) return CUDA_ERROR_OUT_OF_MEMORY;
  const int fd = ::memfd_create("rgpu-cuda-double-vmm", MFD_CLOEXEC);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    if (fd >= 0) ::close(fd);
    give_device_memory(device, bytes);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  *handle = next_handle();
  g_allocations.emplace(*handle, Physical{*prop, device, bytes, fd});
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Physical* physical = find(handle);
  if (physical == nullptr || physical->references == 0) return CUDA_ERROR_INVALID_VALUE;
  --physical->references;
  drop_if_unused(handle);  // mapped memory stays until it is unmapped
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle* handle, void* address) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const Mapping* mapping = mapping_at(reinterpret_cast<CUdeviceptr>(address));
  if (handle == nullptr || mapping == nullptr) return CUDA_ERROR_INVALID_VALUE;
  ++find(mapping->handle)->references;
  *handle = mapping->handle;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp* prop,
                                                              CUmemGenericAllocationHandle handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const Physical* physical = find(handle);
  if (prop == nullptr || physical == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *prop = physical->prop;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemAddressReserve(CUdeviceptr* at, size_t bytes, size_t alignment, CUdeviceptr,
                                           unsigned long long flags) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (at == nullptr || bytes == 0 || !aligned(bytes) || flags != 0 || (alignment & (alignment - 1)) != 0)
    return CUDA_ERROR_INVALID_VALUE;
  *at = reserve_addresses(bytes, std::max(alignment, kGranularity));  // the address asked for is only a hint
  if (*at == 0) return CUDA_ERROR_OUT_OF_MEMORY;
  g_reservations.emplace(*at, bytes);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemAddressFree(CUdeviceptr at, size_t bytes) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  auto it = g_reservations.find(at);
  if (it == g_reservations.end() || it->second != bytes) return CUDA_ERROR_INVALID_VALUE;
  auto mapped = g_mappings.lower_bound(at);
  if (mapped != g_mappings.end() && mapped->first < at + bytes) return CUDA_ERROR_INVALID_VALUE;  // unmap first
  g_reservations.erase(it);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemMap(CUdeviceptr at, size_t bytes, size_t offset, CUmemGenericAllocationHandle handle,
                                unsigned long long flags) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Physical* physical = find(handle);
  if (physical == nullptr || physical->references == 0) return CUDA_ERROR_INVALID_HANDLE;
  if (flags != 0 || bytes == 0 || !aligned(at) || !aligned(bytes) || !aligned(offset) || offset > physical->bytes ||
      bytes > physical->bytes - offset)
    return CUDA_ERROR_INVALID_VALUE;
  auto reservation = g_reservations.upper_bound(at);
  if (reservation == g_reservations.begin()) return CUDA_ERROR_INVALID_VALUE;
  --reservation;
  if (at + bytes > reservation->first + reservation->second) return CUDA_ERROR_INVALID_VALUE;
  if (!map_addresses(at, bytes, physical->fd, offset, physical->device)) return CUDA_ERROR_INVALID_VALUE;
  g_mappings.emplace(at, Mapping{bytes, handle});
  ++physical->mappings;
  return CUDA_SUCCESS;
}

// Whole mappings only, as the driver's.
DOUBLE_EXPORT CUresult cuMemUnmap(CUdeviceptr at, size_t bytes) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const auto found = covering(at, bytes);
  if (found.empty()) return CUDA_ERROR_INVALID_VALUE;
  for (auto it : found) {
    const CUmemGenericAllocationHandle handle = it->second.handle;
    unmap_addresses(it->first);
    g_mappings.erase(it);
    --find(handle)->mappings;
    drop_if_unused(handle);
  }
  return CUDA_SUCCESS;
}

// The mapped memory's own device reaches it once it has read and write access.
DOUBLE_EXPORT CUresult cuMemSetAccess(CUdeviceptr at, size_t bytes, const CUmemAccessDesc* descriptors, size_t count) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const auto found = covering(at, bytes);
  if (found.empty() || descriptors == nullptr || count == 0) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < count; ++i) {
    CUdevice device;
    if (!device_of(descriptors[i].location, device)) return CUDA_ERROR_INVALID_DEVICE;
  }
  for (auto it : found) {
    for (size_t i = 0; i < count; ++i) it->second.access[descriptors[i].location.id] = descriptors[i].flags;
    const CUdevice own = find(it->second.handle)->device;
    set_mapping_access(it->first, it->second.access[own] == CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
  }
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemGetAccess(unsigned long long* flags, const CUmemLocation* location, CUdeviceptr at) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const Mapping* mapping = mapping_at(at);
  CUdevice device;
  if (flags == nullptr || location == nullptr || mapping == nullptr || !device_of(*location, device))
    return CUDA_ERROR_INVALID_VALUE;
  *flags = mapping->access[device];
  return CUDA_SUCCESS;
}
