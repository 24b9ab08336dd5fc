// Graph nodes whose parameters are plain values beside a dependency array (empty, event record
// and wait, child graph, memset, memcpy on the device, memory allocation and free), memcpy nodes'
// copies read back and changed, and edges added or removed between nodes.
#include "api_state.hpp"
#include "cuda_client.hpp"
#include "log.hpp"

namespace rgpu::cuda {

bool start_node(CallBuilder& call, CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies, size_t count) {
  if (node == nullptr || (count > 0 && dependencies == nullptr) || count > kMaxGraphList) return false;
  call.out_mask(1u);
  call.writer().put(reinterpret_cast<uint64_t>(graph)).put(static_cast<uint32_t>(count));
  for (size_t i = 0; i < count; ++i) call.writer().put(reinterpret_cast<uint64_t>(dependencies[i]));
  return true;
}

namespace {

CUresult finish_node(CallBuilder& call, CUgraphNode* node) {
  return call_sync(call, [&](WireReader& reader) { *node = take_out<CUgraphNode>(reader); });
}

CUresult add_node(uint32_t function, CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies, size_t count,
                  const uint64_t* value) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CallBuilder call(function);
  if (!start_node(call, node, graph, dependencies, count)) return CUDA_ERROR_INVALID_VALUE;
  if (value) call.writer().put(*value);
  return finish_node(call, node);
}

CUresult change_dependencies(uint32_t function, CUgraph graph, const CUgraphNode* from, const CUgraphNode* to,
                             const CUgraphEdgeData* edges, size_t count) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (count > 0 && (from == nullptr || to == nullptr)) return CUDA_ERROR_INVALID_VALUE;
  if (count > kMaxGraphList) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(function);
  WireWriter& w = call.writer();
  w.put(reinterpret_cast<uint64_t>(graph)).put(static_cast<uint32_t>(count));
  for (size_t i = 0; i < count; ++i) w.put(reinterpret_cast<uint64_t>(from[i]));
  for (size_t i = 0; i < count; ++i) w.put(reinterpret_cast<uint64_t>(to[i]));
  w.put<uint8_t>(edges != nullptr && count > 0);
  for (size_t i = 0; edges != nullptr && i < count; ++i) w.put(edges[i]);
  return call_sync(call, [](WireReader&) {});
}

template <typename Handle>
uint64_t raw(Handle handle) {
  return reinterpret_cast<uint64_t>(handle);
}

// A memcpy node's copy: both ends on the device, device memory (unified addresses the application
// got as device memory) or arrays. Host memory at either end is not forwarded yet (logged).
bool device_copy(const char* name, const CUDA_MEMCPY3D& params, CUDA_MEMCPY3D& copy) {
  copy = params;
  for (auto [type, address] : {std::pair{&copy.srcMemoryType, copy.srcDevice}, std::pair{&copy.dstMemoryType, copy.dstDevice}}) {
    DeviceRange range;
    if (*type == CU_MEMORYTYPE_UNIFIED && find_device_range(address, range)) *type = CU_MEMORYTYPE_DEVICE;
    if (*type != CU_MEMORYTYPE_DEVICE && *type != CU_MEMORYTYPE_ARRAY) {
      LOG_WARN("%s: a copy with host memory at one end is not forwarded yet", name);
      return false;
    }
  }
  return true;
}

// cuGraphMemcpyNodeSetParams (no exec) and cuGraphExecMemcpyNodeSetParams.
CUresult set_memcpy_node(uint32_t function, CUgraphExec exec, CUgraphNode node, const CUDA_MEMCPY3D* params,
                         CUcontext context) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const bool in_exec = function == FN_cuGraphExecMemcpyNodeSetParams;
  CUDA_MEMCPY3D copy;
  if (!device_copy(in_exec ? "cuGraphExecMemcpyNodeSetParams" : "cuGraphMemcpyNodeSetParams", *params, copy))
    return CUDA_ERROR_NOT_SUPPORTED;
  CallBuilder call(function);
  if (in_exec) call.writer().put(raw(exec));
  call.writer().put(raw(node));
  call.struct_bytes(copy);
  if (in_exec) call.writer().put(raw(context));
  return call_sync(call, [](rgpu::WireReader&) {});
}
}  // namespace

}  // namespace rgpu::cuda

using namespace rgpu::cuda;

RGPU_EXPORT CUresult cuGraphAddEmptyNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies, size_t count) {
  return add_node(FN_cuGraphAddEmptyNode, node, graph, dependencies, count, nullptr);
}
RGPU_EXPORT CUresult cuGraphAddEventRecordNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                               size_t count, CUevent event) {
  const uint64_t value = raw(event);
  return add_node(FN_cuGraphAddEventRecordNode, node, graph, dependencies, count, &value);
}
RGPU_EXPORT CUresult cuGraphAddEventWaitNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                             size_t count, CUevent event) {
  const uint64_t value = raw(event);
  return add_node(FN_cuGraphAddEventWaitNode, node, graph, dependencies, count, &value);
}
RGPU_EXPORT CUresult cuGraphAddChildGraphNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                              size_t count, CUgraph child) {
  const uint64_t value = raw(child);
  return add_node(FN_cuGraphAddChildGraphNode, node, graph, dependencies, count, &value);
}
RGPU_EXPORT CUresult cuGraphAddMemFreeNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                           size_t count, CUdeviceptr pointer) {
  const uint64_t value = pointer;
  return add_node(FN_cuGraphAddMemFreeNode, node, graph, dependencies, count, &value);
}
RGPU_EXPORT CUresult cuGraphAddMemsetNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                          size_t count, const CUDA_MEMSET_NODE_PARAMS* params, CUcontext context) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_cuGraphAddMemsetNode);
  if (!start_node(call, node, graph, dependencies, count)) return CUDA_ERROR_INVALID_VALUE;
  call.struct_bytes(*params);
  call.writer().put(raw(context));
  return finish_node(call, node);
}

RGPU_EXPORT CUresult cuGraphAddMemcpyNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                          size_t count, const CUDA_MEMCPY3D* params, CUcontext context) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUDA_MEMCPY3D copy;
  if (!device_copy("cuGraphAddMemcpyNode", *params, copy)) return CUDA_ERROR_NOT_SUPPORTED;
  CallBuilder call(FN_cuGraphAddMemcpyNode);
  if (!start_node(call, node, graph, dependencies, count)) return CUDA_ERROR_INVALID_VALUE;
  call.struct_bytes(copy);
  call.writer().put(raw(context));
  return finish_node(call, node);
}

// The node's copy as the server's driver holds it (a copy with the server's host memory at an end,
// a captured copy's, is refused there: CUDA_ERROR_NOT_SUPPORTED).
RGPU_EXPORT CUresult cuGraphMemcpyNodeGetParams(CUgraphNode node, CUDA_MEMCPY3D* params) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_cuGraphMemcpyNodeGetParams);
  call.out_mask(1u);
  call.writer().put(raw(node));
  return call_sync(call, [&](rgpu::WireReader& reader) { take_struct(reader, *params, "CUDA_MEMCPY3D"); });
}
RGPU_EXPORT CUresult cuGraphMemcpyNodeSetParams(CUgraphNode node, const CUDA_MEMCPY3D* params) {
  return set_memcpy_node(FN_cuGraphMemcpyNodeSetParams, nullptr, node, params, nullptr);
}
RGPU_EXPORT CUresult cuGraphExecMemcpyNodeSetParams(CUgraphExec exec, CUgraphNode node, const CUDA_MEMCPY3D* params,
                                                    CUcontext context) {
  if (exec == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return set_memcpy_node(FN_cuGraphExecMemcpyNodeSetParams, exec, node, params, context);
}

// The allocation's address is device memory to this library from then on, as cuMemAlloc's.
RGPU_EXPORT CUresult cuGraphAddMemAllocNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                            size_t count, CUDA_MEM_ALLOC_NODE_PARAMS* params) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params == nullptr || (params->accessDescCount > 0 && params->accessDescs == nullptr) ||
      params->accessDescCount > kMaxStructArray)
    return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_cuGraphAddMemAllocNode);
  if (!start_node(call, node, graph, dependencies, count)) return CUDA_ERROR_INVALID_VALUE;
  call.struct_bytes(params->poolProps);
  call.writer().put<uint32_t>(static_cast<uint32_t>(params->accessDescCount));
  call.writer().bytes(params->accessDescs, params->accessDescCount * sizeof(CUmemAccessDesc));
  call.writer().put<uint64_t>(params->bytesize);
  return call_sync(call, [&](rgpu::WireReader& reader) {
    *node = take_out<CUgraphNode>(reader);
    params->dptr = reader.get<uint64_t>();
    note_device_range(params->dptr, params->bytesize);
  });
}

RGPU_EXPORT CUresult cuGraphAddDependencies(CUgraph graph, const CUgraphNode* from, const CUgraphNode* to, size_t count) {
  return change_dependencies(FN_cuGraphAddDependencies, graph, from, to, nullptr, count);
}
RGPU_EXPORT CUresult cuGraphAddDependencies_v2(CUgraph graph, const CUgraphNode* from, const CUgraphNode* to,
                                               const CUgraphEdgeData* edges, size_t count) {
  return change_dependencies(FN_cuGraphAddDependencies_v2, graph, from, to, edges, count);
}
RGPU_EXPORT CUresult cuGraphRemoveDependencies(CUgraph graph, const CUgraphNode* from, const CUgraphNode* to,
                                               size_t count) {
  return change_dependencies(FN_cuGraphRemoveDependencies, graph, from, to, nullptr, count);
}
RGPU_EXPORT CUresult cuGraphRemoveDependencies_v2(CUgraph graph, const CUgraphNode* from, const CUgraphNode* to,
                                                  const CUgraphEdgeData* edges, size_t count) {
  return change_dependencies(FN_cuGraphRemoveDependencies_v2, graph, from, to, edges, count);
}
