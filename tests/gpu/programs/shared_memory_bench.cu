// Managed and mapped host memory at work: each round the host changes part of the data, a kernel
// updates all of it and the host reads a result back, as an application that shares memory with
// the GPU does. Prints the median time of a round for managed and for mapped memory.
#include "check.cuh"
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

__global__ void step(float* data, size_t n, float scale) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) data[i] = data[i] * scale + 1.0f;
}

template <typename Round>
static double median_ms(Round round, int rounds) {
  std::vector<double> times;
  for (int r = 0; r < rounds + 2; ++r) {
    const auto start = std::chrono::steady_clock::now();
    if (!round(r)) return -1;
    const auto end = std::chrono::steady_clock::now();
    if (r >= 2) times.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

int main() {
  CHECK(cudaSetDeviceFlags(cudaDeviceMapHost));
  const size_t n = 4u << 20;  // 16 MiB of floats
  const unsigned blocks = static_cast<unsigned>((n + 255) / 256);
  float* managed = nullptr;
  float* mapped = nullptr;
  CHECK(cudaMallocManaged(&managed, n * sizeof(float)));
  CHECK(cudaHostAlloc(&mapped, n * sizeof(float), cudaHostAllocMapped));
  for (float* data : {managed, mapped}) std::fill(data, data + n, 1.0f);
  float checksum = 0;
  // A round: the host writes 1/16 of the data, a kernel updates all of it, the host reads a sample.
  auto round_on = [&](float* data) {
    return [&, data](int r) {
      for (size_t i = 0; i < n / 16; ++i) data[(i * 16 + r) % n] = static_cast<float>(r);
      step<<<blocks, 256>>>(data, n, 0.5f);
      if (cudaDeviceSynchronize() != cudaSuccess) return false;
      for (size_t i = 0; i < n; i += 4096) checksum += data[i];
      return true;
    };
  };
  const double managed_ms = median_ms(round_on(managed), 20);
  const double mapped_ms = median_ms(round_on(mapped), 20);
  std::printf("managed_round_ms %.3f\nmapped_round_ms %.3f\nchecksum %.1f\n", managed_ms, mapped_ms, checksum);
  CHECK(cudaFree(managed));
  CHECK(cudaFreeHost(mapped));
  return 0;
}
