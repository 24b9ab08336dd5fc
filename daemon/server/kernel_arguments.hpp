// Kernel arguments as they travel (packed at the offsets of the function's parameter layout) and
// as the driver takes them (one pointer per parameter).
#pragma once

#include <cuda.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "wire.hpp"

namespace rgpu::cuda {

// Each parameter's offset and size, as the driver lays out a kernel's parameters.
using ParamLayout = std::vector<std::pair<uint64_t, uint64_t>>;

inline constexpr uint32_t kMaxKernelParams = 4096;
inline constexpr uint32_t kMaxKernelArgumentBytes = 64 * 1024;

struct KernelArguments {
  std::vector<uint8_t> bytes;
  std::vector<void*> pointers;  // into `bytes`, one per parameter
  void** driver_params() { return pointers.empty() ? nullptr : pointers.data(); }
};

// Reads `u32 n, n x u32 offset, blob`: the driver will read as many parameters as the kernel has,
// each as large as the layout says, from where the pointers point, so all of them must lie inside
// the bytes that came. CUDA_ERROR_INVALID_VALUE otherwise.
CUresult read_kernel_arguments(WireReader& args, const ParamLayout& layout, KernelArguments& out);

// Writes the arguments the driver hands out (kernelParams, or the `extra` buffer form) in the
// same form; CUDA_ERROR_INVALID_VALUE when neither holds them.
CUresult write_kernel_arguments(WireWriter& out, const ParamLayout& layout, void* const* params, void* const* extra);

}  // namespace rgpu::cuda
