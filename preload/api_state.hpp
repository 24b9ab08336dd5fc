// Process and thread state the interpose keeps locally: initialisation, devices and their facts,
// each thread's context stack.
//
// That state is never destroyed (heap objects behind function-local pointers, and the main
// thread's thread_local objects are left alone at exit): libcudart tears down from its own exit
// handlers, which run after this library's static objects and the main thread's thread_local
// objects would have been destroyed, and it still calls the driver then.
#pragma once

#include <cuda.h>
#include <unistd.h>

#include <span>
#include <string>
#include <vector>

#include "cuda_client.hpp"
#include "app_protocol.hpp"
#include "messages.hpp"

namespace rgpu::cuda {

// Deletes a thread's object when the thread ends, except on the main thread (see above). Declare
// it `static thread_local` next to the code that first fills the thread_local pointer.
template <typename T>
struct ThreadExitDelete {
  T** slot;
  ~ThreadExitDelete() {
    if (gettid() == getpid()) return;
    delete *slot;
    *slot = nullptr;
  }
};

struct DeviceFacts {
  std::string name;
  uint64_t total_memory = 0;
  CUuuid uuid{};
  std::string pci_bus_id;
  std::vector<std::pair<int32_t, CUresult>> attributes;  // index: attribute - 1
};

// The devices this process sees (empty before cuInit).
const std::vector<GpuInfo>& devices();
// Facts of a device, fetched from the server once; nullptr for a bad ordinal or on failure.
const DeviceFacts* device_facts(CUdevice device, CUresult* error = nullptr);

CUcontext current_context();
std::vector<CUcontext>& context_stack();
void remember_context_device(CUcontext context, CUdevice device);
bool context_device(CUcontext context, CUdevice& device);
// A device's primary context handle, active or not, without adding a retain.
CUresult primary_context_of(CUdevice device, CUcontext* context);

const char* error_name_of(CUresult result);
const char* error_string_of(CUresult result);

// Sends without the initialisation check (cuInit's own calls).
CUresult exchange(CallBuilder& call, const ReplyReader& read_outs, const RingSpec* spec);
CUresult send_pipelined(CallBuilder& call, const RingSpec* spec);
// Sends a call outside the process's issue order (rgpu.HostFunctionPoll) and waits for its answer.
CUresult exchange_unordered(CallBuilder& call, const ReplyReader& read_outs);
// Sends a call that will be answered, without waiting; the answer is read with DaemonLink::wait.
CUresult send_call(CallBuilder& call, const RingSpec* spec, uint64_t& request_id);
CUresult finish_reply(std::span<const uint8_t> answer, const ReplyReader& read_outs);

// Copies between this process's memory and the device (api_memory.cpp); `variant` is the driver
// function the server runs (synchronous or on `stream`).
CUresult copy_to_device(uint32_t variant, CUdeviceptr dst, const void* src, size_t bytes, CUstream stream);
CUresult copy_from_device(uint32_t variant, void* dst, CUdeviceptr src, size_t bytes, CUstream stream);

// Forgets the kernel parameter layouts learnt from the server (their functions may be gone).
void forget_kernel_parameter_layouts();

// A kernel's parameters as the driver lays them out (api_module.cpp), learnt from the server once
// per function.
struct KernelParamLayout {
  std::vector<std::pair<uint64_t, uint64_t>> params;  // offset, size
  size_t total() const;
};
CUresult kernel_param_layout(CUfunction f, KernelParamLayout& layout);
// Packs a kernel's arguments at their offsets, from kernelParams (one pointer per parameter) or
// the `extra` form (CU_LAUNCH_PARAM_BUFFER_POINTER / SIZE): `u32 n, n x u32 offset, blob`.
CUresult pack_kernel_params(const KernelParamLayout& layout, void** params, void** extra, CallBuilder& call);

// A graph node's add call starts `u64 graph, u32 n, n x u64 dependency`, the node its first output
// (api_graph_nodes.cpp); false for a bad dependency array.
bool start_node(CallBuilder& call, CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies, size_t count);

// The driver version the server's driver reports (CUDA_VERSION style: 13000).
int server_driver_version();

}  // namespace rgpu::cuda
