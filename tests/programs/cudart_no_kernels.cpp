// A CUDA runtime program (static libcudart, as nvcc links by default) that uses no kernels:
// device enumeration and properties, allocation, copies, a memset, synchronisation. Through RGPU
// it exercises libcudart's start-up against the interpose: the private driver tables and the
// integrity check. Prints what it saw; exits 0 only when every step worked.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <vector>

#define CHECK(call)                                                                 \
  do {                                                                              \
    cudaError_t e = (call);                                                         \
    if (e != cudaSuccess) {                                                         \
      std::printf("%s failed: %s (%s)\n", #call, cudaGetErrorName(e), cudaGetErrorString(e)); \
      return 1;                                                                     \
    }                                                                               \
  } while (0)

int main() {
  int count = 0;
  CHECK(cudaGetDeviceCount(&count));
  std::printf("devices %d\n", count);
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    CHECK(cudaGetDeviceProperties(&prop, i));
    std::printf("device %d: %s, compute %d.%d\n", i, prop.name, prop.major, prop.minor);
  }
  CHECK(cudaSetDevice(0));
  const size_t n = 1 << 20;
  std::vector<unsigned char> in(n), out(n, 0);
  for (size_t i = 0; i < n; ++i) in[i] = static_cast<unsigned char>(i * 7 + 1);
  void* device = nullptr;
  CHECK(cudaMalloc(&device, n));
  CHECK(cudaMemcpy(device, in.data(), n, cudaMemcpyHostToDevice));
  CHECK(cudaMemset(static_cast<unsigned char*>(device) + 16, 0xAB, 16));
  CHECK(cudaDeviceSynchronize());
  CHECK(cudaMemcpy(out.data(), device, n, cudaMemcpyDeviceToHost));
  for (size_t i = 16; i < 32; ++i) in[i] = 0xAB;
  std::printf("round trip %s\n", in == out ? "ok" : "differs");
  size_t free_bytes = 0, total = 0;
  CHECK(cudaMemGetInfo(&free_bytes, &total));
  std::printf("memory info %s\n", free_bytes > 0 && free_bytes <= total ? "ok" : "bad");
  CHECK(cudaFree(device));
  return in == out ? 0 : 1;
}
