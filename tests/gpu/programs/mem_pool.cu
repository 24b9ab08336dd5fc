// Memory pools the way cudaMallocAsync programs configure them: a pool of their own with a release
// threshold, stream-ordered allocations and frees from it, the device's current pool switched to
// it for cudaMallocAsync, access, trimming, and queries of reserved and used memory. The output
// must be the same natively and through RGPU.
#include "check.cuh"
#include <cstdint>
#include <cstdio>
#include <vector>

__global__ void fill(uint32_t* a, size_t n, uint32_t seed) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) a[i] = static_cast<uint32_t>(i) * 2246822519u + seed;
}

static int print_usage(cudaMemPool_t pool, const char* when) {
  uint64_t reserved = 0, reserved_high = 0, used = 0, used_high = 0;
  CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved));
  CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &reserved_high));
  CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used));
  CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &used_high));
  std::printf("%s: reserved=%llu (high %llu) used=%llu (high %llu)\n", when, static_cast<unsigned long long>(reserved),
              static_cast<unsigned long long>(reserved_high), static_cast<unsigned long long>(used),
              static_cast<unsigned long long>(used_high));
  return 0;
}

int main() {
  CHECK(cudaSetDevice(0));
  cudaMemPoolProps props{};
  props.allocType = cudaMemAllocationTypePinned;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = 0;
  cudaMemPool_t pool;
  CHECK(cudaMemPoolCreate(&pool, &props));
  uint64_t threshold = UINT64_MAX;
  CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  uint64_t threshold_back = 0;
  CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold_back));
  std::printf("release threshold: %llu\n", static_cast<unsigned long long>(threshold_back));
  int follow = -1, opportunistic = -1, internal = -1;
  CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolReuseFollowEventDependencies, &follow));
  CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolReuseAllowOpportunistic, &opportunistic));
  CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolReuseAllowInternalDependencies, &internal));
  std::printf("reuse: follow=%d opportunistic=%d internal=%d\n", follow, opportunistic, internal);

  cudaStream_t stream;
  CHECK(cudaStreamCreate(&stream));
  bool ok = true;
  uint64_t sum = 0;
  std::vector<uint32_t> host(1024);
  for (int round = 0; round < 8; ++round) {
    const size_t bytes = (size_t{64} << 20) + (static_cast<size_t>(round) << 20);
    const size_t n = bytes / sizeof(uint32_t);
    uint32_t* p = nullptr;
    CHECK(cudaMallocFromPoolAsync(reinterpret_cast<void**>(&p), bytes, pool, stream));
    fill<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(p, n, static_cast<uint32_t>(round));
    CHECK(cudaGetLastError());
    CHECK(cudaMemcpyAsync(host.data(), p + n - host.size(), host.size() * sizeof(uint32_t), cudaMemcpyDeviceToHost, stream));
    CHECK(cudaFreeAsync(p, stream));
    CHECK(cudaStreamSynchronize(stream));
    for (size_t i = 0; i < host.size(); ++i) {
      const size_t at = n - host.size() + i;
      ok = ok && host[i] == static_cast<uint32_t>(at) * 2246822519u + static_cast<uint32_t>(round);
      sum = sum * 31 + host[i];
    }
  }
  std::printf("pool allocations: sum=%016llx %s\n", static_cast<unsigned long long>(sum), ok ? "ok" : "mismatch");
  if (print_usage(pool, "after the rounds") != 0) return 1;
  CHECK(cudaMemPoolTrimTo(pool, 0));
  if (print_usage(pool, "trimmed") != 0) return 1;
  uint64_t zero = 0;
  CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &zero));
  CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
  if (print_usage(pool, "high marks reset") != 0) return 1;

  // The device's current pool serves cudaMallocAsync.
  cudaMemPool_t default_pool, current;
  CHECK(cudaDeviceGetDefaultMemPool(&default_pool, 0));
  CHECK(cudaDeviceSetMemPool(0, pool));
  CHECK(cudaDeviceGetMemPool(&current, 0));
  std::printf("current pool is ours: %d\n", current == pool);
  void* q = nullptr;
  CHECK(cudaMallocAsync(&q, size_t{3} << 20, stream));
  CHECK(cudaMemsetAsync(q, 0x5A, size_t{3} << 20, stream));
  unsigned char probe[16] = {};
  CHECK(cudaMemcpyAsync(probe, static_cast<unsigned char*>(q) + 12345, sizeof probe, cudaMemcpyDeviceToHost, stream));
  CHECK(cudaStreamSynchronize(stream));
  if (print_usage(pool, "with a cudaMallocAsync allocation") != 0) return 1;
  CHECK(cudaFreeAsync(q, stream));
  CHECK(cudaStreamSynchronize(stream));
  std::printf("memset through the pool: %02x %02x\n", probe[0], probe[15]);
  CHECK(cudaDeviceSetMemPool(0, default_pool));

  cudaMemAccessDesc access{};
  access.location.type = cudaMemLocationTypeDevice;
  access.location.id = 0;
  access.flags = cudaMemAccessFlagsProtReadWrite;
  CHECK(cudaMemPoolSetAccess(pool, &access, 1));
  cudaMemAccessFlags flags = cudaMemAccessFlagsProtNone;
  cudaMemLocation location = access.location;
  CHECK(cudaMemPoolGetAccess(&flags, pool, &location));
  std::printf("access: %d\n", static_cast<int>(flags));

  CHECK(cudaStreamDestroy(stream));
  CHECK(cudaMemPoolDestroy(pool));
  std::printf("%s\n", ok ? "ok" : "mismatch");
  return 0;
}
