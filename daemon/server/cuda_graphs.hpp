// The server's side of the hand-written graph calls: graph and node lists, kernel nodes (their
// arguments packed as launches pack them) and batches of stream memory operations
// (docs/protocol.md, "Graphs").
#pragma once

#include <cuda.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuda_dispatch.hpp"
#include "kernel_arguments.hpp"
#include "wire.hpp"

namespace rgpu::cuda {

// A driver function the server's driver lacks: logged, CUDA_ERROR_NOT_SUPPORTED.
CUresult no_driver_function(const char* name);

// cuGraphExecUpdate(_v2) with a source graph whose host nodes (the application's host functions,
// captured copies) run records the source graph keeps: the executable graph would run them after
// that graph, and so the records, are gone. Such an update is refused (CUDA_ERROR_NOT_SUPPORTED,
// logged); CUDA_SUCCESS lets any other call through. Child graphs are looked into; a graph with
// conditional nodes counts as having host nodes (their bodies are not walked).
CUresult refuse_update_with_host_nodes(uint32_t function, const std::vector<uint64_t>& ins, const std::string& client);

// A kernel's parameter layout, as the session keeps it.
using LayoutLookup = std::function<CUresult(CUfunction, std::shared_ptr<const ParamLayout>&)>;

// Whether `function` is one of the calls graph_call() takes.
bool is_graph_call(uint32_t function);
CUresult graph_call(uint32_t function, WireReader& args, WireWriter& out, const LayoutLookup& layouts,
                    const std::string& client);

// cuStreamBatchMemOp's operations, which batch nodes take too: `u32 count, u32 flags, u32 size`,
// count x CUstreamBatchMemOpParams, checked (refused with CUDA_ERROR_INVALID_VALUE, logged as
// `name`'s): the server's size, 1 to kMaxBatchMemOps operations, each of a type the call takes
// (barriers only where `v2`).
CUresult read_batch(WireReader& args, const char* name, bool v2, const std::string& client,
                    std::vector<CUstreamBatchMemOpParams>& ops, uint32_t& flags);

// Nodes of plain values beside their dependencies, memcpy and batch nodes' parameters, and edges
// added or removed (cuda_graph_nodes.cpp).
bool is_plain_node_call(uint32_t function);
CUresult plain_node_call(uint32_t function, WireReader& args, WireWriter& out, const std::string& client);
// cuGraphAddMemAllocNode: `u64 graph, u32 n, n x u64 dependency, u32 size, CUmemPoolProps, u32 n,
// n x CUmemAccessDesc, u64 bytesize` -> `u64 node, u64 address`; devices are the application's ordinals.
CUresult add_mem_alloc_node(WireReader& args, WireWriter& out, const DeviceMap& devices);
// cuGraphMemAllocNodeGetParams: `u64 node` -> `u32 size, CUmemPoolProps, u32 n, n x CUmemAccessDesc,
// u64 bytesize, u64 address`; devices as the application's ordinals.
CUresult get_mem_alloc_node(WireReader& args, WireWriter& out, const DeviceMap& devices);

}  // namespace rgpu::cuda
