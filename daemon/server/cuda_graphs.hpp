// The server's side of the hand-written graph calls: graph and node lists, kernel nodes (their
// arguments packed as launches pack them) and batches of stream memory operations
// (docs/protocol.md, "Graphs").
#pragma once

#include <cuda.h>

#include <functional>
#include <memory>
#include <string>

#include "cuda_dispatch.hpp"
#include "kernel_arguments.hpp"
#include "wire.hpp"

namespace rgpu::cuda {

// A driver function the server's driver lacks: logged, CUDA_ERROR_NOT_SUPPORTED.
CUresult no_driver_function(const char* name);

// A kernel's parameter layout, as the session keeps it.
using LayoutLookup = std::function<CUresult(CUfunction, std::shared_ptr<const ParamLayout>&)>;

// Whether `function` is one of the calls graph_call() takes.
bool is_graph_call(uint32_t function);
CUresult graph_call(uint32_t function, WireReader& args, WireWriter& out, const LayoutLookup& layouts,
                    const std::string& client);

// Nodes of plain values beside their dependencies, and edges added or removed (cuda_graph_nodes.cpp).
bool is_plain_node_call(uint32_t function);
CUresult plain_node_call(uint32_t function, WireReader& args, WireWriter& out);
// cuGraphAddMemAllocNode: `u64 graph, u32 n, n x u64 dependency, u32 size, CUmemPoolProps, u32 n,
// n x CUmemAccessDesc, u64 bytesize` -> `u64 node, u64 address`; devices are the application's ordinals.
CUresult add_mem_alloc_node(WireReader& args, WireWriter& out, const DeviceMap& devices);
// cuGraphMemAllocNodeGetParams: `u64 node` -> `u32 size, CUmemPoolProps, u32 n, n x CUmemAccessDesc,
// u64 bytesize, u64 address`; devices as the application's ordinals.
CUresult get_mem_alloc_node(WireReader& args, WireWriter& out, const DeviceMap& devices);

}  // namespace rgpu::cuda
