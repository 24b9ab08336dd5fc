// A CUDA application that asks NVML about the GPUs it uses, for the NVML end-to-end test: it
// allocates device memory through RGPU's libcuda.so.1, then dlopens the libnvidia-ml.so.1 named on
// its command line, as PyTorch and pynvml do, and prints what NVML says.
//   nvml_app hold BYTES LIBRARY   allocates, prints "ready PID", holds until its input ends
//   nvml_app query BYTES LIBRARY  allocates, prints its pid, device 0's processes, and exits
//   nvml_app init LIBRARY         prints what nvmlInit_v2 returns
#include <cuda.h>
#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "nvml_abi.hpp"

namespace {

using rgpu::nvml::Return;

void* g_nvml = nullptr;
template <typename Fn>
Fn nvml(const char* name) {
  void* symbol = ::dlsym(g_nvml, name);
  if (symbol == nullptr) {
    std::printf("missing %s\n", name);
    std::exit(1);
  }
  return reinterpret_cast<Fn>(symbol);
}

bool open_nvml(const char* path) {
  g_nvml = ::dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (g_nvml == nullptr) std::printf("dlopen: %s\n", ::dlerror());
  return g_nvml != nullptr;
}

int allocate(size_t bytes) {
  CUdevice device;
  CUcontext context;
  CUdeviceptr pointer;
  if (cuInit(0) != CUDA_SUCCESS || cuDeviceGet(&device, 0) != CUDA_SUCCESS ||
      cuDevicePrimaryCtxRetain(&context, device) != CUDA_SUCCESS || cuCtxSetCurrent(context) != CUDA_SUCCESS ||
      cuMemAlloc(&pointer, bytes) != CUDA_SUCCESS) {
    std::printf("allocation failed\n");
    return 1;
  }
  return 0;
}

int query() {
  if (Return r = nvml<Return (*)()>("nvmlInit_v2")(); r != 0) {
    std::printf("nvmlInit_v2 %d\n", r);
    return 1;
  }
  rgpu::nvml::Device device = nullptr;
  if (Return r = nvml<Return (*)(unsigned, rgpu::nvml::Device*)>("nvmlDeviceGetHandleByIndex_v2")(0, &device); r != 0) {
    std::printf("nvmlDeviceGetHandleByIndex_v2 %d\n", r);
    return 1;
  }
  auto processes = nvml<Return (*)(rgpu::nvml::Device, unsigned*, rgpu::nvml::ProcessInfo*)>(
      "nvmlDeviceGetComputeRunningProcesses_v3");
  rgpu::nvml::ProcessInfo infos[64];
  unsigned count = 64;
  if (Return r = processes(device, &count, infos); r != 0) {
    std::printf("nvmlDeviceGetComputeRunningProcesses_v3 %d\n", r);
    return 1;
  }
  std::printf("self %d\n", static_cast<int>(::getpid()));
  for (unsigned i = 0; i < count; ++i) std::printf("process %u %llu\n", infos[i].pid, infos[i].used_gpu_memory);
  return nvml<Return (*)()>("nvmlShutdown")() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "init" && argc == 3) {
    if (!open_nvml(argv[2])) return 1;
    std::printf("nvmlInit_v2 %d\n", nvml<Return (*)()>("nvmlInit_v2")());
    return 0;
  }
  if ((mode != "hold" && mode != "query") || argc != 4) {
    std::fprintf(stderr, "usage: nvml_app hold|query BYTES LIBRARY | init LIBRARY\n");
    return 2;
  }
  if (allocate(std::strtoull(argv[2], nullptr, 10)) != 0) return 1;
  if (mode == "query") return open_nvml(argv[3]) ? query() : 1;
  std::printf("ready %d\n", static_cast<int>(::getpid()));
  std::fflush(stdout);
  char buffer[64];
  while (::read(0, buffer, sizeof buffer) > 0) {
  }
  return 0;
}
