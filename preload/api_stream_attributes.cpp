// Stream attributes: the value is a union of plain data (an access policy window's device
// address and sizes, a synchronization policy, a priority, memory synchronization domains), sent
// whole; the server takes only the attributes it knows.
#include <cstring>

#include "api_state.hpp"
#include "cuda_client.hpp"

using namespace rgpu::cuda;

namespace {
CUresult set_attribute(uint32_t variant, CUstream stream, CUstreamAttrID attribute, const CUstreamAttrValue* value) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(variant);
  call.in(stream);
  call.in(static_cast<uint32_t>(attribute));
  call.writer().put(*value);
  return call_sync(call, nullptr);
}

CUresult get_attribute(uint32_t variant, CUstream stream, CUstreamAttrID attribute, CUstreamAttrValue* value) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(variant);
  call.out_mask(1u);
  call.in(stream);
  call.in(static_cast<uint32_t>(attribute));
  return call_sync(call, [&](rgpu::WireReader& reader) {
    auto bytes = reader.bytes(sizeof *value);
    std::memcpy(value, bytes.data(), sizeof *value);
  });
}
}  // namespace

RGPU_EXPORT CUresult cuStreamSetAttribute(CUstream stream, CUstreamAttrID attribute, const CUstreamAttrValue* value) {
  return set_attribute(FN_cuStreamSetAttribute, stream, attribute, value);
}
RGPU_EXPORT CUresult cuStreamSetAttribute_ptsz(CUstream stream, CUstreamAttrID attribute,
                                               const CUstreamAttrValue* value) {
  return set_attribute(FN_cuStreamSetAttribute_ptsz, stream, attribute, value);
}
RGPU_EXPORT CUresult cuStreamGetAttribute(CUstream stream, CUstreamAttrID attribute, CUstreamAttrValue* value) {
  return get_attribute(FN_cuStreamGetAttribute, stream, attribute, value);
}
RGPU_EXPORT CUresult cuStreamGetAttribute_ptsz(CUstream stream, CUstreamAttrID attribute, CUstreamAttrValue* value) {
  return get_attribute(FN_cuStreamGetAttribute_ptsz, stream, attribute, value);
}
