// Host functions and stream callbacks: the function stays in this process under an id, the server
// puts the id in stream order (pipelined, as a launch), and the host function thread runs it when
// the stream gets there (host_function_runner.cpp). Host nodes of graphs the same way; a host
// node's parameters read back are the function and data kept under the id the server names.
#include "api_state.hpp"
#include "cuda_client.hpp"
#include "daemon_link.hpp"
#include "host_function_runner.hpp"
#include "log.hpp"

using namespace rgpu::cuda;

namespace {
CUresult launch(uint32_t variant, CUstream stream, const HostFunction& function, unsigned flags) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (function.function == nullptr && function.callback == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const uint64_t id = register_host_function(function);
  if (id == 0) return kLinkLost;
  CallBuilder call(FN_rgpuLaunchHostFunction);
  call.writer().put(variant).put(reinterpret_cast<uint64_t>(stream)).put(id).put<uint32_t>(flags);
  const CUresult r = call_pipelined(call);
  if (r != CUDA_SUCCESS) forget_host_function(id);
  return r;
}

// cuGraphHostNodeSetParams (no exec) and cuGraphExecHostNodeSetParams: a new id for the function.
CUresult set_host_node(uint32_t function, CUgraphExec exec, CUgraphNode node, const CUDA_HOST_NODE_PARAMS* params) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params == nullptr || params->fn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const uint64_t id = register_host_function(HostFunction{params->fn, nullptr, params->userData, nullptr});
  if (id == 0) return kLinkLost;
  CallBuilder call(function);
  if (function == FN_cuGraphExecHostNodeSetParams) call.writer().put(reinterpret_cast<uint64_t>(exec));
  call.writer().put(reinterpret_cast<uint64_t>(node)).put(id);
  const CUresult r = call_sync(call, [](rgpu::WireReader&) {});
  if (r != CUDA_SUCCESS) forget_host_function(id);
  return r;
}
}  // namespace

RGPU_EXPORT CUresult cuLaunchHostFunc(CUstream stream, CUhostFn fn, void* data) {
  return launch(FN_cuLaunchHostFunc, stream, HostFunction{fn, nullptr, data, stream}, 0);
}
RGPU_EXPORT CUresult cuLaunchHostFunc_ptsz(CUstream stream, CUhostFn fn, void* data) {
  return launch(FN_cuLaunchHostFunc_ptsz, stream, HostFunction{fn, nullptr, data, stream}, 0);
}
RGPU_EXPORT CUresult cuStreamAddCallback(CUstream stream, CUstreamCallback callback, void* data, unsigned flags) {
  return launch(FN_cuStreamAddCallback, stream, HostFunction{nullptr, callback, data, stream}, flags);
}
RGPU_EXPORT CUresult cuStreamAddCallback_ptsz(CUstream stream, CUstreamCallback callback, void* data, unsigned flags) {
  return launch(FN_cuStreamAddCallback_ptsz, stream, HostFunction{nullptr, callback, data, stream}, flags);
}

RGPU_EXPORT CUresult cuGraphAddHostNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies, size_t count,
                                        const CUDA_HOST_NODE_PARAMS* params) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (node == nullptr || params == nullptr || params->fn == nullptr || (count > 0 && dependencies == nullptr))
    return CUDA_ERROR_INVALID_VALUE;
  const uint64_t id = register_host_function(HostFunction{params->fn, nullptr, params->userData, nullptr});
  if (id == 0) return kLinkLost;
  CallBuilder call(FN_rgpuGraphAddHostNode);
  call.out_mask(1u);
  call.writer().put(reinterpret_cast<uint64_t>(graph)).put(id).put(static_cast<uint32_t>(count));
  for (size_t i = 0; i < count; ++i) call.writer().put(reinterpret_cast<uint64_t>(dependencies[i]));
  // A refused node is forgotten by the server too; the id is not reused either way.
  const CUresult r = call_sync(call, [&](rgpu::WireReader& reader) { *node = take_out<CUgraphNode>(reader); });
  if (r != CUDA_SUCCESS) forget_host_function(id);
  return r;
}

RGPU_EXPORT CUresult cuGraphHostNodeGetParams(CUgraphNode node, CUDA_HOST_NODE_PARAMS* params) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_cuGraphHostNodeGetParams);
  call.out_mask(1u);
  call.writer().put(reinterpret_cast<uint64_t>(node));
  uint64_t id = 0;
  if (CUresult r = call_sync(call, [&](rgpu::WireReader& reader) { id = reader.get<uint64_t>(); }); r != CUDA_SUCCESS)
    return r;
  HostFunction function;
  if (!find_host_function(id, function) || function.function == nullptr) {
    LOG_ERROR("cuGraphHostNodeGetParams: the server named host function %llu, which this process does not hold",
              static_cast<unsigned long long>(id));
    return CUDA_ERROR_INVALID_VALUE;
  }
  *params = CUDA_HOST_NODE_PARAMS{function.function, function.data};
  return CUDA_SUCCESS;
}
RGPU_EXPORT CUresult cuGraphHostNodeSetParams(CUgraphNode node, const CUDA_HOST_NODE_PARAMS* params) {
  return set_host_node(FN_cuGraphHostNodeSetParams, nullptr, node, params);
}
RGPU_EXPORT CUresult cuGraphExecHostNodeSetParams(CUgraphExec exec, CUgraphNode node,
                                                  const CUDA_HOST_NODE_PARAMS* params) {
  if (exec == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return set_host_node(FN_cuGraphExecHostNodeSetParams, exec, node, params);
}
