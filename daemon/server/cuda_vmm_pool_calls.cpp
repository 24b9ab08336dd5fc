#include "cuda_vmm_pool_calls.hpp"

#include <vector>

#include "cuda_driver.hpp"
#include "cuda_pool_attributes.hpp"
#include "log.hpp"

namespace rgpu::cuda {

CUresult retain_allocation_handle(WireReader& args, WireWriter& out, SessionResources& resources) {
  const uint64_t address = args.get<uint64_t>();
  args.expect_end();
  auto fn = Driver::get().fn<CUresult (*)(CUmemGenericAllocationHandle*, void*)>("cuMemRetainAllocationHandle");
  if (fn == nullptr) return CUDA_ERROR_NOT_SUPPORTED;
  CUmemGenericAllocationHandle handle = 0;
  const CUresult r = fn(&handle, reinterpret_cast<void*>(static_cast<uintptr_t>(address)));
  if (r != CUDA_SUCCESS) return r;
  std::vector<uint64_t> ins{address}, outs{handle};
  resources.record(FN_cuMemRetainAllocationHandle, ins, outs, nullptr);
  out.put<uint64_t>(handle);
  return CUDA_SUCCESS;
}

CUresult pool_attribute(uint32_t function, WireReader& args, WireWriter& out, SessionResources& resources) {
  const auto pool = reinterpret_cast<CUmemoryPool>(static_cast<uintptr_t>(args.get<uint64_t>()));
  const uint32_t attribute = args.get<uint32_t>();
  const size_t size = pool_attribute_size(attribute);
  const char* name = function == FN_cuMemPoolSetAttribute ? "cuMemPoolSetAttribute" : "cuMemPoolGetAttribute";
  if (size == 0) {
    LOG_WARN("%s with attribute %u, which RGPU does not know; refused", name, attribute);
    return CUDA_ERROR_INVALID_VALUE;
  }
  uint64_t value = 0;  // large enough for every attribute's value
  if (function == FN_cuMemPoolSetAttribute) {
    const uint32_t sent = args.get<uint32_t>();
    if (sent != size) {
      LOG_WARN("%s: a value of %u bytes for attribute %u, which takes %zu; refused", name, sent, attribute, size);
      return CUDA_ERROR_INVALID_VALUE;
    }
    std::memcpy(&value, args.bytes(size).data(), size);
  }
  args.expect_end();
  auto fn = Driver::get().fn<CUresult (*)(CUmemoryPool, uint32_t, void*)>(name);
  if (fn == nullptr) return CUDA_ERROR_NOT_SUPPORTED;
  const CUresult r = fn(pool, attribute, &value);
  if (r != CUDA_SUCCESS) return r;
  if (function == FN_cuMemPoolSetAttribute) resources.pool_changed(pool);  // a threshold may give memory back
  else out.bytes(&value, size);
  return CUDA_SUCCESS;
}

}  // namespace rgpu::cuda
