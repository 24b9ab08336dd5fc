// The hand-written entry points of virtual memory and memory pools: a handle retained by a device
// address (sent as its number), and pool attributes, whose values' types the attribute decides.
#include <string>

#include "api_state.hpp"
#include "cuda_client.hpp"
#include "cuda_pool_attributes.hpp"

using namespace rgpu::cuda;

RGPU_EXPORT CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle* handle, void* address) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (handle == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_cuMemRetainAllocationHandle);
  call.writer().put<uint64_t>(reinterpret_cast<uintptr_t>(address));
  return exchange(call, [&](rgpu::WireReader& r) { *handle = r.get<uint64_t>(); }, nullptr);
}

namespace {
CUresult unknown_attribute(const char* function, CUmemPool_attribute attribute) {
  const std::string what = std::string(function) + " with attribute " + std::to_string(static_cast<int>(attribute));
  return not_supported(what.c_str());
}
}  // namespace

RGPU_EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attribute, void* value) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const size_t size = pool_attribute_size(attribute);
  if (size == 0) return unknown_attribute("cuMemPoolSetAttribute", attribute);
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_cuMemPoolSetAttribute);
  call.writer().put<uint64_t>(reinterpret_cast<uintptr_t>(pool)).put<uint32_t>(attribute).put<uint32_t>(size);
  call.writer().bytes(value, size);
  return exchange(call, nullptr, nullptr);
}

RGPU_EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attribute, void* value) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const size_t size = pool_attribute_size(attribute);
  if (size == 0) return unknown_attribute("cuMemPoolGetAttribute", attribute);
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_cuMemPoolGetAttribute);
  call.writer().put<uint64_t>(reinterpret_cast<uintptr_t>(pool)).put<uint32_t>(attribute);
  return exchange(call, [&](rgpu::WireReader& r) { std::memcpy(value, r.bytes(size).data(), size); }, nullptr);
}
