// A kernel that trips a device-side assert() on purpose: the context is then lost with the sticky
// cudaErrorAssert, and every later call in this process fails with it. The output must be the same
// natively and through RGPU (the driver prints the assert's text to standard error itself); other
// applications of the same server must not notice.
#undef NDEBUG
#include "check.cuh"
#include <cassert>
#include <cstdio>
#include <vector>

__global__ void checked_scale(const int* x, int* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    assert(x[i] >= 0);  // one element is negative
    y[i] = 2 * x[i];
  }
}


int main() {
  const int n = 1 << 20;
  std::vector<int> x(n);
  for (int i = 0; i < n; ++i) x[i] = i % 1000;
  int *dx, *dy;
  CHECK(cudaMalloc(&dx, n * sizeof(int)));
  CHECK(cudaMalloc(&dy, n * sizeof(int)));
  CHECK(cudaMemcpy(dx, x.data(), n * sizeof(int), cudaMemcpyHostToDevice));

  // A clean launch first: the context works.
  checked_scale<<<(n + 255) / 256, 256>>>(dx, dy, n);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  std::vector<int> y(n);
  CHECK(cudaMemcpy(y.data(), dy, n * sizeof(int), cudaMemcpyDeviceToHost));
  long long sum = 0;
  for (int v : y) sum += v;
  std::printf("clean launch: checksum=%lld\n", sum);

  // Now one element trips the assert.
  const int bad = -7;
  CHECK(cudaMemcpy(dx + n / 2 + 3, &bad, sizeof bad, cudaMemcpyHostToDevice));
  checked_scale<<<(n + 255) / 256, 256>>>(dx, dy, n);
  // The launch itself succeeds; the assert may already have been seen (the same sticky error).
  cudaError_t launch = cudaGetLastError();
  if (launch != cudaSuccess && launch != cudaErrorAssert) {
    std::printf("launch: %s\n", cudaGetErrorName(launch));
    return 1;
  }
  std::printf("launched the asserting kernel\n");
  cudaError_t sync = cudaDeviceSynchronize();
  std::printf("cudaDeviceSynchronize: %s (%d)\n", cudaGetErrorName(sync), static_cast<int>(sync));

  // The error is sticky: later calls fail with it too.
  void* p = nullptr;
  cudaError_t alloc = cudaMalloc(&p, 1 << 20);
  std::printf("cudaMalloc after it: %s\n", cudaGetErrorName(alloc));
  cudaError_t copy = cudaMemcpy(y.data(), dy, n * sizeof(int), cudaMemcpyDeviceToHost);
  std::printf("cudaMemcpy after it: %s\n", cudaGetErrorName(copy));
  cudaError_t again = cudaDeviceSynchronize();
  std::printf("cudaDeviceSynchronize again: %s\n", cudaGetErrorName(again));
  std::printf("%s\n", sync == cudaErrorAssert && alloc == sync && copy == sync && again == sync
                          ? "sticky assert error: as expected"
                          : "sticky assert error: NOT as expected");
  return 0;
}
