// The few entry points of NVIDIA's management library (libnvidia-ml.so.1) RGPU uses, declared from
// NVML's documented, stable ABI: the server loads the library at run time (never at build time)
// and the CUDA test double exports the same functions.
#pragma once

#include <cstdint>

namespace rgpu::nvml {

using Return = int;  // nvmlReturn_t
inline constexpr Return kSuccess = 0;
inline constexpr Return kErrorInvalidArgument = 2;
inline constexpr Return kErrorNotFound = 6;
inline constexpr Return kErrorInsufficientSize = 7;
using Device = struct DeviceOpaque*;  // nvmlDevice_t

// nvmlProcessInfo_t, as nvmlDeviceGetComputeRunningProcesses_v3 fills it.
struct ProcessInfo {
  unsigned int pid;
  unsigned long long used_gpu_memory;  // ~0ull: not available
  unsigned int gpu_instance_id;
  unsigned int compute_instance_id;
};

using InitFn = Return (*)();                                           // nvmlInit_v2
using DeviceGetHandleByUuidFn = Return (*)(const char*, Device*);      // nvmlDeviceGetHandleByUUID
using GetComputeRunningProcessesFn = Return (*)(Device, unsigned int*, ProcessInfo*);  // ..._v3

}  // namespace rgpu::nvml
