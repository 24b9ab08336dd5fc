// Mapped (zero-copy) host memory: cudaHostAlloc(cudaHostAllocMapped), written on the host, read and
// written by kernels through the device pointer and through the host pointer itself (unified
// addressing), read back on the host after a synchronisation. The output must be the same natively
// and through RGPU.
#include "check.cuh"
#include <cstdint>
#include <cstdio>

__global__ void square_into(const uint32_t* in, uint32_t* out, size_t n) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = in[i] * in[i] + 7u;
}

__global__ void count_odd(const uint32_t* a, size_t n, unsigned int* odd) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n && (a[i] & 1u)) atomicAdd(odd, 1u);
}

int main() {
  CHECK(cudaSetDeviceFlags(cudaDeviceMapHost));
  int can_map = 0;
  CHECK(cudaDeviceGetAttribute(&can_map, cudaDevAttrCanMapHostMemory, 0));
  std::printf("can map host memory: %d\n", can_map);
  const size_t n = 1u << 20;
  uint32_t *in, *out;
  unsigned int* odd;
  CHECK(cudaHostAlloc(&in, n * sizeof(uint32_t), cudaHostAllocMapped));
  CHECK(cudaHostAlloc(&out, n * sizeof(uint32_t), cudaHostAllocMapped | cudaHostAllocPortable));
  CHECK(cudaHostAlloc(&odd, sizeof(unsigned int), cudaHostAllocMapped));
  for (size_t i = 0; i < n; ++i) in[i] = static_cast<uint32_t>(i * 2654435761u) >> 8;
  *odd = 0;
  uint32_t* in_device = nullptr;
  CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&in_device), in, 0));
  const unsigned blocks = static_cast<unsigned>((n + 255) / 256);
  square_into<<<blocks, 256>>>(in_device, out, n);  // the device pointer, then the host pointer itself
  CHECK(cudaGetLastError());
  count_odd<<<blocks, 256>>>(out, n, odd);
  CHECK(cudaDeviceSynchronize());
  uint64_t sum = 0;
  bool right = true;
  for (size_t i = 0; i < n; ++i) {
    sum += out[i];
    right = right && out[i] == in[i] * in[i] + 7u;
  }
  std::printf("sum=%llu odd=%u %s\n", static_cast<unsigned long long>(sum), *odd, right ? "ok" : "mismatch");
  // The host changes the input between launches: the next kernel must see it.
  for (size_t i = 0; i < n; i += 2) in[i] = 3;
  *odd = 0;
  square_into<<<blocks, 256>>>(in, out, n);
  count_odd<<<blocks, 256>>>(out, n, odd);
  CHECK(cudaStreamSynchronize(0));
  std::printf("after host writes: out[0]=%u out[2]=%u odd=%u\n", out[0], out[2], *odd);
  cudaPointerAttributes attributes;
  CHECK(cudaPointerGetAttributes(&attributes, in));
  std::printf("attributes: type=%d same pointer=%d\n", static_cast<int>(attributes.type),
              attributes.devicePointer == in && attributes.hostPointer == in);
  CHECK(cudaFreeHost(in));
  CHECK(cudaFreeHost(out));
  CHECK(cudaFreeHost(odd));
  std::printf("done\n");
  return 0;
}
