// Stream and kernel node attributes: the value is a union of plain data (an access policy window's
// device address and sizes, a synchronization policy, a priority, cluster dimensions, memory
// synchronization domains), sent whole; the server takes only the attributes of plain values. A
// kernel node attribute that carries a handle or pointer of another object is not sent.
#include <cstring>

#include "api_state.hpp"
#include "cuda_client.hpp"
#include "cuda_launch_attributes.hpp"
#include "log.hpp"

using namespace rgpu::cuda;

namespace {
CUresult set_attribute(uint32_t variant, const void* handle, CUlaunchAttributeID attribute,
                       const CUlaunchAttributeValue* value) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(variant);
  call.in(handle);
  call.in(static_cast<uint32_t>(attribute));
  call.writer().put(*value);
  return call_sync(call, nullptr);
}

CUresult get_attribute(uint32_t variant, const void* handle, CUlaunchAttributeID attribute,
                       CUlaunchAttributeValue* value) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(variant);
  call.out_mask(1u);
  call.in(handle);
  call.in(static_cast<uint32_t>(attribute));
  return call_sync(call, [&](rgpu::WireReader& reader) {
    auto bytes = reader.bytes(sizeof *value);
    std::memcpy(value, bytes.data(), sizeof *value);
  });
}

// Events to record and device-updatable nodes' device handles are not forwarded (logged).
bool kernel_node_attribute_travels(const char* name, CUkernelNodeAttrID attribute) {
  if (plain_kernel_node_attribute(attribute)) return true;
  LOG_WARN("%s: kernel node attribute %d carries a handle or pointer, or is unknown: not forwarded", name,
           static_cast<int>(attribute));
  return false;
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

RGPU_EXPORT CUresult cuGraphKernelNodeSetAttribute(CUgraphNode node, CUkernelNodeAttrID attribute,
                                                   const CUkernelNodeAttrValue* value) {
  if (!kernel_node_attribute_travels("cuGraphKernelNodeSetAttribute", attribute)) return CUDA_ERROR_NOT_SUPPORTED;
  return set_attribute(FN_cuGraphKernelNodeSetAttribute, node, attribute, value);
}
RGPU_EXPORT CUresult cuGraphKernelNodeGetAttribute(CUgraphNode node, CUkernelNodeAttrID attribute,
                                                   CUkernelNodeAttrValue* value) {
  if (!kernel_node_attribute_travels("cuGraphKernelNodeGetAttribute", attribute)) return CUDA_ERROR_NOT_SUPPORTED;
  return get_attribute(FN_cuGraphKernelNodeGetAttribute, node, attribute, value);
}
