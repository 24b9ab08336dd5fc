// What the server's driver knows of a managed range: its advice and where it was last prefetched
// (cuMemRangeGetAttribute, cuMemRangeGetAttributes).
#include <cstring>

#include "api_state.hpp"
#include "cuda_client.hpp"

using namespace rgpu::cuda;

RGPU_EXPORT CUresult cuMemRangeGetAttribute(void* data, size_t size, CUmem_range_attribute attribute,
                                            CUdeviceptr pointer, size_t count) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (data == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_cuMemRangeGetAttribute);
  call.writer().put<int32_t>(attribute).put<uint64_t>(size).put<uint64_t>(pointer).put<uint64_t>(count);
  return call_sync(call, [&](rgpu::WireReader& reader) {
    auto bytes = reader.bytes(size);
    std::memcpy(data, bytes.data(), size);
  });
}

RGPU_EXPORT CUresult cuMemRangeGetAttributes(void** data, size_t* sizes, CUmem_range_attribute* attributes,
                                             size_t attribute_count, CUdeviceptr pointer, size_t count) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (attribute_count == 0 || data == nullptr || sizes == nullptr || attributes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < attribute_count; ++i)
    if (CUresult r = cuMemRangeGetAttribute(data[i], sizes[i], attributes[i], pointer, count); r != CUDA_SUCCESS) return r;
  return CUDA_SUCCESS;
}
