// Virtual memory management the way PyTorch's expandable segments use it: reserve an address
// range, create physical chunks, map them one after another, give the device access, run kernels
// and copy across the chunks, grow by mapping a second chunk right after the first, then unmap,
// release and free. The output must be the same natively and through RGPU.
#include "check.cuh"
#include "check_driver.h"
#include <cstdint>
#include <cstdio>
#include <vector>


__global__ void fill(uint32_t* a, size_t n, uint32_t seed) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) a[i] = static_cast<uint32_t>(i) * 2654435761u ^ seed;
}

__global__ void mix(uint32_t* a, size_t n) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) a[i] = a[i] * 3u + static_cast<uint32_t>(i >> 7);
}

static uint64_t checksum(const std::vector<uint32_t>& a) {
  uint64_t s = 1469598103934665603ull;
  for (uint32_t v : a) s = (s ^ v) * 1099511628211ull;
  return s;
}

int main() {
  CHECK(cudaSetDevice(0));
  CHECK(cudaFree(nullptr));  // the primary context, current from here on
  CUdevice device;
  CU_CHECK(cuCtxGetDevice(&device));
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  size_t granularity = 0;
  CU_CHECK(cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
  std::printf("granularity: %zu\n", granularity);

  const size_t chunk = 4 * granularity;
  CUdeviceptr base = 0;
  CU_CHECK(cuMemAddressReserve(&base, 4 * chunk, 0, 0, 0));
  CUmemGenericAllocationHandle first, second;
  CU_CHECK(cuMemCreate(&first, chunk, &prop, 0));
  CU_CHECK(cuMemMap(base, chunk, 0, first, 0));
  CUmemAccessDesc access{};
  access.location = prop.location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CU_CHECK(cuMemSetAccess(base, chunk, &access, 1));

  // One chunk: a kernel fills it, the host reads it back.
  auto* words = reinterpret_cast<uint32_t*>(base);
  size_t n = chunk / sizeof(uint32_t);
  fill<<<static_cast<unsigned>((n + 255) / 256), 256>>>(words, n, 0x1234u);
  CHECK(cudaGetLastError());
  std::vector<uint32_t> host(n);
  CHECK(cudaMemcpy(host.data(), words, chunk, cudaMemcpyDeviceToHost));
  bool ok = true;
  for (size_t i = 0; i < n; ++i) ok = ok && host[i] == (static_cast<uint32_t>(i) * 2654435761u ^ 0x1234u);
  std::printf("one chunk: checksum=%016llx %s\n", static_cast<unsigned long long>(checksum(host)), ok ? "ok" : "mismatch");

  // Grown: a second chunk mapped right after the first; the host writes across the seam, a kernel
  // runs over both.
  CU_CHECK(cuMemCreate(&second, chunk, &prop, 0));
  CU_CHECK(cuMemMap(base + chunk, chunk, 0, second, 0));
  CU_CHECK(cuMemSetAccess(base + chunk, chunk, &access, 1));
  std::vector<uint32_t> seam(4096);
  for (size_t i = 0; i < seam.size(); ++i) seam[i] = static_cast<uint32_t>(i * 7 + 1);
  CHECK(cudaMemcpy(words + n - seam.size() / 2, seam.data(), seam.size() * sizeof(uint32_t), cudaMemcpyHostToDevice));
  const size_t grown = 2 * n;
  CHECK(cudaMemcpy(host.data(), words + n - seam.size() / 2, seam.size() * sizeof(uint32_t), cudaMemcpyDeviceToHost));
  bool seam_ok = true;
  for (size_t i = 0; i < seam.size(); ++i) seam_ok = seam_ok && host[i] == seam[i];
  std::printf("across the seam: %s\n", seam_ok ? "ok" : "mismatch");
  fill<<<static_cast<unsigned>((grown + 255) / 256), 256>>>(words, grown, 0xBEEFu);
  mix<<<static_cast<unsigned>((grown + 255) / 256), 256>>>(words, grown);
  CHECK(cudaGetLastError());
  std::vector<uint32_t> both(grown);
  CHECK(cudaMemcpy(both.data(), words, grown * sizeof(uint32_t), cudaMemcpyDeviceToHost));
  bool grown_ok = true;
  for (size_t i = 0; i < grown; ++i)
    grown_ok = grown_ok && both[i] == (((static_cast<uint32_t>(i) * 2654435761u) ^ 0xBEEFu) * 3u + static_cast<uint32_t>(i >> 7));
  std::printf("two chunks: checksum=%016llx %s\n", static_cast<unsigned long long>(checksum(both)), grown_ok ? "ok" : "mismatch");

  unsigned long long flags = 0;
  CU_CHECK(cuMemGetAccess(&flags, &access.location, base + chunk + 4096));
  std::printf("access flags: %llu\n", flags);
  CUmemGenericAllocationHandle retained;
  CU_CHECK(cuMemRetainAllocationHandle(&retained, reinterpret_cast<void*>(base + chunk + 123)));
  std::printf("retained handle is the second chunk's: %d\n", retained == second);
  CU_CHECK(cuMemRelease(retained));
  CUmemAllocationProp described{};
  CU_CHECK(cuMemGetAllocationPropertiesFromHandle(&described, first));
  std::printf("properties: type=%d location type=%d id=%d\n", static_cast<int>(described.type),
              static_cast<int>(described.location.type), described.location.id);

  CU_CHECK(cuMemUnmap(base, 2 * chunk));
  CU_CHECK(cuMemRelease(first));
  CU_CHECK(cuMemRelease(second));
  CU_CHECK(cuMemAddressFree(base, 4 * chunk));
  std::printf("%s\n", ok && seam_ok && grown_ok ? "ok" : "mismatch");
  return 0;
}
