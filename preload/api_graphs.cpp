// Graph calls that carry arrays, kernel arguments or batches of memory operations: graph and node
// lists, kernel nodes (arguments packed as launches pack them), memory allocation nodes read back,
// cuStreamBatchMemOp and batch memory operation nodes. A kernel node's arguments read back are kept
// here, per node, until the node is read again or its graph goes, as the driver hands out storage
// of its own; so are an allocation node's access descriptors and a batch node's operations.
#include <cstring>
#include <map>
#include <mutex>

#include "api_state.hpp"
#include "cuda_client.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
// ---- lists ---------------------------------------------------------------------------------

// `first` (and `second` for edges) hold *count entries, or are NULL to ask the count only; the
// entries past what the graph has are NULL (and default edge data), as the driver leaves them.
CUresult graph_list(uint32_t function, const void* handle, CUgraphNode* first, CUgraphNode* second, bool pairs,
                    CUgraphEdgeData* edges, size_t* count) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (count == nullptr || (pairs && (first == nullptr) != (second == nullptr)) || (edges && first == nullptr))
    return CUDA_ERROR_INVALID_VALUE;
  const uint64_t capacity = first ? *count : 0;
  CallBuilder call(function);
  call.writer().put(reinterpret_cast<uint64_t>(handle)).put(capacity);
  call.writer().put<uint8_t>((first ? kGraphListNodes : 0) | (edges ? kGraphListEdgeData : 0));
  return call_sync(call, [&](WireReader& reader) {
    const uint64_t total = reader.get<uint64_t>();
    const uint64_t n = reader.get<uint64_t>();
    if (n > capacity) throw WireError("a graph list longer than asked for");
    for (uint64_t i = 0; i < n; ++i) first[i] = take_out<CUgraphNode>(reader);
    for (uint64_t i = 0; pairs && i < n; ++i) second[i] = take_out<CUgraphNode>(reader);
    for (uint64_t i = 0; edges && i < n; ++i) edges[i] = reader.get<CUgraphEdgeData>();
    for (uint64_t i = n; i < capacity; ++i) {
      first[i] = nullptr;
      if (pairs) second[i] = nullptr;
      if (edges) edges[i] = CUgraphEdgeData{};
    }
    *count = total;
  });
}

// ---- kernel nodes --------------------------------------------------------------------------

// The fields of CUDA_KERNEL_NODE_PARAMS v1, v2 and v3 that travel (v1 has no kern and ctx).
struct KernelNode {
  CUfunction func = nullptr;
  CUkernel kern = nullptr;
  CUcontext ctx = nullptr;
  unsigned dims[6] = {};
  unsigned shared = 0;
  void** params = nullptr;
  void** extra = nullptr;
};

template <typename P>
KernelNode from_params(const P& p) {
  KernelNode node{p.func, nullptr, nullptr, {p.gridDimX, p.gridDimY, p.gridDimZ, p.blockDimX, p.blockDimY, p.blockDimZ},
                  p.sharedMemBytes, p.kernelParams, p.extra};
  if constexpr (requires { p.kern; }) {
    node.kern = p.kern;
    node.ctx = p.ctx;
  }
  return node;
}

template <typename P>
void to_params(const KernelNode& node, P& p) {
  p.func = node.func;
  p.gridDimX = node.dims[0], p.gridDimY = node.dims[1], p.gridDimZ = node.dims[2];
  p.blockDimX = node.dims[3], p.blockDimY = node.dims[4], p.blockDimZ = node.dims[5];
  p.sharedMemBytes = node.shared;
  p.kernelParams = node.params;
  p.extra = node.extra;
  if constexpr (requires { p.kern; }) {
    p.kern = node.kern;
    p.ctx = node.ctx;
  }
}

CUresult put_kernel_node(CallBuilder& call, const KernelNode& node) {
  const CUfunction f = node.func ? node.func : reinterpret_cast<CUfunction>(node.kern);
  if (f == nullptr) return CUDA_ERROR_INVALID_VALUE;
  KernelParamLayout layout;
  if (CUresult r = kernel_param_layout(f, layout); r != CUDA_SUCCESS) return r;
  WireWriter& w = call.writer();
  w.put(reinterpret_cast<uint64_t>(node.func)).put(reinterpret_cast<uint64_t>(node.kern));
  w.put(reinterpret_cast<uint64_t>(node.ctx));
  for (unsigned value : node.dims) w.put<uint32_t>(value);
  w.put<uint32_t>(node.shared);
  return pack_kernel_params(layout, node.params, node.extra, call);
}

// What the driver hands out as its own storage, kept per node: a kernel node's arguments read back
// (the bytes and one pointer per parameter into them), a conditional node's body graphs, an
// allocation node's access descriptors, a batch node's operations.
struct KeptArguments {
  std::vector<uint8_t> bytes;
  std::vector<void*> pointers;
  std::vector<CUgraph> bodies;
  std::vector<CUmemAccessDesc> access;
  std::vector<CUstreamBatchMemOpParams> operations;
};
std::mutex g_kept_mutex;
std::map<CUgraphNode, KeptArguments>& kept_arguments() {
  static auto* value = new std::map<CUgraphNode, KeptArguments>;  // never destroyed: see api_state.hpp
  return *value;
}

CUresult get_kernel_node(uint32_t function, CUgraphNode hnode, KernelNode& node) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CallBuilder call(function);
  call.writer().put(reinterpret_cast<uint64_t>(hnode));
  KeptArguments kept;
  std::vector<uint32_t> offsets;
  const CUresult r = call_sync(call, [&](WireReader& reader) {
    node.func = take_out<CUfunction>(reader);
    node.kern = take_out<CUkernel>(reader);
    node.ctx = take_out<CUcontext>(reader);
    for (unsigned& value : node.dims) value = reader.get<uint32_t>();
    node.shared = reader.get<uint32_t>();
    const uint32_t n = reader.get<uint32_t>();
    if (n > reader.remaining() / sizeof(uint32_t)) throw WireError("more kernel parameters than bytes");
    offsets.resize(n);
    for (auto& offset : offsets) offset = reader.get<uint32_t>();
    auto blob = reader.blob(64 * 1024);
    kept.bytes.assign(blob.begin(), blob.end());
  });
  if (r != CUDA_SUCCESS) return r;
  // Each parameter must lie inside the bytes, as large as the function's layout says.
  KernelParamLayout layout;
  const CUfunction f = node.func ? node.func : reinterpret_cast<CUfunction>(node.kern);
  if (CUresult e = kernel_param_layout(f, layout); e != CUDA_SUCCESS) return e;
  if (layout.params.size() != offsets.size()) {
    LOG_ERROR("the server read back %zu kernel parameters of a function with %zu", offsets.size(), layout.params.size());
    return CUDA_ERROR_INVALID_VALUE;
  }
  for (size_t i = 0; i < offsets.size(); ++i) {
    if (offsets[i] > kept.bytes.size() || layout.params[i].second > kept.bytes.size() - offsets[i]) {
      LOG_ERROR("the server read back kernel parameter %zu outside its bytes", i);
      return CUDA_ERROR_INVALID_VALUE;
    }
    kept.pointers.push_back(kept.bytes.data() + offsets[i]);
  }
  std::lock_guard lock(g_kept_mutex);
  auto& slot = kept_arguments()[hnode];
  slot = std::move(kept);  // moving keeps the bytes where the pointers point
  node.params = slot.pointers.empty() ? nullptr : slot.pointers.data();
  node.extra = nullptr;
  return CUDA_SUCCESS;
}

void forget_kept_arguments(std::span<const CUgraphNode> nodes) {
  std::lock_guard lock(g_kept_mutex);
  for (CUgraphNode node : nodes) kept_arguments().erase(node);
}

bool any_kept_arguments() {
  std::lock_guard lock(g_kept_mutex);
  return !kept_arguments().empty();
}

// A question about one node: `u64 node`, its answer wanted.
CallBuilder node_question(uint32_t function, CUgraphNode node) {
  CallBuilder call(function);
  call.out_mask(1u);
  call.writer().put(reinterpret_cast<uint64_t>(node));
  return call;
}

// Keeps `values` as the node's `member` and answers where they lie (NULL for none): the storage of
// an earlier read while they are the same, so that what it answered stays valid.
template <typename T>
const T* keep_for_node(CUgraphNode node, std::vector<T> KeptArguments::*member, std::vector<T> values) {
  std::lock_guard lock(g_kept_mutex);
  std::vector<T>& kept = kept_arguments()[node].*member;
  if (kept.size() != values.size() ||
      (!values.empty() && std::memcmp(kept.data(), values.data(), values.size() * sizeof(T)) != 0))
    kept = std::move(values);
  return kept.empty() ? nullptr : kept.data();
}

// cuGraphMemAllocNodeGetParams: `u64 node` -> `u32 size, CUmemPoolProps, u32 n, n x CUmemAccessDesc,
// u64 bytesize, u64 address`.
CUresult get_mem_alloc_node(CUgraphNode node, CUDA_MEM_ALLOC_NODE_PARAMS& params) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CallBuilder call = node_question(FN_cuGraphMemAllocNodeGetParams, node);
  std::vector<CUmemAccessDesc> access;
  const CUresult r = call_sync(call, [&](WireReader& reader) {
    take_struct(reader, params.poolProps, "CUmemPoolProps");
    const uint32_t n = reader.get<uint32_t>();
    if (n > kMaxStructArray) throw WireError("more access descriptors than may travel");
    access.resize(n);
    if (n) std::memcpy(access.data(), reader.bytes(n * sizeof(CUmemAccessDesc)).data(), n * sizeof(CUmemAccessDesc));
    params.bytesize = reader.get<uint64_t>();
    params.dptr = reader.get<uint64_t>();
  });
  if (r != CUDA_SUCCESS) return r;
  params.accessDescCount = access.size();
  params.accessDescs = keep_for_node(node, &KeptArguments::access, std::move(access));
  return CUDA_SUCCESS;
}

// `u64 graph, u32 n, n x u64 dependency, u8 has edge data, [n x CUgraphEdgeData], u32 node type`.
bool start_add(CallBuilder& call, CUgraphNode* out, CUgraph graph, const CUgraphNode* dependencies,
               const CUgraphEdgeData* edges, size_t count, CUgraphNodeType type) {
  if (out == nullptr || (count > 0 && dependencies == nullptr) || count > kMaxGraphList) return false;
  call.out_mask(1u);
  WireWriter& w = call.writer();
  w.put(reinterpret_cast<uint64_t>(graph)).put(static_cast<uint32_t>(count));
  for (size_t i = 0; i < count; ++i) w.put(reinterpret_cast<uint64_t>(dependencies[i]));
  w.put<uint8_t>(edges != nullptr && count > 0);
  for (size_t i = 0; edges != nullptr && i < count; ++i) w.put(edges[i]);
  w.put<uint32_t>(type);
  return true;
}

CUresult add_kernel_node(uint32_t function, CUgraphNode* out, CUgraph graph, const CUgraphNode* dependencies,
                         const CUgraphEdgeData* edges, size_t count, const KernelNode& node) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CallBuilder call(function);
  if (!start_add(call, out, graph, dependencies, edges, count, CU_GRAPH_NODE_TYPE_KERNEL)) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = put_kernel_node(call, node); r != CUDA_SUCCESS) return r;
  return call_sync(call, [&](WireReader& reader) { *out = take_out<CUgraphNode>(reader); });
}

// A conditional node: its body graphs come back, kept here for the node as the driver's array.
CUresult add_conditional_node(uint32_t function, CUgraphNode* out, CUgraph graph, const CUgraphNode* dependencies,
                              const CUgraphEdgeData* edges, size_t count, CUDA_CONDITIONAL_NODE_PARAMS& params) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params.size == 0 || params.size > kMaxConditionalBodies) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(function);
  if (!start_add(call, out, graph, dependencies, edges, count, CU_GRAPH_NODE_TYPE_CONDITIONAL))
    return CUDA_ERROR_INVALID_VALUE;
  call.writer().put<uint64_t>(params.handle).put<uint32_t>(params.type).put<uint32_t>(params.size);
  call.writer().put(reinterpret_cast<uint64_t>(params.ctx));
  return call_sync(call, [&](WireReader& reader) {
    const CUgraphNode node = take_out<CUgraphNode>(reader);
    const uint32_t n = reader.get<uint32_t>();
    if (n != params.size) throw WireError("a conditional node with another number of bodies than asked for");
    KeptArguments kept;
    for (uint32_t i = 0; i < n; ++i) kept.bodies.push_back(reinterpret_cast<CUgraph>(reader.get<uint64_t>()));
    std::lock_guard lock(g_kept_mutex);
    auto& slot = kept_arguments()[node];
    slot = std::move(kept);
    params.phGraph_out = slot.bodies.data();
    *out = node;
  });
}

// cuGraphAddNode(_v2): kernel and conditional nodes, and the others their own calls add when no
// edge data comes.
CUresult add_node(uint32_t function, CUgraphNode* out, CUgraph graph, const CUgraphNode* dependencies,
                  const CUgraphEdgeData* edges, size_t count, CUgraphNodeParams* params) {
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  switch (params->type) {
    case CU_GRAPH_NODE_TYPE_KERNEL:
      return add_kernel_node(function, out, graph, dependencies, edges, count, from_params(params->kernel));
    case CU_GRAPH_NODE_TYPE_CONDITIONAL:
      return add_conditional_node(function, out, graph, dependencies, edges, count, params->conditional);
    default: break;
  }
  if (edges == nullptr) {
    switch (params->type) {
      case CU_GRAPH_NODE_TYPE_EMPTY: return cuGraphAddEmptyNode(out, graph, dependencies, count);
      case CU_GRAPH_NODE_TYPE_EVENT_RECORD:
        return cuGraphAddEventRecordNode(out, graph, dependencies, count, params->eventRecord.event);
      case CU_GRAPH_NODE_TYPE_WAIT_EVENT:
        return cuGraphAddEventWaitNode(out, graph, dependencies, count, params->eventWait.event);
      case CU_GRAPH_NODE_TYPE_GRAPH: return cuGraphAddChildGraphNode(out, graph, dependencies, count, params->graph.graph);
      case CU_GRAPH_NODE_TYPE_MEM_FREE: return cuGraphAddMemFreeNode(out, graph, dependencies, count, params->free.dptr);
      case CU_GRAPH_NODE_TYPE_MEMSET: {
        const CUDA_MEMSET_NODE_PARAMS_v2& m = params->memset;
        const CUDA_MEMSET_NODE_PARAMS set{m.dst, m.pitch, m.value, m.elementSize, m.width, m.height};
        return cuGraphAddMemsetNode(out, graph, dependencies, count, &set, m.ctx);
      }
      case CU_GRAPH_NODE_TYPE_MEMCPY:
        if (params->memcpy.flags != 0 || params->memcpy.reserved != 0) return CUDA_ERROR_INVALID_VALUE;
        return cuGraphAddMemcpyNode(out, graph, dependencies, count, &params->memcpy.copyParams, params->memcpy.copyCtx);
      case CU_GRAPH_NODE_TYPE_HOST: {
        const CUDA_HOST_NODE_PARAMS host{params->host.fn, params->host.userData};
        return cuGraphAddHostNode(out, graph, dependencies, count, &host);
      }
      case CU_GRAPH_NODE_TYPE_BATCH_MEM_OP: {
        const CUDA_BATCH_MEM_OP_NODE_PARAMS_v2& m = params->memOp;
        const CUDA_BATCH_MEM_OP_NODE_PARAMS batch{m.ctx, m.count, m.paramArray, m.flags};
        return cuGraphAddBatchMemOpNode(out, graph, dependencies, count, &batch);
      }
      case CU_GRAPH_NODE_TYPE_MEM_ALLOC: {
        const CUDA_MEM_ALLOC_NODE_PARAMS_v2& a = params->alloc;
        CUDA_MEM_ALLOC_NODE_PARAMS alloc{a.poolProps, a.accessDescs, a.accessDescCount, a.bytesize, 0};
        const CUresult r = cuGraphAddMemAllocNode(out, graph, dependencies, count, &alloc);
        if (r == CUDA_SUCCESS) params->alloc.dptr = alloc.dptr;
        return r;
      }
      default: break;
    }
  }
  LOG_WARN("cuGraphAddNode: nodes of type %d are not forwarded yet", static_cast<int>(params->type));
  return CUDA_ERROR_NOT_SUPPORTED;
}

CUresult set_kernel_node(uint32_t function, CUgraphExec exec, CUgraphNode hnode, const KernelNode& node) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CallBuilder call(function);
  if (exec != nullptr) call.writer().put(reinterpret_cast<uint64_t>(exec));
  call.writer().put(reinterpret_cast<uint64_t>(hnode));
  if (CUresult r = put_kernel_node(call, node); r != CUDA_SUCCESS) return r;
  return call_sync(call, [](rgpu::WireReader&) {});
}

// ---- batches of memory operations ----------------------------------------------------------

// `u32 count, u32 flags, u32 size`, count x CUstreamBatchMemOpParams; false for a batch that does
// not travel (none, or more than kMaxBatchMemOps).
bool put_batch(WireWriter& w, unsigned count, const CUstreamBatchMemOpParams* ops, unsigned flags) {
  if (ops == nullptr || count == 0 || count > kMaxBatchMemOps) return false;
  w.put<uint32_t>(count).put<uint32_t>(flags);
  w.put<uint32_t>(sizeof *ops).bytes(ops, size_t{count} * sizeof *ops);
  return true;
}

CUresult batch_mem_op(uint32_t function, CUstream stream, unsigned count, const CUstreamBatchMemOpParams* ops,
                      unsigned flags) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CallBuilder call(function);
  call.writer().put(reinterpret_cast<uint64_t>(stream));
  if (!put_batch(call.writer(), count, ops, flags)) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = before_device_work(); r != CUDA_SUCCESS) return r;
  return call_pipelined(call);
}

// cuGraphBatchMemOpNodeSetParams (no exec) and cuGraphExecBatchMemOpNodeSetParams: `[u64 exec,]
// u64 node, u64 context`, the batch.
CUresult set_batch_node(uint32_t function, CUgraphExec exec, CUgraphNode node,
                        const CUDA_BATCH_MEM_OP_NODE_PARAMS* params) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(function);
  WireWriter& w = call.writer();
  if (function == FN_cuGraphExecBatchMemOpNodeSetParams) w.put(reinterpret_cast<uint64_t>(exec));
  w.put(reinterpret_cast<uint64_t>(node)).put(reinterpret_cast<uint64_t>(params->ctx));
  if (!put_batch(w, params->count, params->paramArray, params->flags)) return CUDA_ERROR_INVALID_VALUE;
  return call_sync(call, [](WireReader&) {});
}

// cuGraphBatchMemOpNodeGetParams: `u64 node` -> `u64 context, u32 count, u32 flags, u32 size`, the
// operations (kept for the node).
CUresult get_batch_node(CUgraphNode node, CUDA_BATCH_MEM_OP_NODE_PARAMS& params) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CallBuilder call = node_question(FN_cuGraphBatchMemOpNodeGetParams, node);
  std::vector<CUstreamBatchMemOpParams> ops;
  const CUresult r = call_sync(call, [&](WireReader& reader) {
    params.ctx = take_out<CUcontext>(reader);
    const uint32_t count = reader.get<uint32_t>();
    params.flags = reader.get<uint32_t>();
    if (reader.get<uint32_t>() != sizeof(CUstreamBatchMemOpParams) || count > kMaxBatchMemOps)
      throw WireError("a batch of memory operations this library cannot take");
    ops.resize(count);
    if (count) std::memcpy(ops.data(), reader.bytes(count * sizeof(CUstreamBatchMemOpParams)).data(),
                           count * sizeof(CUstreamBatchMemOpParams));
  });
  if (r != CUDA_SUCCESS) return r;
  params.count = static_cast<unsigned>(ops.size());
  params.paramArray = const_cast<CUstreamBatchMemOpParams*>(
      keep_for_node(node, &KeptArguments::operations, std::move(ops)));
  return CUDA_SUCCESS;
}
}  // namespace

}  // namespace rgpu::cuda

using namespace rgpu::cuda;

RGPU_EXPORT CUresult cuGraphGetNodes(CUgraph graph, CUgraphNode* nodes, size_t* count) {
  return graph_list(FN_cuGraphGetNodes, graph, nodes, nullptr, false, nullptr, count);
}
RGPU_EXPORT CUresult cuGraphGetRootNodes(CUgraph graph, CUgraphNode* nodes, size_t* count) {
  return graph_list(FN_cuGraphGetRootNodes, graph, nodes, nullptr, false, nullptr, count);
}
RGPU_EXPORT CUresult cuGraphGetEdges(CUgraph graph, CUgraphNode* from, CUgraphNode* to, size_t* count) {
  return graph_list(FN_cuGraphGetEdges, graph, from, to, true, nullptr, count);
}
RGPU_EXPORT CUresult cuGraphGetEdges_v2(CUgraph graph, CUgraphNode* from, CUgraphNode* to, CUgraphEdgeData* edges,
                                        size_t* count) {
  return graph_list(FN_cuGraphGetEdges_v2, graph, from, to, true, edges, count);
}
RGPU_EXPORT CUresult cuGraphNodeGetDependencies(CUgraphNode node, CUgraphNode* nodes, size_t* count) {
  return graph_list(FN_cuGraphNodeGetDependencies, node, nodes, nullptr, false, nullptr, count);
}
RGPU_EXPORT CUresult cuGraphNodeGetDependencies_v2(CUgraphNode node, CUgraphNode* nodes, CUgraphEdgeData* edges,
                                                   size_t* count) {
  return graph_list(FN_cuGraphNodeGetDependencies_v2, node, nodes, nullptr, false, edges, count);
}
RGPU_EXPORT CUresult cuGraphNodeGetDependentNodes(CUgraphNode node, CUgraphNode* nodes, size_t* count) {
  return graph_list(FN_cuGraphNodeGetDependentNodes, node, nodes, nullptr, false, nullptr, count);
}
RGPU_EXPORT CUresult cuGraphNodeGetDependentNodes_v2(CUgraphNode node, CUgraphNode* nodes, CUgraphEdgeData* edges,
                                                     size_t* count) {
  return graph_list(FN_cuGraphNodeGetDependentNodes_v2, node, nodes, nullptr, false, edges, count);
}

RGPU_EXPORT CUresult cuGraphAddKernelNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                          size_t count, const CUDA_KERNEL_NODE_PARAMS_v1* params) {
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return add_kernel_node(FN_cuGraphAddKernelNode, node, graph, dependencies, nullptr, count, from_params(*params));
}
RGPU_EXPORT CUresult cuGraphAddKernelNode_v2(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                             size_t count, const CUDA_KERNEL_NODE_PARAMS* params) {
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return add_kernel_node(FN_cuGraphAddKernelNode_v2, node, graph, dependencies, nullptr, count, from_params(*params));
}
RGPU_EXPORT CUresult cuGraphAddNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies, size_t count,
                                    CUgraphNodeParams* params) {
  return add_node(FN_cuGraphAddNode, node, graph, dependencies, nullptr, count, params);
}
RGPU_EXPORT CUresult cuGraphAddNode_v2(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                       const CUgraphEdgeData* edges, size_t count, CUgraphNodeParams* params) {
  return add_node(FN_cuGraphAddNode_v2, node, graph, dependencies, edges, count, params);
}

RGPU_EXPORT CUresult cuGraphKernelNodeGetParams(CUgraphNode hnode, CUDA_KERNEL_NODE_PARAMS_v1* params) {
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  KernelNode node;
  CUresult r = get_kernel_node(FN_cuGraphKernelNodeGetParams, hnode, node);
  if (r == CUDA_SUCCESS) to_params(node, *params);
  return r;
}
RGPU_EXPORT CUresult cuGraphKernelNodeGetParams_v2(CUgraphNode hnode, CUDA_KERNEL_NODE_PARAMS* params) {
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  KernelNode node;
  CUresult r = get_kernel_node(FN_cuGraphKernelNodeGetParams_v2, hnode, node);
  if (r == CUDA_SUCCESS) to_params(node, *params);
  return r;
}
RGPU_EXPORT CUresult cuGraphKernelNodeSetParams(CUgraphNode node, const CUDA_KERNEL_NODE_PARAMS_v1* params) {
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return set_kernel_node(FN_cuGraphKernelNodeSetParams, nullptr, node, from_params(*params));
}
RGPU_EXPORT CUresult cuGraphKernelNodeSetParams_v2(CUgraphNode node, const CUDA_KERNEL_NODE_PARAMS* params) {
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return set_kernel_node(FN_cuGraphKernelNodeSetParams_v2, nullptr, node, from_params(*params));
}
// The generic setters: kernel, host, memcpy and batch memory operation nodes, as their own setters
// change them (`exec` null: the graph's node).
static CUresult set_node(const char* name, CUgraphExec exec, CUgraphNode node, const CUgraphNodeParams* params) {
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  switch (params->type) {
    case CU_GRAPH_NODE_TYPE_KERNEL:
      return set_kernel_node(exec ? FN_cuGraphExecNodeSetParams : FN_cuGraphNodeSetParams, exec, node,
                             from_params(params->kernel));
    case CU_GRAPH_NODE_TYPE_HOST: {
      const CUDA_HOST_NODE_PARAMS host{params->host.fn, params->host.userData};
      return exec ? cuGraphExecHostNodeSetParams(exec, node, &host) : cuGraphHostNodeSetParams(node, &host);
    }
    case CU_GRAPH_NODE_TYPE_MEMCPY: {
      const CUDA_MEMCPY_NODE_PARAMS& m = params->memcpy;
      if (m.flags != 0 || m.reserved != 0) return CUDA_ERROR_INVALID_VALUE;
      return exec ? cuGraphExecMemcpyNodeSetParams(exec, node, &m.copyParams, m.copyCtx)
                  : cuGraphMemcpyNodeSetParams(node, &m.copyParams);
    }
    case CU_GRAPH_NODE_TYPE_BATCH_MEM_OP: {
      const CUDA_BATCH_MEM_OP_NODE_PARAMS_v2& m = params->memOp;
      const CUDA_BATCH_MEM_OP_NODE_PARAMS batch{m.ctx, m.count, m.paramArray, m.flags};
      return exec ? cuGraphExecBatchMemOpNodeSetParams(exec, node, &batch) : cuGraphBatchMemOpNodeSetParams(node, &batch);
    }
    default:
      LOG_WARN("%s: nodes of type %d are not forwarded yet", name, static_cast<int>(params->type));
      return CUDA_ERROR_NOT_SUPPORTED;
  }
}
RGPU_EXPORT CUresult cuGraphNodeSetParams(CUgraphNode node, CUgraphNodeParams* params) {
  return set_node("cuGraphNodeSetParams", nullptr, node, params);
}
RGPU_EXPORT CUresult cuGraphExecKernelNodeSetParams(CUgraphExec exec, CUgraphNode node,
                                                    const CUDA_KERNEL_NODE_PARAMS_v1* params) {
  if (params == nullptr || exec == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return set_kernel_node(FN_cuGraphExecKernelNodeSetParams, exec, node, from_params(*params));
}
RGPU_EXPORT CUresult cuGraphExecKernelNodeSetParams_v2(CUgraphExec exec, CUgraphNode node,
                                                       const CUDA_KERNEL_NODE_PARAMS* params) {
  if (params == nullptr || exec == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return set_kernel_node(FN_cuGraphExecKernelNodeSetParams_v2, exec, node, from_params(*params));
}
RGPU_EXPORT CUresult cuGraphExecNodeSetParams(CUgraphExec exec, CUgraphNode node, CUgraphNodeParams* params) {
  if (exec == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return set_node("cuGraphExecNodeSetParams", exec, node, params);
}

// The allocation's address and properties; the access descriptors stay valid while the node lives.
RGPU_EXPORT CUresult cuGraphMemAllocNodeGetParams(CUgraphNode node, CUDA_MEM_ALLOC_NODE_PARAMS* params) {
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return get_mem_alloc_node(node, *params);
}

// The arguments kept for a graph's nodes go with it (their list asked first only when any are kept).
RGPU_EXPORT CUresult cuGraphDestroy(CUgraph graph) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (any_kept_arguments()) {
    size_t count = 0;
    if (cuGraphGetNodes(graph, nullptr, &count) == CUDA_SUCCESS && count > 0) {
      std::vector<CUgraphNode> nodes(count);
      if (cuGraphGetNodes(graph, nodes.data(), &count) == CUDA_SUCCESS) forget_kept_arguments(nodes);
    }
  }
  CallBuilder call(FN_cuGraphDestroy);
  call.in(graph);
  return call_pipelined(call);
}
RGPU_EXPORT CUresult cuGraphDestroyNode(CUgraphNode node) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  forget_kept_arguments({&node, 1});
  CallBuilder call(FN_cuGraphDestroyNode);
  call.in(node);
  return call_sync(call, [](rgpu::WireReader&) {});
}

// The forms before cuGraphInstantiateWithFlags: no error node or log comes back (the error does).
RGPU_EXPORT CUresult cuGraphInstantiate(CUgraphExec* exec, CUgraph graph, CUgraphNode* error_node, char* log,
                                        size_t log_size) {
  if (error_node) *error_node = nullptr;
  if (log != nullptr && log_size > 0) log[0] = '\0';
  return cuGraphInstantiateWithFlags(exec, graph, 0);
}
RGPU_EXPORT CUresult cuGraphInstantiate_v2(CUgraphExec* exec, CUgraph graph, CUgraphNode* error_node, char* log,
                                           size_t log_size) {
  return cuGraphInstantiate(exec, graph, error_node, log, log_size);
}

RGPU_EXPORT CUresult cuStreamBatchMemOp(CUstream stream, unsigned count, CUstreamBatchMemOpParams* ops, unsigned flags) {
  return batch_mem_op(FN_cuStreamBatchMemOp, stream, count, ops, flags);
}
RGPU_EXPORT CUresult cuStreamBatchMemOp_ptsz(CUstream stream, unsigned count, CUstreamBatchMemOpParams* ops,
                                             unsigned flags) {
  return batch_mem_op(FN_cuStreamBatchMemOp_ptsz, stream, count, ops, flags);
}
RGPU_EXPORT CUresult cuStreamBatchMemOp_v2(CUstream stream, unsigned count, CUstreamBatchMemOpParams* ops,
                                           unsigned flags) {
  return batch_mem_op(FN_cuStreamBatchMemOp_v2, stream, count, ops, flags);
}
RGPU_EXPORT CUresult cuStreamBatchMemOp_v2_ptsz(CUstream stream, unsigned count, CUstreamBatchMemOpParams* ops,
                                                unsigned flags) {
  return batch_mem_op(FN_cuStreamBatchMemOp_v2_ptsz, stream, count, ops, flags);
}

RGPU_EXPORT CUresult cuGraphAddBatchMemOpNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                              size_t count, const CUDA_BATCH_MEM_OP_NODE_PARAMS* params) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_cuGraphAddBatchMemOpNode);
  if (!start_node(call, node, graph, dependencies, count)) return CUDA_ERROR_INVALID_VALUE;
  call.writer().put(reinterpret_cast<uint64_t>(params->ctx));
  if (!put_batch(call.writer(), params->count, params->paramArray, params->flags)) return CUDA_ERROR_INVALID_VALUE;
  return call_sync(call, [&](rgpu::WireReader& reader) { *node = take_out<CUgraphNode>(reader); });
}
// The operations stay valid while the node's parameters do (the driver's own storage).
RGPU_EXPORT CUresult cuGraphBatchMemOpNodeGetParams(CUgraphNode node, CUDA_BATCH_MEM_OP_NODE_PARAMS* params) {
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return get_batch_node(node, *params);
}
RGPU_EXPORT CUresult cuGraphBatchMemOpNodeSetParams(CUgraphNode node, const CUDA_BATCH_MEM_OP_NODE_PARAMS* params) {
  return set_batch_node(FN_cuGraphBatchMemOpNodeSetParams, nullptr, node, params);
}
RGPU_EXPORT CUresult cuGraphExecBatchMemOpNodeSetParams(CUgraphExec exec, CUgraphNode node,
                                                        const CUDA_BATCH_MEM_OP_NODE_PARAMS* params) {
  if (exec == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return set_batch_node(FN_cuGraphExecBatchMemOpNodeSetParams, exec, node, params);
}
