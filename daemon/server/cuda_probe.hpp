// CUDA side of GPU discovery: the driver library (libcuda.so.1, dlopened, never linked) and the
// devices it reports.
#pragma once

#include <string>
#include <vector>

#include "messages.hpp"

namespace rgpu {

// RGPU_CUDA_LIBRARY when set and not empty, else "libcuda.so.1".
std::string cuda_library_name();

struct CudaLibrary {
  std::string name;      // what was passed to dlopen
  void* handle = nullptr;  // nullptr when the library could not be loaded
  std::string error;     // dlerror text when handle is nullptr
};

// The driver library named by cuda_library_name(). Each name is dlopened once for the life of the
// process and never closed (the CUDA executor uses the same handle); safe to call from any thread.
// A failed open is not remembered: the next call tries again.
CudaLibrary cuda_driver_library();

struct CudaProbeResult {
  std::vector<GpuInfo> devices;    // cuda = true, cuda_ordinal = CUdevice; index not set
  std::vector<std::string> notes;  // why nothing (or not everything) was found
};

// cuInit(0) and one GpuInfo per device the driver reports.
CudaProbeResult probe_cuda();

}  // namespace rgpu
