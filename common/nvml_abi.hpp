// NVIDIA's management library's (NVML's) types and return codes as RGPU uses them, declared from
// NVML's documented, stable ABI: the server loads the library at run time (never at build time),
// the CUDA test double exports the functions the server calls, and RGPU's own libnvidia-ml.so.1
// answers them for applications.
#pragma once

#include <cstdint>

namespace rgpu::nvml {

using Return = int;  // nvmlReturn_t
inline constexpr Return kSuccess = 0;
inline constexpr Return kErrorUninitialized = 1;
inline constexpr Return kErrorInvalidArgument = 2;
inline constexpr Return kErrorNotSupported = 3;
inline constexpr Return kErrorNoPermission = 4;
inline constexpr Return kErrorNotFound = 6;
inline constexpr Return kErrorInsufficientSize = 7;
inline constexpr Return kErrorDriverNotLoaded = 9;
inline constexpr Return kErrorFunctionNotFound = 13;
inline constexpr Return kErrorGpuIsLost = 15;
inline constexpr Return kErrorUnknown = 999;
using Device = struct DeviceOpaque*;  // nvmlDevice_t

// nvmlPciInfo_t (v3: nvmlDeviceGetPciInfo_v3).
struct PciInfo {
  char bus_id_legacy[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pci_device_id;
  unsigned int pci_subsystem_id;
  char bus_id[32];
};
static_assert(sizeof(PciInfo) == 68);
// The layout nvmlDeviceGetPciInfo and _v2 fill.
struct PciInfoV1 {
  char bus_id[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pci_device_id;
  unsigned int pci_subsystem_id;
  unsigned int reserved[4];
};
static_assert(sizeof(PciInfoV1) == 52);

struct Memory {  // nvmlMemory_t
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
struct MemoryV2 {  // nvmlMemory_v2_t
  unsigned int version;
  unsigned long long total;
  unsigned long long reserved;
  unsigned long long free;
  unsigned long long used;
};
inline constexpr unsigned int kMemoryV2Version = sizeof(MemoryV2) | (2u << 24);  // nvmlMemory_v2

struct Utilization {  // nvmlUtilization_t
  unsigned int gpu;
  unsigned int memory;
};

// nvmlProcessInfo_t, as nvmlDeviceGetComputeRunningProcesses_v3 fills it.
struct ProcessInfo {
  unsigned int pid;
  unsigned long long used_gpu_memory;  // ~0ull: not available
  unsigned int gpu_instance_id;
  unsigned int compute_instance_id;
};

// nvmlProcessInfo_v1_t, as nvmlDeviceGetComputeRunningProcesses (without a version) fills it.
struct ProcessInfoV1 {
  unsigned int pid;
  unsigned long long used_gpu_memory;
};

inline constexpr unsigned int kInitFlagNoGpus = 1;   // NVML_INIT_FLAG_NO_GPUS
inline constexpr unsigned int kInitFlagNoAttach = 2;  // NVML_INIT_FLAG_NO_ATTACH
inline constexpr unsigned int kClockTypes = 4;        // graphics, SM, memory, video (nvmlClockType_t)
inline constexpr unsigned int kDeviceUuidBufferSize = 80;
inline constexpr unsigned int kDeviceNameBufferSize = 96;
inline constexpr unsigned int kSystemDriverVersionBufferSize = 80;

using InitFn = Return (*)();                                           // nvmlInit_v2
using DeviceGetHandleByUuidFn = Return (*)(const char*, Device*);      // nvmlDeviceGetHandleByUUID
using GetComputeRunningProcessesFn = Return (*)(Device, unsigned int*, ProcessInfo*);  // ..._v3
using TextFn = Return (*)(Device, char*, unsigned int);                // nvmlDeviceGetName, GetUUID, ...
using UintFn = Return (*)(Device, unsigned int*);                      // nvmlDeviceGetBoardId, ...
using UintOfFn = Return (*)(Device, int, unsigned int*);               // nvmlDeviceGetClockInfo, ...
using IntFn = Return (*)(Device, int*);                                // nvmlDeviceGetPerformanceState, ...
using IntPairFn = Return (*)(Device, int*, int*);                      // nvmlDeviceGetCudaComputeCapability
using UintPairFn = Return (*)(Device, unsigned int*, unsigned int*);   // nvmlDeviceGetMigMode
using PciInfoFn = Return (*)(Device, PciInfo*);                        // nvmlDeviceGetPciInfo_v3
using MemoryFn = Return (*)(Device, Memory*);                          // nvmlDeviceGetMemoryInfo
using MemoryV2Fn = Return (*)(Device, MemoryV2*);                      // nvmlDeviceGetMemoryInfo_v2
using UtilizationFn = Return (*)(Device, Utilization*);                // nvmlDeviceGetUtilizationRates
using SystemTextFn = Return (*)(char*, unsigned int);                  // nvmlSystemGetDriverVersion, ...
using SystemIntFn = Return (*)(int*);                                  // nvmlSystemGetCudaDriverVersion_v2

}  // namespace rgpu::nvml
