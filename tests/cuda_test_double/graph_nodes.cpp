// The test double's graph nodes with parameters of their own: memcpy, host, memory allocation and
// batch memory operation nodes, added, read back and changed in a graph or in one executable graph
// made from it, and kernel nodes' attributes.
#include <cstring>

#include "test_double.hpp"

namespace rgpu::cuda_double {
namespace {

// Copies of one row between device memory of `context`: the work a memcpy node runs.
CUresult memcpy_work(const CUDA_MEMCPY3D* copy, CUcontext context, StreamWork& work) {
  if (copy == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (copy->srcMemoryType != CU_MEMORYTYPE_DEVICE || copy->dstMemoryType != CU_MEMORYTYPE_DEVICE ||
      copy->Height > 1 || copy->Depth > 1 || copy->srcY || copy->srcZ || copy->dstY || copy->dstZ)
    return CUDA_ERROR_NOT_SUPPORTED;
  const CUdeviceptr from = copy->srcDevice + copy->srcXInBytes, to = copy->dstDevice + copy->dstXInBytes;
  const size_t bytes = copy->WidthInBytes;
  if (device_bytes(from, bytes, context) == nullptr || device_bytes(to, bytes, context) == nullptr)
    return CUDA_ERROR_INVALID_VALUE;
  work = [from, to, bytes, context] {
    std::byte* source = device_bytes(from, bytes, context);
    std::byte* target = device_bytes(to, bytes, context);
    if (source == nullptr || target == nullptr) return CUDA_ERROR_ILLEGAL_ADDRESS;
    std::memmove(target, source, bytes);
    return CUDA_SUCCESS;
  };
  return CUDA_SUCCESS;
}

// A memcpy node's copy changed: the same kinds of memory at both ends, as the driver requires of
// an executable graph's node.
CUresult set_copy(GraphNode* node, CUcontext context, const CUDA_MEMCPY3D* copy) {
  if (node == nullptr || !node->copy || copy == nullptr) return CUDA_ERROR_INVALID_VALUE;
  StreamWork work;
  if (CUresult r = memcpy_work(copy, context, work); r != CUDA_SUCCESS) return r;
  node->work = std::move(work);
  node->copy = *copy;
  return CUDA_SUCCESS;
}

CUresult set_host_function(GraphNode* node, const CUDA_HOST_NODE_PARAMS* params) {
  if (node == nullptr || node->function == nullptr || params == nullptr || params->fn == nullptr)
    return CUDA_ERROR_INVALID_VALUE;
  node->function = params->fn;
  node->data = params->userData;
  return CUDA_SUCCESS;
}

// The attributes CUDA takes for kernel nodes.
bool kernel_node_attribute(CUkernelNodeAttrID attribute) {
  switch (attribute) {
    case CU_LAUNCH_ATTRIBUTE_ACCESS_POLICY_WINDOW:
    case CU_LAUNCH_ATTRIBUTE_COOPERATIVE:
    case CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION:
    case CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE:
    case CU_LAUNCH_ATTRIBUTE_PRIORITY:
    case CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN_MAP:
    case CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN:
    case CU_LAUNCH_ATTRIBUTE_PREFERRED_CLUSTER_DIMENSION:
    case CU_LAUNCH_ATTRIBUTE_DEVICE_UPDATABLE_KERNEL_NODE:
    case CU_LAUNCH_ATTRIBUTE_NVLINK_UTIL_CENTRIC_SCHEDULING: return true;
    default: return false;
  }
}

// A batch node's operations changed: checked in the node's context, as when it was added.
CUresult set_batch(GraphNode* node, CUcontext context, const CUDA_BATCH_MEM_OP_NODE_PARAMS* params) {
  if (node == nullptr || !node->batch || params == nullptr || params->flags != 0) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_batch(context, params->paramArray, params->count); r != CUDA_SUCCESS) return r;
  node->batch = BatchNode{params->ctx, params->flags, {params->paramArray, params->paramArray + params->count}};
  return CUDA_SUCCESS;
}

GraphNode* kernel_node(CUgraphNode node) {
  GraphNode* found = find_graph_node(node);
  return found != nullptr && found->kernel ? found : nullptr;
}

}  // namespace
}  // namespace rgpu::cuda_double

using namespace rgpu::cuda_double;

DOUBLE_EXPORT CUresult cuGraphAddMemcpyNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                            size_t count, const CUDA_MEMCPY3D* copy, CUcontext) {
  auto lock = lock_driver();
  const CUcontext context = graph_context(graph);
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  StreamWork work;
  if (CUresult r = memcpy_work(copy, context, work); r != CUDA_SUCCESS) return r;
  return add_graph_node(node, graph, dependencies, count, GraphNode{.work = std::move(work), .copy = *copy});
}

DOUBLE_EXPORT CUresult cuGraphMemcpyNodeGetParams(CUgraphNode node, CUDA_MEMCPY3D* copy) {
  auto lock = lock_driver();
  const GraphNode* found = find_graph_node(node);
  if (found == nullptr || !found->copy || copy == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *copy = *found->copy;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphMemcpyNodeSetParams(CUgraphNode node, const CUDA_MEMCPY3D* copy) {
  auto lock = lock_driver();
  CUcontext context = nullptr;
  GraphNode* found = find_graph_node(node, &context);
  return set_copy(found, context, copy);
}

DOUBLE_EXPORT CUresult cuGraphExecMemcpyNodeSetParams(CUgraphExec exec, CUgraphNode node, const CUDA_MEMCPY3D* copy,
                                                      CUcontext) {
  auto lock = lock_driver();
  CUcontext context = nullptr;
  GraphNode* found = find_exec_node(exec, node, &context);
  if (found != nullptr && found->copy && copy != nullptr &&
      (copy->srcMemoryType != found->copy->srcMemoryType || copy->dstMemoryType != found->copy->dstMemoryType))
    return CUDA_ERROR_INVALID_VALUE;
  return set_copy(found, context, copy);
}

// Host nodes run in the order they were added, whatever their dependencies.
DOUBLE_EXPORT CUresult cuGraphAddHostNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                          size_t count, const CUDA_HOST_NODE_PARAMS* params) {
  auto lock = lock_driver();
  if (params == nullptr || params->fn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return add_graph_node(node, graph, dependencies, count, GraphNode{.function = params->fn, .data = params->userData});
}

DOUBLE_EXPORT CUresult cuGraphHostNodeGetParams(CUgraphNode node, CUDA_HOST_NODE_PARAMS* params) {
  auto lock = lock_driver();
  const GraphNode* found = find_graph_node(node);
  if (found == nullptr || found->function == nullptr || params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *params = CUDA_HOST_NODE_PARAMS{found->function, found->data};
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphHostNodeSetParams(CUgraphNode node, const CUDA_HOST_NODE_PARAMS* params) {
  auto lock = lock_driver();
  return set_host_function(find_graph_node(node), params);
}

DOUBLE_EXPORT CUresult cuGraphExecHostNodeSetParams(CUgraphExec exec, CUgraphNode node,
                                                    const CUDA_HOST_NODE_PARAMS* params) {
  auto lock = lock_driver();
  return set_host_function(find_exec_node(exec, node), params);
}

// The allocation is made when the node is added and lives as long as the context (a graph's
// memory keeps its address from launch to launch); its free node is an empty one here.
DOUBLE_EXPORT CUresult cuGraphAddMemAllocNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                              size_t count, CUDA_MEM_ALLOC_NODE_PARAMS* params) {
  auto lock = lock_driver();
  const CUcontext context = graph_context(graph);
  if (context == nullptr || params == nullptr || params->bytesize == 0 ||
      params->poolProps.allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
      params->poolProps.location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
      (params->accessDescCount > 0 && params->accessDescs == nullptr))
    return CUDA_ERROR_INVALID_VALUE;
  CUdeviceptr pointer = 0;
  if (CUresult r = allocate_device_memory(context, params->bytesize, kContextReserve, pointer); r != CUDA_SUCCESS)
    return r;
  AllocationNode allocation{params->poolProps, {params->accessDescs, params->accessDescs + params->accessDescCount},
                            params->bytesize, pointer};
  if (CUresult r = add_graph_node(node, graph, dependencies, count, GraphNode{.allocation = std::move(allocation)});
      r != CUDA_SUCCESS)
    return r;
  params->dptr = pointer;
  return CUDA_SUCCESS;
}

// The access descriptors are the node's own storage, as the driver's are.
DOUBLE_EXPORT CUresult cuGraphMemAllocNodeGetParams(CUgraphNode node, CUDA_MEM_ALLOC_NODE_PARAMS* params) {
  auto lock = lock_driver();
  GraphNode* found = find_graph_node(node);
  if (found == nullptr || !found->allocation || params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  AllocationNode& allocation = *found->allocation;
  *params = CUDA_MEM_ALLOC_NODE_PARAMS{allocation.pool, allocation.access.empty() ? nullptr : allocation.access.data(),
                                       allocation.access.size(), allocation.bytes, allocation.pointer};
  return CUDA_SUCCESS;
}

// Kept per node (an executable graph copies them); an attribute never set reads as zeros.
DOUBLE_EXPORT CUresult cuGraphKernelNodeSetAttribute(CUgraphNode node, CUkernelNodeAttrID attribute,
                                                     const CUkernelNodeAttrValue* value) {
  auto lock = lock_driver();
  GraphNode* found = kernel_node(node);
  if (found == nullptr || value == nullptr || !kernel_node_attribute(attribute)) return CUDA_ERROR_INVALID_VALUE;
  found->attributes[attribute] = *value;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphKernelNodeGetAttribute(CUgraphNode node, CUkernelNodeAttrID attribute,
                                                     CUkernelNodeAttrValue* value) {
  auto lock = lock_driver();
  const GraphNode* found = kernel_node(node);
  if (found == nullptr || value == nullptr || !kernel_node_attribute(attribute)) return CUDA_ERROR_INVALID_VALUE;
  auto it = found->attributes.find(attribute);
  *value = it != found->attributes.end() ? it->second : CUkernelNodeAttrValue{};
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphKernelNodeCopyAttributes(CUgraphNode destination, CUgraphNode source) {
  auto lock = lock_driver();
  GraphNode* to = kernel_node(destination);
  const GraphNode* from = kernel_node(source);
  if (to == nullptr || from == nullptr) return CUDA_ERROR_INVALID_VALUE;
  to->attributes = from->attributes;
  return CUDA_SUCCESS;
}

// Run in stream order at each launch, as cuStreamBatchMemOp_v2 runs them.
DOUBLE_EXPORT CUresult cuGraphAddBatchMemOpNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                                size_t count, const CUDA_BATCH_MEM_OP_NODE_PARAMS* params) {
  auto lock = lock_driver();
  const CUcontext context = graph_context(graph);
  if (context == nullptr || params == nullptr || params->flags != 0) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_batch(context, params->paramArray, params->count); r != CUDA_SUCCESS) return r;
  BatchNode batch{params->ctx, params->flags, {params->paramArray, params->paramArray + params->count}};
  return add_graph_node(node, graph, dependencies, count, GraphNode{.batch = std::move(batch)});
}

// The operations are the node's own storage, as the driver's are.
DOUBLE_EXPORT CUresult cuGraphBatchMemOpNodeGetParams(CUgraphNode node, CUDA_BATCH_MEM_OP_NODE_PARAMS* params) {
  auto lock = lock_driver();
  GraphNode* found = find_graph_node(node);
  if (found == nullptr || !found->batch || params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  BatchNode& batch = *found->batch;
  *params = CUDA_BATCH_MEM_OP_NODE_PARAMS{batch.context, static_cast<unsigned>(batch.operations.size()),
                                          batch.operations.data(), batch.flags};
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphBatchMemOpNodeSetParams(CUgraphNode node, const CUDA_BATCH_MEM_OP_NODE_PARAMS* params) {
  auto lock = lock_driver();
  CUcontext context = nullptr;
  GraphNode* found = find_graph_node(node, &context);
  return set_batch(found, context, params);
}

DOUBLE_EXPORT CUresult cuGraphExecBatchMemOpNodeSetParams(CUgraphExec exec, CUgraphNode node,
                                                          const CUDA_BATCH_MEM_OP_NODE_PARAMS* params) {
  auto lock = lock_driver();
  CUcontext context = nullptr;
  GraphNode* found = find_exec_node(exec, node, &context);
  return set_batch(found, context, params);
}
