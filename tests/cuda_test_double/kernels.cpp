// The test double's kernels: what each one computes, on the host. As in CUDA C, thread i of a
// launch (i = blockIdx.x * blockDim.x + threadIdx.x over the whole grid) handles element i,
// except fill_u32, which loops over its elements in strides of the grid's size. Every range a
// kernel touches is checked first: outside its context's memory it faults, as a device does,
// with CUDA_ERROR_ILLEGAL_ADDRESS.
#include <algorithm>
#include <chrono>
#include <thread>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
// How many elements one-element-per-thread kernels reach.
uint64_t reached(const Launch& launch, int64_t n) { return std::min<uint64_t>(std::max<int64_t>(n, 0), launch.threads); }

// vector_add_f32(const float* a, const float* b, float* c, unsigned n): c[i] = a[i] + b[i]
CUresult vector_add_f32(const Launch& launch) {
  const uint64_t n = reached(launch, launch.parameter<unsigned>(24));
  if (n == 0) return CUDA_SUCCESS;
  const float* a = launch.memory<float>(launch.parameter<CUdeviceptr>(0), n);
  const float* b = launch.memory<float>(launch.parameter<CUdeviceptr>(8), n);
  float* c = launch.memory<float>(launch.parameter<CUdeviceptr>(16), n);
  if (a == nullptr || b == nullptr || c == nullptr) return CUDA_ERROR_ILLEGAL_ADDRESS;
  for (uint64_t i = 0; i < n; ++i) c[i] = a[i] + b[i];
  return CUDA_SUCCESS;
}

// scale_f32(float* p, float s, int n): p[i] *= s
CUresult scale_f32(const Launch& launch) {
  const uint64_t n = reached(launch, launch.parameter<int>(12));
  if (n == 0) return CUDA_SUCCESS;
  float* p = launch.memory<float>(launch.parameter<CUdeviceptr>(0), n);
  if (p == nullptr) return CUDA_ERROR_ILLEGAL_ADDRESS;
  const float s = launch.parameter<float>(8);
  for (uint64_t i = 0; i < n; ++i) p[i] *= s;
  return CUDA_SUCCESS;
}

// fill_u32(unsigned* p, unsigned value, unsigned long long n): p[0..n) = value, grid-stride
CUresult fill_u32(const Launch& launch) {
  const auto n = launch.parameter<unsigned long long>(16);
  if (n == 0) return CUDA_SUCCESS;
  unsigned* p = launch.memory<unsigned>(launch.parameter<CUdeviceptr>(0), n);
  if (p == nullptr) return CUDA_ERROR_ILLEGAL_ADDRESS;
  std::fill_n(p, n, launch.parameter<unsigned>(8));
  return CUDA_SUCCESS;
}

// add_global_f32(float* c, int n): c[i] += offset, the module's global float
CUresult add_global_f32(const Launch& launch) {
  const uint64_t n = reached(launch, launch.parameter<int>(8));
  if (n == 0) return CUDA_SUCCESS;
  CUdeviceptr global = 0;
  if (module_global(launch.module, "offset", &global, nullptr) != CUDA_SUCCESS) return CUDA_ERROR_ILLEGAL_ADDRESS;
  const float* offset = launch.memory<float>(global, 1);
  float* c = launch.memory<float>(launch.parameter<CUdeviceptr>(0), n);
  if (offset == nullptr || c == nullptr) return CUDA_ERROR_ILLEGAL_ADDRESS;
  for (uint64_t i = 0; i < n; ++i) c[i] += *offset;
  return CUDA_SUCCESS;
}

// illegal_address(): stores to address 0, as a kernel that follows a null pointer does
CUresult illegal_address(const Launch& launch) {
  unsigned* target = launch.memory<unsigned>(0, 1);
  if (target == nullptr) return CUDA_ERROR_ILLEGAL_ADDRESS;
  *target = 0;
  return CUDA_SUCCESS;
}

// sleep_ms(unsigned ms): runs for `ms` milliseconds and touches nothing, as a long kernel does
// (the driver's lock is held meanwhile, so the process's other driver calls wait behind it)
CUresult sleep_ms(const Launch& launch) {
  std::this_thread::sleep_for(std::chrono::milliseconds(launch.parameter<unsigned>(0)));
  return CUDA_SUCCESS;
}

// texture_to_surface(CUtexObject tex, CUsurfObject surf, unsigned width, unsigned height, float scale):
// for each of width x height threads, surf2Dwrite(scale * tex2D<float>(tex, x, y), surf, x * 4, y),
// texels read by their integer coordinates (a 1-channel float texture)
CUresult texture_to_surface(const Launch& launch) {
  const auto width = launch.parameter<unsigned>(16), height = launch.parameter<unsigned>(20);
  const uint64_t n = reached(launch, int64_t{width} * height);
  const float scale = launch.parameter<float>(24);
  for (uint64_t i = 0; i < n; ++i) {
    float texel = 0;
    const uint64_t x = i % width, y = i / width;
    if (!texture_texel_f32(launch.parameter<CUtexObject>(0), launch.context, x, y, texel) ||
        !surface_store_f32(launch.parameter<CUsurfObject>(8), launch.context, x * sizeof(float), y, scale * texel))
      return CUDA_ERROR_ILLEGAL_ADDRESS;
  }
  return CUDA_SUCCESS;
}

// device_assert(): fails an assert() in device code; its context is unusable from then on
CUresult device_assert(const Launch&) { return CUDA_ERROR_ASSERT; }

const Kernel kKernels[] = {
    {"vector_add_f32", {{0, 8}, {8, 8}, {16, 8}, {24, 4}}, nullptr, vector_add_f32},
    {"scale_f32", {{0, 8}, {8, 4}, {12, 4}}, nullptr, scale_f32},
    {"fill_u32", {{0, 8}, {8, 4}, {16, 8}}, nullptr, fill_u32},
    {"add_global_f32", {{0, 8}, {8, 4}}, "offset", add_global_f32},
    {"illegal_address", {}, nullptr, illegal_address},
    {"sleep_ms", {{0, 4}}, nullptr, sleep_ms},
    {"device_assert", {}, nullptr, device_assert},
    {"texture_to_surface", {{0, 8}, {8, 8}, {16, 4}, {20, 4}, {24, 4}}, nullptr, texture_to_surface},
};
}  // namespace

const Kernel* find_kernel(const std::string& name) {
  for (const Kernel& kernel : kKernels)
    if (name == kernel.name) return &kernel;
  return nullptr;
}

CUresult parameter_info(const Kernel& kernel, size_t index, size_t* offset, size_t* size) {
  if (index >= kernel.parameters.size()) return CUDA_ERROR_INVALID_VALUE;
  if (offset) *offset = kernel.parameters[index].first;
  if (size) *size = kernel.parameters[index].second;
  return CUDA_SUCCESS;
}

}  // namespace rgpu::cuda_double
