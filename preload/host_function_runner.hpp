// The application's host functions (cuLaunchHostFunc, cuStreamAddCallback, host nodes), run in
// this process by a thread of the interpose, in the order the server's streams reach them.
#pragma once

#include <cuda.h>

#include <cstdint>

namespace rgpu::cuda {

struct HostFunction {
  CUhostFn function = nullptr;          // cuLaunchHostFunc, a host node
  CUstreamCallback callback = nullptr;  // or cuStreamAddCallback, told its stream and status
  void* data = nullptr;
  CUstream stream = nullptr;
};

// Starts the thread that runs host functions (once per process) and keeps `function` under a
// new id for the server; 0 when the thread cannot reach the daemon (the caller fails with
// kLinkLost).
uint64_t register_host_function(const HostFunction& function);
// Starts the thread (once per process) before a capture that may hold copies between the device
// and this process's memory, which that thread carries out at each launch of the graph; false when
// it cannot reach the daemon.
bool start_host_function_runner();
// The server will not reach `id` (its launch failed before it got there).
void forget_host_function(uint64_t id);
// The function kept under `id` (false when this process holds none: forgotten or never made).
bool find_host_function(uint64_t id, HostFunction& function);

// True on the host function thread while an application function runs: such a function must not
// call CUDA (the driver answers CUDA_ERROR_NOT_PERMITTED).
bool in_host_function();

}  // namespace rgpu::cuda
