#include "cuda_graphs.hpp"
#include "cuda_handles.hpp"

#include <algorithm>
#include <cstring>
#include <span>

#include "cuda_driver.hpp"
#include "cuda_functions.gen.hpp"
#include "cuda_wire.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {

// ---- lists ---------------------------------------------------------------------------------

struct ListCall {
  uint32_t id;
  const char* name;
  bool pairs;      // edges: from and to
  bool edge_data;  // the _v2 form, which can also answer each edge's data
};
constexpr ListCall kLists[] = {
    {FN_cuGraphGetNodes, "cuGraphGetNodes", false, false},
    {FN_cuGraphGetRootNodes, "cuGraphGetRootNodes", false, false},
    {FN_cuGraphGetEdges, "cuGraphGetEdges", true, false},
    {FN_cuGraphGetEdges_v2, "cuGraphGetEdges_v2", true, true},
    {FN_cuGraphNodeGetDependencies, "cuGraphNodeGetDependencies", false, false},
    {FN_cuGraphNodeGetDependencies_v2, "cuGraphNodeGetDependencies_v2", false, true},
    {FN_cuGraphNodeGetDependentNodes, "cuGraphNodeGetDependentNodes", false, false},
    {FN_cuGraphNodeGetDependentNodes_v2, "cuGraphNodeGetDependentNodes_v2", false, true},
};

const ListCall* find_list(uint32_t id) { return find_call(kLists, id); }

// The graph or node handle goes to the driver as the pointer it is.
CUresult run_list(const ListCall& call, void* handle, CUgraphNode* first, CUgraphNode* second, CUgraphEdgeData* edges,
                  size_t* count) {
  void* fn = Driver::get().symbol(call.name);
  if (fn == nullptr) return no_driver_function(call.name);
  if (call.pairs && call.edge_data)
    return reinterpret_cast<CUresult (*)(void*, CUgraphNode*, CUgraphNode*, CUgraphEdgeData*, size_t*)>(fn)(
        handle, first, second, edges, count);
  if (call.pairs)
    return reinterpret_cast<CUresult (*)(void*, CUgraphNode*, CUgraphNode*, size_t*)>(fn)(handle, first, second, count);
  if (call.edge_data)
    return reinterpret_cast<CUresult (*)(void*, CUgraphNode*, CUgraphEdgeData*, size_t*)>(fn)(handle, first, edges, count);
  return reinterpret_cast<CUresult (*)(void*, CUgraphNode*, size_t*)>(fn)(handle, first, count);
}

// Asks the length first, so that what the server sets aside is what the graph has, not what the
// application says its arrays hold.
CUresult graph_list(const ListCall& call, WireReader& args, WireWriter& out) {
  void* handle = handle_of<void*>(args.get<uint64_t>());
  const uint64_t capacity = args.get<uint64_t>();
  const uint8_t lists = args.get<uint8_t>();
  args.expect_end();
  if (lists & ~(kGraphListNodes | kGraphListEdgeData)) return CUDA_ERROR_INVALID_VALUE;
  const bool with_edges = (lists & kGraphListEdgeData) && call.edge_data;
  size_t total = 0;
  if (CUresult r = run_list(call, handle, nullptr, nullptr, nullptr, &total); r != CUDA_SUCCESS) return r;
  if (!(lists & kGraphListNodes)) {
    out.put<uint64_t>(total).put<uint64_t>(0);
    return CUDA_SUCCESS;
  }
  size_t n = std::min<uint64_t>(capacity, total);
  if (n > kMaxGraphList) {
    LOG_WARN("%s: a list of %zu entries is over the %llu that travel", call.name, n,
             static_cast<unsigned long long>(kMaxGraphList));
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::vector<CUgraphNode> first(n), second(call.pairs ? n : 0);
  std::vector<CUgraphEdgeData> edges(with_edges ? n : 0);
  size_t count = n;
  if (CUresult r = run_list(call, handle, first.data(), call.pairs ? second.data() : nullptr,
                            with_edges ? edges.data() : nullptr, &count);
      r != CUDA_SUCCESS)
    return r;
  n = std::min(n, count);
  out.put<uint64_t>(count).put<uint64_t>(n);
  for (size_t i = 0; i < n; ++i) out.put(raw_of(first[i]));
  for (size_t i = 0; call.pairs && i < n; ++i) out.put(raw_of(second[i]));
  for (size_t i = 0; with_edges && i < n; ++i) out.put(edges[i]);
  return CUDA_SUCCESS;
}

// ---- kernel nodes --------------------------------------------------------------------------

// `u64 func, u64 kern, u64 ctx, 6 x u32 grid/block, u32 shared`, then the arguments: the driver
// struct, its kernelParams pointing into `arguments`.
CUresult read_kernel_node(WireReader& args, const LayoutLookup& layouts, CUDA_KERNEL_NODE_PARAMS_v2& params,
                          KernelArguments& arguments) {
  params = {};
  params.func = handle_of<CUfunction>(args.get<uint64_t>());
  params.kern = handle_of<CUkernel>(args.get<uint64_t>());
  params.ctx = handle_of<CUcontext>(args.get<uint64_t>());
  params.gridDimX = args.get<uint32_t>(), params.gridDimY = args.get<uint32_t>(), params.gridDimZ = args.get<uint32_t>();
  params.blockDimX = args.get<uint32_t>(), params.blockDimY = args.get<uint32_t>(), params.blockDimZ = args.get<uint32_t>();
  params.sharedMemBytes = args.get<uint32_t>();
  const CUfunction f = params.func ? params.func : handle_of<CUfunction>(raw_of(params.kern));
  std::shared_ptr<const ParamLayout> layout;
  if (CUresult r = layouts(f, layout); r != CUDA_SUCCESS) return r;
  if (CUresult r = read_kernel_arguments(args, *layout, arguments); r != CUDA_SUCCESS) return r;
  params.kernelParams = arguments.driver_params();
  return CUDA_SUCCESS;
}

CUresult write_kernel_node(WireWriter& out, const LayoutLookup& layouts, const CUDA_KERNEL_NODE_PARAMS_v2& params) {
  const CUfunction f = params.func ? params.func : handle_of<CUfunction>(raw_of(params.kern));
  std::shared_ptr<const ParamLayout> layout;
  if (CUresult r = layouts(f, layout); r != CUDA_SUCCESS) return r;
  out.put(raw_of(params.func)).put(raw_of(params.kern)).put(raw_of(params.ctx));
  for (unsigned value : {params.gridDimX, params.gridDimY, params.gridDimZ, params.blockDimX, params.blockDimY,
                         params.blockDimZ, params.sharedMemBytes})
    out.put<uint32_t>(value);
  return write_kernel_arguments(out, *layout, params.kernelParams, params.extra);
}

bool is_kernel_node_call(uint32_t id) {
  switch (id) {
    case FN_cuGraphAddKernelNode:
    case FN_cuGraphAddKernelNode_v2:
    case FN_cuGraphAddNode:
    case FN_cuGraphAddNode_v2:
    case FN_cuGraphKernelNodeGetParams:
    case FN_cuGraphKernelNodeGetParams_v2:
    case FN_cuGraphKernelNodeSetParams:
    case FN_cuGraphKernelNodeSetParams_v2:
    case FN_cuGraphNodeSetParams:
    case FN_cuGraphExecKernelNodeSetParams:
    case FN_cuGraphExecKernelNodeSetParams_v2:
    case FN_cuGraphExecNodeSetParams: return true;
    default: return false;
  }
}

// cuGraphAddNode_v2 (cuGraphAddNode without edge data, for drivers before it).
CUresult add_generic_node(CUgraphNode& node, CUgraph graph, const std::vector<CUgraphNode>& dependencies,
                          const std::vector<CUgraphEdgeData>& edges, CUgraphNodeParams& params) {
  Driver& d = Driver::get();
  const CUgraphNode* deps = dependencies.empty() ? nullptr : dependencies.data();
  if (auto v2 = d.fn<CUresult (*)(CUgraphNode*, CUgraph, const CUgraphNode*, const CUgraphEdgeData*, size_t,
                                  CUgraphNodeParams*)>("cuGraphAddNode_v2"))
    return v2(&node, graph, deps, edges.empty() ? nullptr : edges.data(), dependencies.size(), &params);
  auto v1 = d.fn<CUresult (*)(CUgraphNode*, CUgraph, const CUgraphNode*, size_t, CUgraphNodeParams*)>("cuGraphAddNode");
  if (!v1 || !edges.empty()) return no_driver_function("cuGraphAddNode_v2");
  return v1(&node, graph, deps, dependencies.size(), &params);
}

// `u64 handle, u32 type, u32 size, u64 context` -> `u64 node, u32 n, n x u64 body graph`.
CUresult add_conditional_node(WireReader& args, WireWriter& out, CUgraph graph,
                              const std::vector<CUgraphNode>& dependencies, const std::vector<CUgraphEdgeData>& edges) {
  CUgraphNodeParams params{};
  params.type = CU_GRAPH_NODE_TYPE_CONDITIONAL;
  params.conditional.handle = args.get<uint64_t>();
  const uint32_t type = args.get<uint32_t>();
  params.conditional.size = args.get<uint32_t>();
  params.conditional.ctx = handle_of<CUcontext>(args.get<uint64_t>());
  args.expect_end();
  if (params.conditional.size == 0 || params.conditional.size > kMaxConditionalBodies) return CUDA_ERROR_INVALID_VALUE;
  std::memcpy(&params.conditional.type, &type, sizeof type);
  CUgraphNode node = nullptr;
  if (CUresult r = add_generic_node(node, graph, dependencies, edges, params); r != CUDA_SUCCESS) return r;
  out.put(raw_of(node)).put<uint32_t>(params.conditional.size);
  for (uint32_t i = 0; i < params.conditional.size; ++i) out.put(raw_of(params.conditional.phGraph_out[i]));
  return CUDA_SUCCESS;
}

// Adds: `u64 graph, u32 n, n x u64 dependency, u8 has edge data, [n x CUgraphEdgeData], u32 node
// type`, then the node: a KernelNode, or a conditional node's values.
CUresult add_kernel_node(WireReader& args, WireWriter& out, const LayoutLookup& layouts) {
  const CUgraph graph = handle_of<CUgraph>(args.get<uint64_t>());
  const uint32_t count = args.get<uint32_t>();
  if (count > args.remaining() / sizeof(uint64_t)) return CUDA_ERROR_INVALID_VALUE;
  std::vector<CUgraphNode> dependencies(count);
  for (CUgraphNode& node : dependencies) node = handle_of<CUgraphNode>(args.get<uint64_t>());
  std::vector<CUgraphEdgeData> edges;
  if (args.get<uint8_t>() != 0) {
    if (count > args.remaining() / sizeof(CUgraphEdgeData)) return CUDA_ERROR_INVALID_VALUE;
    edges.resize(count);
    for (CUgraphEdgeData& edge : edges) edge = args.get<CUgraphEdgeData>();
  }
  const uint32_t type = args.get<uint32_t>();
  if (type == CU_GRAPH_NODE_TYPE_CONDITIONAL) return add_conditional_node(args, out, graph, dependencies, edges);
  if (type != CU_GRAPH_NODE_TYPE_KERNEL) return CUDA_ERROR_INVALID_VALUE;
  CUDA_KERNEL_NODE_PARAMS_v2 params;
  KernelArguments arguments;
  if (CUresult r = read_kernel_node(args, layouts, params, arguments); r != CUDA_SUCCESS) return r;
  args.expect_end();
  Driver& d = Driver::get();
  CUgraphNode node = nullptr;
  CUresult r;
  if (!edges.empty()) {
    CUgraphNodeParams node_params{};
    node_params.type = CU_GRAPH_NODE_TYPE_KERNEL;
    static_assert(sizeof node_params.kernel == sizeof params);
    std::memcpy(&node_params.kernel, &params, sizeof params);
    r = add_generic_node(node, graph, dependencies, edges, node_params);
  } else {
    auto fn = d.fn<CUresult (*)(CUgraphNode*, CUgraph, const CUgraphNode*, size_t, const CUDA_KERNEL_NODE_PARAMS_v2*)>(
        "cuGraphAddKernelNode_v2");
    if (!fn) return no_driver_function("cuGraphAddKernelNode_v2");
    r = fn(&node, graph, count ? dependencies.data() : nullptr, count, &params);
  }
  if (r == CUDA_SUCCESS) out.put(raw_of(node));
  return r;
}

CUresult kernel_node_call(uint32_t id, WireReader& args, WireWriter& out, const LayoutLookup& layouts) {
  Driver& d = Driver::get();
  switch (id) {
    case FN_cuGraphAddKernelNode:
    case FN_cuGraphAddKernelNode_v2:
    case FN_cuGraphAddNode:
    case FN_cuGraphAddNode_v2: return add_kernel_node(args, out, layouts);
    case FN_cuGraphKernelNodeGetParams:
    case FN_cuGraphKernelNodeGetParams_v2: {
      const CUgraphNode node = handle_of<CUgraphNode>(args.get<uint64_t>());
      args.expect_end();
      auto fn = d.fn<CUresult (*)(CUgraphNode, CUDA_KERNEL_NODE_PARAMS_v2*)>("cuGraphKernelNodeGetParams_v2");
      if (!fn) return no_driver_function("cuGraphKernelNodeGetParams_v2");
      CUDA_KERNEL_NODE_PARAMS_v2 params{};
      if (CUresult r = fn(node, &params); r != CUDA_SUCCESS) return r;
      return write_kernel_node(out, layouts, params);
    }
    case FN_cuGraphKernelNodeSetParams:
    case FN_cuGraphKernelNodeSetParams_v2:
    case FN_cuGraphNodeSetParams: {
      const CUgraphNode node = handle_of<CUgraphNode>(args.get<uint64_t>());
      CUDA_KERNEL_NODE_PARAMS_v2 params;
      KernelArguments arguments;
      if (CUresult r = read_kernel_node(args, layouts, params, arguments); r != CUDA_SUCCESS) return r;
      args.expect_end();
      auto fn = d.fn<CUresult (*)(CUgraphNode, const CUDA_KERNEL_NODE_PARAMS_v2*)>("cuGraphKernelNodeSetParams_v2");
      return fn ? fn(node, &params) : no_driver_function("cuGraphKernelNodeSetParams_v2");
    }
    default: {  // the executable graph's node
      const CUgraphExec exec = handle_of<CUgraphExec>(args.get<uint64_t>());
      const CUgraphNode node = handle_of<CUgraphNode>(args.get<uint64_t>());
      CUDA_KERNEL_NODE_PARAMS_v2 params;
      KernelArguments arguments;
      if (CUresult r = read_kernel_node(args, layouts, params, arguments); r != CUDA_SUCCESS) return r;
      args.expect_end();
      auto fn = d.fn<CUresult (*)(CUgraphExec, CUgraphNode, const CUDA_KERNEL_NODE_PARAMS_v2*)>(
          "cuGraphExecKernelNodeSetParams_v2");
      return fn ? fn(exec, node, &params) : no_driver_function("cuGraphExecKernelNodeSetParams_v2");
    }
  }
}

// ---- batches of memory operations ----------------------------------------------------------

struct BatchCall {
  uint32_t id;
  const char* name;
  bool v2;  // knows CU_STREAM_MEM_OP_BARRIER
};
constexpr BatchCall kBatches[] = {
    {FN_cuStreamBatchMemOp, "cuStreamBatchMemOp", false},
    {FN_cuStreamBatchMemOp_ptsz, "cuStreamBatchMemOp_ptsz", false},
    {FN_cuStreamBatchMemOp_v2, "cuStreamBatchMemOp_v2", true},
    {FN_cuStreamBatchMemOp_v2_ptsz, "cuStreamBatchMemOp_v2_ptsz", true},
};

bool known_operation(uint32_t type, bool v2) {
  switch (type) {
    case CU_STREAM_MEM_OP_WAIT_VALUE_32:
    case CU_STREAM_MEM_OP_WRITE_VALUE_32:
    case CU_STREAM_MEM_OP_WAIT_VALUE_64:
    case CU_STREAM_MEM_OP_WRITE_VALUE_64:
    case CU_STREAM_MEM_OP_FLUSH_REMOTE_WRITES: return true;
    case CU_STREAM_MEM_OP_BARRIER: return v2;
    default: return false;
  }
}

// `u64 stream`, the batch.
CUresult batch_mem_op(const BatchCall& call, WireReader& args, const std::string& client) {
  const CUstream stream = handle_of<CUstream>(args.get<uint64_t>());
  std::vector<CUstreamBatchMemOpParams> ops;
  uint32_t flags = 0;
  if (CUresult r = read_batch(args, call.name, call.v2, client, ops, flags); r != CUDA_SUCCESS) return r;
  args.expect_end();
  auto fn = Driver::get().fn<CUresult (*)(CUstream, unsigned, CUstreamBatchMemOpParams*, unsigned)>(call.name);
  return fn ? fn(stream, static_cast<unsigned>(ops.size()), ops.data(), flags) : no_driver_function(call.name);
}

const BatchCall* find_batch(uint32_t id) { return find_call(kBatches, id); }
}  // namespace

CUresult read_batch(WireReader& args, const char* name, bool v2, const std::string& client,
                    std::vector<CUstreamBatchMemOpParams>& ops, uint32_t& flags) {
  const uint32_t count = args.get<uint32_t>();
  flags = args.get<uint32_t>();
  const uint32_t size = args.get<uint32_t>();
  if (size != sizeof(CUstreamBatchMemOpParams)) {
    LOG_WARN("%s: %s with operations of %u bytes, this server's are %zu; refused", client.c_str(), name, size,
             sizeof(CUstreamBatchMemOpParams));
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (count == 0 || count > kMaxBatchMemOps) {
    LOG_WARN("%s: %s with %u operations (1 to %u travel); refused", client.c_str(), name, count, kMaxBatchMemOps);
    return CUDA_ERROR_INVALID_VALUE;
  }
  ops.resize(count);
  std::memcpy(ops.data(), args.bytes(size_t{count} * size).data(), size_t{count} * size);
  for (uint32_t i = 0; i < count; ++i) {
    if (!known_operation(ops[i].operation, v2)) {
      LOG_WARN("%s: %s operation %u has type %u, not one %s takes; refused", client.c_str(), name, i,
               static_cast<unsigned>(ops[i].operation), name);
      return CUDA_ERROR_INVALID_VALUE;
    }
  }
  return CUDA_SUCCESS;
}

CUresult no_driver_function(const char* name) {
  LOG_WARN("the server's CUDA driver has no %s", name);
  return CUDA_ERROR_NOT_SUPPORTED;
}

bool is_graph_call(uint32_t function) {
  return find_list(function) != nullptr || is_kernel_node_call(function) || find_batch(function) != nullptr ||
         is_plain_node_call(function);
}

CUresult graph_call(uint32_t function, WireReader& args, WireWriter& out, const LayoutLookup& layouts,
                    const std::string& client) {
  if (const ListCall* list = find_list(function)) return graph_list(*list, args, out);
  if (const BatchCall* batch = find_batch(function)) return batch_mem_op(*batch, args, client);
  if (is_kernel_node_call(function)) return kernel_node_call(function, args, out, layouts);
  if (is_plain_node_call(function)) return plain_node_call(function, args, out, client);
  return CUDA_ERROR_NOT_SUPPORTED;
}

namespace {
// Whether `graph` or a child graph of it has a host node (or a conditional node, not walked).
bool has_host_nodes(CUgraph graph, int depth) {
  Driver& d = Driver::get();
  auto get_nodes = d.fn<CUresult (*)(CUgraph, CUgraphNode*, size_t*)>("cuGraphGetNodes");
  auto node_type = d.fn<CUresult (*)(CUgraphNode, CUgraphNodeType*)>("cuGraphNodeGetType");
  auto child = d.fn<CUresult (*)(CUgraphNode, CUgraph*)>("cuGraphChildGraphNodeGetGraph");
  size_t count = 0;
  if (depth > 16 || !get_nodes || !node_type || get_nodes(graph, nullptr, &count) != CUDA_SUCCESS)
    return true;  // cannot tell: refused, to be safe
  std::vector<CUgraphNode> nodes(count);
  if (count > 0 && get_nodes(graph, nodes.data(), &count) != CUDA_SUCCESS) return true;
  for (CUgraphNode node : nodes) {
    CUgraphNodeType type;
    if (node_type(node, &type) != CUDA_SUCCESS) return true;
    if (type == CU_GRAPH_NODE_TYPE_HOST || type == CU_GRAPH_NODE_TYPE_CONDITIONAL) return true;
    CUgraph inner = nullptr;
    if (type == CU_GRAPH_NODE_TYPE_GRAPH && (!child || child(node, &inner) != CUDA_SUCCESS || has_host_nodes(inner, depth + 1)))
      return true;
  }
  return false;
}
}  // namespace

CUresult refuse_update_with_host_nodes(uint32_t function, const std::vector<uint64_t>& ins, const std::string& client) {
  if (function != FN_cuGraphExecUpdate && function != FN_cuGraphExecUpdate_v2) return CUDA_SUCCESS;
  if (ins.size() < 2 || !has_host_nodes(handle_of<CUgraph>(ins[1]), 0)) return CUDA_SUCCESS;
  LOG_WARN("%s: cuGraphExecUpdate from a graph with host nodes (or conditional nodes) is not supported: the "
           "executable graph would outlive what its host nodes run; refused",
           client.c_str());
  return CUDA_ERROR_NOT_SUPPORTED;
}

}  // namespace rgpu::cuda
