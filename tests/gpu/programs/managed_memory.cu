// Managed (unified) memory the way real programs use it: cudaMallocManaged, initialised on the host,
// prefetched to the device, kernels, advice, prefetched back, read on the host. The output must be
// the same natively and through RGPU.
#include "check.cuh"
#include <cstdint>
#include <cstdio>

__global__ void transform(uint32_t* a, size_t n) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) a[i] = a[i] * 3u + 1u;
}

__global__ void add_table(uint32_t* a, const uint32_t* table, size_t n) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) a[i] += table[a[i] & 255u] ^ static_cast<uint32_t>(i);
}


static uint64_t checksum(const uint32_t* a, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; ++i) s = s * 1099511628211ull + a[i];
  return s;
}

int main() {
  int dev = 0;
  CHECK(cudaSetDevice(dev));
  const size_t n = 3u << 20;  // 12 MiB
  const size_t bytes = n * sizeof(uint32_t);
  const unsigned blocks = static_cast<unsigned>((n + 255) / 256);
  cudaStream_t stream;
  CHECK(cudaStreamCreate(&stream));

  uint32_t *a, *table;
  CHECK(cudaMallocManaged(&a, bytes));
  CHECK(cudaMallocManaged(&table, 256 * sizeof(uint32_t)));
  for (size_t i = 0; i < n; ++i) a[i] = static_cast<uint32_t>(i * 2654435761u);
  for (uint32_t i = 0; i < 256; ++i) table[i] = i * i + 17u;

  // The expected values, computed on the host.
  uint32_t* want = new uint32_t[n];
  for (size_t i = 0; i < n; ++i) want[i] = a[i] * 3u + 1u;
  const uint64_t want1 = checksum(want, n);
  for (size_t i = 0; i < n; ++i) want[i] += table[want[i] & 255u] ^ static_cast<uint32_t>(i);
  const uint64_t want2 = checksum(want, n);
  delete[] want;

  const cudaMemLocation device{cudaMemLocationTypeDevice, dev};
  const cudaMemLocation host{cudaMemLocationTypeHost, 0};
  CHECK(cudaMemPrefetchAsync(a, bytes, device, 0, stream));
  transform<<<blocks, 256, 0, stream>>>(a, n);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  const uint64_t got1 = checksum(a, n);  // read on the host: pages migrate back
  std::printf("after transform: checksum=%016llx %s\n", static_cast<unsigned long long>(got1),
              got1 == want1 ? "ok" : "mismatch");

  // The table is only read by the GPU; the data lives on the device.
  CHECK(cudaMemAdvise(table, 256 * sizeof(uint32_t), cudaMemAdviseSetReadMostly, device));
  CHECK(cudaMemAdvise(a, bytes, cudaMemAdviseSetPreferredLocation, device));
  CHECK(cudaMemPrefetchAsync(table, 256 * sizeof(uint32_t), device, 0, stream));
  CHECK(cudaMemPrefetchAsync(a, bytes, device, 0, stream));
  add_table<<<blocks, 256, 0, stream>>>(a, table, n);
  CHECK(cudaGetLastError());
  CHECK(cudaMemPrefetchAsync(a, bytes, host, 0, stream));
  CHECK(cudaStreamSynchronize(stream));
  const uint64_t got2 = checksum(a, n);
  std::printf("after add_table: checksum=%016llx %s\n", static_cast<unsigned long long>(got2),
              got2 == want2 ? "ok" : "mismatch");

  // What the driver keeps of the advice and prefetches.
  int read_mostly = -1, preferred = -99, last_prefetch = -99;
  CHECK(cudaMemRangeGetAttribute(&read_mostly, 4, cudaMemRangeAttributeReadMostly, table, 256 * sizeof(uint32_t)));
  CHECK(cudaMemRangeGetAttribute(&preferred, 4, cudaMemRangeAttributePreferredLocation, a, bytes));
  CHECK(cudaMemRangeGetAttribute(&last_prefetch, 4, cudaMemRangeAttributeLastPrefetchLocation, a, bytes));
  std::printf("range attributes: read mostly %d, preferred %d, last prefetch %d\n", read_mostly, preferred,
              last_prefetch);

  CHECK(cudaFree(a));
  CHECK(cudaFree(table));
  CHECK(cudaStreamDestroy(stream));
  std::printf("%s\n", got1 == want1 && got2 == want2 ? "ok" : "mismatch");
  return 0;
}
