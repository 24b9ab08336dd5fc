// Graph nodes whose parameters are plain values beside a dependency array (empty, event record
// and wait, child graph, memset, memcpy between device memory and arrays, memory free, batches of
// memory operations), memcpy and batch nodes' parameters read back and changed, memory allocation
// nodes, the edges added or removed between nodes, and captures into an existing graph.
#include <cstring>
#include <vector>

#include "cuda_driver.hpp"
#include "cuda_functions.gen.hpp"
#include "cuda_graphs.hpp"
#include "cuda_handles.hpp"
#include "cuda_wire.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {

// `u32 n, n x u64 node`; at most what the payload still holds.
bool read_nodes(WireReader& args, uint32_t count, std::vector<CUgraphNode>& nodes) {
  if (count > args.remaining() / sizeof(uint64_t)) return false;
  nodes.resize(count);
  for (CUgraphNode& node : nodes) node = handle_of<CUgraphNode>(args.get<uint64_t>());
  return true;
}

using Added = CUgraphNode*;

// A copy between device memory and arrays, its host pointers cleared; false (logged, with `what`)
// for one with host memory at an end.
bool device_only(CUDA_MEMCPY3D& copy, const char* what) {
  if (!on_server(copy.srcMemoryType) || !on_server(copy.dstMemoryType)) {
    LOG_WARN("%s with memory types %u and %u: only device memory and arrays are taken; refused", what,
             memory_type(copy.srcMemoryType), memory_type(copy.dstMemoryType));
    return false;
  }
  copy.srcHost = nullptr, copy.dstHost = nullptr, copy.reserved0 = nullptr, copy.reserved1 = nullptr;
  return true;
}

// `u32 size, CUDA_MEMCPY3D`: device memory and arrays only (anything else is not what the client
// sends).
CUresult read_device_copy(WireReader& args, CUDA_MEMCPY3D& copy) {
  if (args.get<uint32_t>() != sizeof copy) return CUDA_ERROR_INVALID_VALUE;
  std::memcpy(&copy, args.bytes(sizeof copy).data(), sizeof copy);
  return device_only(copy, "a memcpy node") ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

// `u64 graph, u32 n, n x u64 dependency`, then the node's own values; the answer is `u64 node`.
CUresult add_node(uint32_t function, WireReader& args, WireWriter& out, const std::string& client) {
  const CUgraph graph = handle_of<CUgraph>(args.get<uint64_t>());
  std::vector<CUgraphNode> deps;
  if (!read_nodes(args, args.get<uint32_t>(), deps)) return CUDA_ERROR_INVALID_VALUE;
  const CUgraphNode* d = deps.empty() ? nullptr : deps.data();
  const size_t n = deps.size();
  Driver& driver = Driver::get();
  CUgraphNode node = nullptr;
  CUresult r;
  switch (function) {
    case FN_cuGraphAddEmptyNode: {
      args.expect_end();
      auto fn = driver.fn<CUresult (*)(Added, CUgraph, const CUgraphNode*, size_t)>("cuGraphAddEmptyNode");
      if (!fn) return no_driver_function("cuGraphAddEmptyNode");
      r = fn(&node, graph, d, n);
      break;
    }
    case FN_cuGraphAddEventRecordNode:
    case FN_cuGraphAddEventWaitNode: {
      const CUevent event = handle_of<CUevent>(args.get<uint64_t>());
      args.expect_end();
      const char* name = function == FN_cuGraphAddEventRecordNode ? "cuGraphAddEventRecordNode" : "cuGraphAddEventWaitNode";
      auto fn = driver.fn<CUresult (*)(Added, CUgraph, const CUgraphNode*, size_t, CUevent)>(name);
      if (!fn) return no_driver_function(name);
      r = fn(&node, graph, d, n, event);
      break;
    }
    case FN_cuGraphAddChildGraphNode: {
      const CUgraph child = handle_of<CUgraph>(args.get<uint64_t>());
      args.expect_end();
      auto fn = driver.fn<CUresult (*)(Added, CUgraph, const CUgraphNode*, size_t, CUgraph)>("cuGraphAddChildGraphNode");
      if (!fn) return no_driver_function("cuGraphAddChildGraphNode");
      r = fn(&node, graph, d, n, child);
      break;
    }
    case FN_cuGraphAddMemFreeNode: {
      const CUdeviceptr pointer = args.get<uint64_t>();
      args.expect_end();
      auto fn = driver.fn<CUresult (*)(Added, CUgraph, const CUgraphNode*, size_t, CUdeviceptr)>("cuGraphAddMemFreeNode");
      if (!fn) return no_driver_function("cuGraphAddMemFreeNode");
      r = fn(&node, graph, d, n, pointer);
      break;
    }
    case FN_cuGraphAddMemcpyNode: {  // `u32 size, CUDA_MEMCPY3D, u64 context`: device memory and arrays only
      CUDA_MEMCPY3D copy;
      if (CUresult e = read_device_copy(args, copy); e != CUDA_SUCCESS) return e;
      const CUcontext context = handle_of<CUcontext>(args.get<uint64_t>());
      args.expect_end();
      auto fn = driver.fn<CUresult (*)(Added, CUgraph, const CUgraphNode*, size_t, const CUDA_MEMCPY3D*, CUcontext)>(
          "cuGraphAddMemcpyNode");
      if (!fn) return no_driver_function("cuGraphAddMemcpyNode");
      r = fn(&node, graph, d, n, &copy, context);
      break;
    }
    case FN_cuGraphAddBatchMemOpNode: {  // `u64 context`, the batch
      CUDA_BATCH_MEM_OP_NODE_PARAMS params{};
      params.ctx = handle_of<CUcontext>(args.get<uint64_t>());
      std::vector<CUstreamBatchMemOpParams> ops;
      if (CUresult e = read_batch(args, "cuGraphAddBatchMemOpNode", true, client, ops, params.flags); e != CUDA_SUCCESS)
        return e;
      args.expect_end();
      params.count = static_cast<unsigned>(ops.size());
      params.paramArray = ops.data();
      auto fn = driver.fn<CUresult (*)(Added, CUgraph, const CUgraphNode*, size_t, const CUDA_BATCH_MEM_OP_NODE_PARAMS*)>(
          "cuGraphAddBatchMemOpNode");
      if (!fn) return no_driver_function("cuGraphAddBatchMemOpNode");
      r = fn(&node, graph, d, n, &params);
      break;
    }
    default: {  // cuGraphAddMemsetNode: `u32 size, CUDA_MEMSET_NODE_PARAMS, u64 context`
      CUDA_MEMSET_NODE_PARAMS params;
      if (args.get<uint32_t>() != sizeof params) return CUDA_ERROR_INVALID_VALUE;
      std::memcpy(&params, args.bytes(sizeof params).data(), sizeof params);
      const CUcontext context = handle_of<CUcontext>(args.get<uint64_t>());
      args.expect_end();
      auto fn = driver.fn<CUresult (*)(Added, CUgraph, const CUgraphNode*, size_t, const CUDA_MEMSET_NODE_PARAMS*,
                                       CUcontext)>("cuGraphAddMemsetNode");
      if (!fn) return no_driver_function("cuGraphAddMemsetNode");
      r = fn(&node, graph, d, n, &params, context);
      break;
    }
  }
  if (r == CUDA_SUCCESS) out.put<uint64_t>(reinterpret_cast<uintptr_t>(node));
  return r;
}

// cuGraphMemcpyNodeGetParams: `u64 node` -> `u32 size, CUDA_MEMCPY3D`. A copy with host memory at
// an end (on the server: a captured copy's staging) is not the application's to read: refused.
CUresult get_memcpy_node(WireReader& args, WireWriter& out) {
  const CUgraphNode node = handle_of<CUgraphNode>(args.get<uint64_t>());
  args.expect_end();
  auto fn = Driver::get().fn<CUresult (*)(CUgraphNode, CUDA_MEMCPY3D*)>("cuGraphMemcpyNodeGetParams");
  if (!fn) return no_driver_function("cuGraphMemcpyNodeGetParams");
  CUDA_MEMCPY3D copy{};
  if (CUresult r = fn(node, &copy); r != CUDA_SUCCESS) return r;
  // Host memory here is the server's (a captured copy's staging), never the application's.
  if (!device_only(copy, "cuGraphMemcpyNodeGetParams: a node's copy")) return CUDA_ERROR_NOT_SUPPORTED;
  out.put<uint32_t>(sizeof copy).bytes(&copy, sizeof copy);
  return CUDA_SUCCESS;
}

// cuGraphMemcpyNodeSetParams: `u64 node, u32 size, CUDA_MEMCPY3D`; cuGraphExecMemcpyNodeSetParams:
// `u64 exec, u64 node, u32 size, CUDA_MEMCPY3D, u64 context`.
CUresult set_memcpy_node(uint32_t function, WireReader& args) {
  const bool in_exec = function == FN_cuGraphExecMemcpyNodeSetParams;
  const CUgraphExec exec = in_exec ? handle_of<CUgraphExec>(args.get<uint64_t>()) : nullptr;
  const CUgraphNode node = handle_of<CUgraphNode>(args.get<uint64_t>());
  CUDA_MEMCPY3D copy;
  if (CUresult r = read_device_copy(args, copy); r != CUDA_SUCCESS) return r;
  const CUcontext context = in_exec ? handle_of<CUcontext>(args.get<uint64_t>()) : nullptr;
  args.expect_end();
  Driver& driver = Driver::get();
  if (in_exec) {
    auto fn = driver.fn<CUresult (*)(CUgraphExec, CUgraphNode, const CUDA_MEMCPY3D*, CUcontext)>(
        "cuGraphExecMemcpyNodeSetParams");
    return fn ? fn(exec, node, &copy, context) : no_driver_function("cuGraphExecMemcpyNodeSetParams");
  }
  auto fn = driver.fn<CUresult (*)(CUgraphNode, const CUDA_MEMCPY3D*)>("cuGraphMemcpyNodeSetParams");
  return fn ? fn(node, &copy) : no_driver_function("cuGraphMemcpyNodeSetParams");
}

// cuGraphBatchMemOpNodeGetParams: `u64 node` -> `u64 context, u32 count, u32 flags, u32 size`, the
// operations.
CUresult get_batch_node(WireReader& args, WireWriter& out) {
  const CUgraphNode node = handle_of<CUgraphNode>(args.get<uint64_t>());
  args.expect_end();
  auto fn = Driver::get().fn<CUresult (*)(CUgraphNode, CUDA_BATCH_MEM_OP_NODE_PARAMS*)>("cuGraphBatchMemOpNodeGetParams");
  if (!fn) return no_driver_function("cuGraphBatchMemOpNodeGetParams");
  CUDA_BATCH_MEM_OP_NODE_PARAMS params{};
  if (CUresult r = fn(node, &params); r != CUDA_SUCCESS) return r;
  if (params.count > kMaxBatchMemOps || (params.count > 0 && params.paramArray == nullptr)) {
    LOG_WARN("cuGraphBatchMemOpNodeGetParams: the driver answered %u operations; more than travel", params.count);
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  out.put(raw_of(params.ctx)).put<uint32_t>(params.count).put<uint32_t>(params.flags);
  out.put<uint32_t>(sizeof(CUstreamBatchMemOpParams));
  out.bytes(params.paramArray, size_t{params.count} * sizeof(CUstreamBatchMemOpParams));
  return CUDA_SUCCESS;
}

// cuGraphBatchMemOpNodeSetParams: `u64 node, u64 context`, the batch; cuGraphExecBatchMemOpNodeSetParams:
// `u64 exec` first.
CUresult set_batch_node(uint32_t function, WireReader& args, const std::string& client) {
  const bool in_exec = function == FN_cuGraphExecBatchMemOpNodeSetParams;
  const char* name = in_exec ? "cuGraphExecBatchMemOpNodeSetParams" : "cuGraphBatchMemOpNodeSetParams";
  const CUgraphExec exec = in_exec ? handle_of<CUgraphExec>(args.get<uint64_t>()) : nullptr;
  const CUgraphNode node = handle_of<CUgraphNode>(args.get<uint64_t>());
  CUDA_BATCH_MEM_OP_NODE_PARAMS params{};
  params.ctx = handle_of<CUcontext>(args.get<uint64_t>());
  std::vector<CUstreamBatchMemOpParams> ops;
  if (CUresult r = read_batch(args, name, true, client, ops, params.flags); r != CUDA_SUCCESS) return r;
  args.expect_end();
  params.count = static_cast<unsigned>(ops.size());
  params.paramArray = ops.data();
  Driver& driver = Driver::get();
  if (in_exec) {
    auto fn = driver.fn<CUresult (*)(CUgraphExec, CUgraphNode, const CUDA_BATCH_MEM_OP_NODE_PARAMS*)>(name);
    return fn ? fn(exec, node, &params) : no_driver_function(name);
  }
  auto fn = driver.fn<CUresult (*)(CUgraphNode, const CUDA_BATCH_MEM_OP_NODE_PARAMS*)>(name);
  return fn ? fn(node, &params) : no_driver_function(name);
}

// `u64 graph, u32 n, n x u64 from, n x u64 to, u8 has edge data, [n x CUgraphEdgeData]`.
CUresult change_dependencies(uint32_t function, WireReader& args) {
  const CUgraph graph = handle_of<CUgraph>(args.get<uint64_t>());
  const uint32_t count = args.get<uint32_t>();
  std::vector<CUgraphNode> from, to;
  if (!read_nodes(args, count, from) || !read_nodes(args, count, to)) return CUDA_ERROR_INVALID_VALUE;
  std::vector<CUgraphEdgeData> edges;
  if (args.get<uint8_t>() != 0) {
    if (count > args.remaining() / sizeof(CUgraphEdgeData)) return CUDA_ERROR_INVALID_VALUE;
    edges.resize(count);
    for (CUgraphEdgeData& edge : edges) edge = args.get<CUgraphEdgeData>();
  }
  args.expect_end();
  const bool add = function == FN_cuGraphAddDependencies || function == FN_cuGraphAddDependencies_v2;
  Driver& driver = Driver::get();
  if (!edges.empty()) {
    const char* name = add ? "cuGraphAddDependencies_v2" : "cuGraphRemoveDependencies_v2";
    auto fn = driver.fn<CUresult (*)(CUgraph, const CUgraphNode*, const CUgraphNode*, const CUgraphEdgeData*, size_t)>(name);
    return fn ? fn(graph, from.data(), to.data(), edges.data(), count) : no_driver_function(name);
  }
  const char* name = add ? "cuGraphAddDependencies" : "cuGraphRemoveDependencies";
  auto fn = driver.fn<CUresult (*)(CUgraph, const CUgraphNode*, const CUgraphNode*, size_t)>(name);
  return fn ? fn(graph, from.data(), to.data(), count) : no_driver_function(name);
}
// cuStreamBeginCaptureToGraph(_ptsz): `u64 stream, u64 graph, u32 n, n x u64 dependency, u8 has
// edge data, [n x CUgraphEdgeData], u32 mode`.
CUresult begin_capture_to_graph(uint32_t function, WireReader& args) {
  const CUstream stream = handle_of<CUstream>(args.get<uint64_t>());
  const CUgraph graph = handle_of<CUgraph>(args.get<uint64_t>());
  std::vector<CUgraphNode> deps;
  if (!read_nodes(args, args.get<uint32_t>(), deps)) return CUDA_ERROR_INVALID_VALUE;
  std::vector<CUgraphEdgeData> edges;
  if (args.get<uint8_t>() != 0) {
    if (deps.size() > args.remaining() / sizeof(CUgraphEdgeData)) return CUDA_ERROR_INVALID_VALUE;
    edges.resize(deps.size());
    for (CUgraphEdgeData& edge : edges) edge = args.get<CUgraphEdgeData>();
  }
  const uint32_t mode = args.get<uint32_t>();
  args.expect_end();
  if (mode > CU_STREAM_CAPTURE_MODE_RELAXED) return CUDA_ERROR_INVALID_VALUE;
  const char* name = function == FN_cuStreamBeginCaptureToGraph ? "cuStreamBeginCaptureToGraph"
                                                                : "cuStreamBeginCaptureToGraph_ptsz";
  auto fn = Driver::get().fn<CUresult (*)(CUstream, CUgraph, const CUgraphNode*, const CUgraphEdgeData*, size_t,
                                          CUstreamCaptureMode)>(name);
  if (!fn) return no_driver_function(name);
  return fn(stream, graph, deps.empty() ? nullptr : deps.data(), edges.empty() ? nullptr : edges.data(), deps.size(),
            static_cast<CUstreamCaptureMode>(mode));
}
// A location's device: the application's ordinal on the wire, the driver's here.
void translate_location(CUmemLocation& location, const DeviceMap& devices, bool to_real) {
  uint32_t type;
  std::memcpy(&type, &location.type, sizeof type);
  if (type == CU_MEM_LOCATION_TYPE_DEVICE) location.id = to_real ? devices.to_real(location.id) : devices.to_app(location.id);
}
}  // namespace

CUresult add_mem_alloc_node(WireReader& args, WireWriter& out, const DeviceMap& devices) {
  const CUgraph graph = handle_of<CUgraph>(args.get<uint64_t>());
  std::vector<CUgraphNode> deps;
  if (!read_nodes(args, args.get<uint32_t>(), deps)) return CUDA_ERROR_INVALID_VALUE;
  CUDA_MEM_ALLOC_NODE_PARAMS params{};
  if (args.get<uint32_t>() != sizeof params.poolProps) return CUDA_ERROR_INVALID_VALUE;
  std::memcpy(&params.poolProps, args.bytes(sizeof params.poolProps).data(), sizeof params.poolProps);
  const uint32_t count = args.get<uint32_t>();
  if (count > kMaxStructArray || count > args.remaining() / sizeof(CUmemAccessDesc)) return CUDA_ERROR_INVALID_VALUE;
  std::vector<CUmemAccessDesc> access(count);
  if (count) std::memcpy(access.data(), args.bytes(count * sizeof(CUmemAccessDesc)).data(), count * sizeof(CUmemAccessDesc));
  params.bytesize = args.get<uint64_t>();
  args.expect_end();
  if (params.poolProps.win32SecurityAttributes != nullptr) {
    LOG_WARN("a memory allocation node whose pool has Windows security attributes; refused");
    return CUDA_ERROR_INVALID_VALUE;
  }
  translate_location(params.poolProps.location, devices, true);
  for (CUmemAccessDesc& desc : access) translate_location(desc.location, devices, true);
  params.accessDescs = access.empty() ? nullptr : access.data();
  params.accessDescCount = access.size();
  auto fn = Driver::get().fn<CUresult (*)(Added, CUgraph, const CUgraphNode*, size_t, CUDA_MEM_ALLOC_NODE_PARAMS*)>(
      "cuGraphAddMemAllocNode");
  if (!fn) return no_driver_function("cuGraphAddMemAllocNode");
  CUgraphNode node = nullptr;
  const CUresult r = fn(&node, graph, deps.empty() ? nullptr : deps.data(), deps.size(), &params);
  if (r == CUDA_SUCCESS) out.put(raw_of(node)).put<uint64_t>(params.dptr);
  return r;
}

CUresult get_mem_alloc_node(WireReader& args, WireWriter& out, const DeviceMap& devices) {
  const CUgraphNode node = handle_of<CUgraphNode>(args.get<uint64_t>());
  args.expect_end();
  auto fn = Driver::get().fn<CUresult (*)(CUgraphNode, CUDA_MEM_ALLOC_NODE_PARAMS*)>("cuGraphMemAllocNodeGetParams");
  if (!fn) return no_driver_function("cuGraphMemAllocNodeGetParams");
  CUDA_MEM_ALLOC_NODE_PARAMS params{};
  if (CUresult r = fn(node, &params); r != CUDA_SUCCESS) return r;
  if (params.accessDescCount > kMaxStructArray || (params.accessDescCount > 0 && params.accessDescs == nullptr)) {
    LOG_WARN("cuGraphMemAllocNodeGetParams: the driver answered %zu access descriptors; more than travel",
             params.accessDescCount);
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  params.poolProps.win32SecurityAttributes = nullptr;
  translate_location(params.poolProps.location, devices, false);
  out.put<uint32_t>(sizeof params.poolProps).bytes(&params.poolProps, sizeof params.poolProps);
  out.put<uint32_t>(static_cast<uint32_t>(params.accessDescCount));
  for (size_t i = 0; i < params.accessDescCount; ++i) {
    CUmemAccessDesc desc = params.accessDescs[i];
    translate_location(desc.location, devices, false);
    out.bytes(&desc, sizeof desc);
  }
  out.put<uint64_t>(params.bytesize).put<uint64_t>(params.dptr);
  return CUDA_SUCCESS;
}

bool is_plain_node_call(uint32_t function) {
  switch (function) {
    case FN_cuGraphAddEmptyNode:
    case FN_cuGraphAddEventRecordNode:
    case FN_cuGraphAddEventWaitNode:
    case FN_cuGraphAddChildGraphNode:
    case FN_cuGraphAddMemFreeNode:
    case FN_cuGraphAddMemsetNode:
    case FN_cuGraphAddMemcpyNode:
    case FN_cuGraphAddDependencies:
    case FN_cuGraphAddDependencies_v2:
    case FN_cuGraphRemoveDependencies:
    case FN_cuGraphRemoveDependencies_v2:
    case FN_cuStreamBeginCaptureToGraph:
    case FN_cuStreamBeginCaptureToGraph_ptsz:
    case FN_cuGraphMemcpyNodeGetParams:
    case FN_cuGraphMemcpyNodeSetParams:
    case FN_cuGraphExecMemcpyNodeSetParams:
    case FN_cuGraphAddBatchMemOpNode:
    case FN_cuGraphBatchMemOpNodeGetParams:
    case FN_cuGraphBatchMemOpNodeSetParams:
    case FN_cuGraphExecBatchMemOpNodeSetParams: return true;
    default: return false;
  }
}

CUresult plain_node_call(uint32_t function, WireReader& args, WireWriter& out, const std::string& client) {
  switch (function) {
    case FN_cuGraphAddDependencies:
    case FN_cuGraphAddDependencies_v2:
    case FN_cuGraphRemoveDependencies:
    case FN_cuGraphRemoveDependencies_v2: return change_dependencies(function, args);
    case FN_cuStreamBeginCaptureToGraph:
    case FN_cuStreamBeginCaptureToGraph_ptsz: return begin_capture_to_graph(function, args);
    case FN_cuGraphMemcpyNodeGetParams: return get_memcpy_node(args, out);
    case FN_cuGraphMemcpyNodeSetParams:
    case FN_cuGraphExecMemcpyNodeSetParams: return set_memcpy_node(function, args);
    case FN_cuGraphBatchMemOpNodeGetParams: return get_batch_node(args, out);
    case FN_cuGraphBatchMemOpNodeSetParams:
    case FN_cuGraphExecBatchMemOpNodeSetParams: return set_batch_node(function, args, client);
    default: return add_node(function, args, out, client);
  }
}

}  // namespace rgpu::cuda
