#include "cuda_virtual_memory.hpp"

#include "cuda_driver.hpp"
#include "log.hpp"

namespace rgpu::cuda {

void VirtualMemory::created(uint64_t handle, uint64_t bytes) { physical_[handle] = Physical{bytes, 1, 0}; }

void VirtualMemory::retained(uint64_t handle) {
  if (auto it = physical_.find(handle); it != physical_.end()) ++it->second.references;
}

void VirtualMemory::released(uint64_t handle) {
  auto it = physical_.find(handle);
  if (it == physical_.end() || it->second.references == 0) return;
  --it->second.references;
  drop_if_unused(handle);
}

void VirtualMemory::mapped(CUdeviceptr at, uint64_t bytes, uint64_t handle) {
  mappings_[at] = Mapping{bytes, handle};
  if (auto it = physical_.find(handle); it != physical_.end()) ++it->second.mappings;
}

void VirtualMemory::unmapped(CUdeviceptr at, uint64_t bytes) {
  for (auto it = mappings_.lower_bound(at); it != mappings_.end() && it->first - at < bytes;) {
    const uint64_t handle = it->second.handle;
    it = mappings_.erase(it);
    if (auto physical = physical_.find(handle); physical != physical_.end() && physical->second.mappings > 0) {
      --physical->second.mappings;
      drop_if_unused(handle);
    }
  }
}

void VirtualMemory::reserved(CUdeviceptr at, uint64_t bytes) { reservations_[at] = bytes; }

void VirtualMemory::freed(CUdeviceptr at) { reservations_.erase(at); }

uint64_t VirtualMemory::held() const {
  uint64_t bytes = 0;
  for (const auto& [handle, physical] : physical_) bytes += physical.bytes;
  return bytes;
}

void VirtualMemory::drop_if_unused(uint64_t handle) {
  auto it = physical_.find(handle);
  if (it == physical_.end() || it->second.references > 0 || it->second.mappings > 0) return;
  budget_->release(it->second.bytes);
  physical_.erase(it);
}

void VirtualMemory::release_all() {
  Driver& d = Driver::get();
  auto unmap = d.fn<CUresult (*)(CUdeviceptr, size_t)>("cuMemUnmap");
  auto release = d.fn<CUresult (*)(CUmemGenericAllocationHandle)>("cuMemRelease");
  auto free_addresses = d.fn<CUresult (*)(CUdeviceptr, size_t)>("cuMemAddressFree");
  for (const auto& [at, mapping] : mappings_)
    if (CUresult r = unmap ? unmap(at, mapping.bytes) : CUDA_ERROR_NOT_SUPPORTED; r != CUDA_SUCCESS)
      LOG_DEBUG("cleanup: unmapping virtual memory failed: %s", error_name(r));
  for (const auto& [handle, physical] : physical_)
    for (int i = 0; i < physical.references && release; ++i) release(handle);
  for (const auto& [at, bytes] : reservations_)
    if (free_addresses) free_addresses(at, bytes);
  budget_->release(held());
  mappings_.clear();
  physical_.clear();
  reservations_.clear();
}

}  // namespace rgpu::cuda
