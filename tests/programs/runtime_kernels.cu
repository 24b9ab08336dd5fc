// A CUDA runtime program with kernels, built by nvcc: launches with <<<>>>, copies, a stream and
// events. The kernels carry the names and parameters of the CUDA driver test double's kernels, so
// that on the double (which runs kernels it knows by name on the host) and on a GPU the program
// prints the same lines. Exits 0 only when every result is right.
#include <cstdio>
#include <vector>

extern "C" __global__ void vector_add_f32(const float* a, const float* b, float* c, unsigned n) {
  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}

extern "C" __global__ void fill_u32(unsigned* p, unsigned value, unsigned long long n) {
  for (unsigned long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) p[i] = value;
}

#define CHECK(call)                                                                            \
  do {                                                                                         \
    cudaError_t e = (call);                                                                    \
    if (e != cudaSuccess) {                                                                    \
      std::printf("%s failed: %s (%s)\n", #call, cudaGetErrorName(e), cudaGetErrorString(e)); \
      return 1;                                                                                \
    }                                                                                          \
  } while (0)

int main() {
  const unsigned n = 100000;
  std::vector<float> a(n), b(n), c(n);
  for (unsigned i = 0; i < n; ++i) a[i] = i * 0.5f, b[i] = 2.0f * i + 1;
  float *da, *db, *dc;
  CHECK(cudaMalloc(&da, n * sizeof(float)));
  CHECK(cudaMalloc(&db, n * sizeof(float)));
  CHECK(cudaMalloc(&dc, n * sizeof(float)));
  CHECK(cudaMemcpy(da, a.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(db, b.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  vector_add_f32<<<(n + 255) / 256, 256>>>(da, db, dc, n);
  CHECK(cudaGetLastError());
  CHECK(cudaMemcpy(c.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost));
  unsigned wrong = 0;
  for (unsigned i = 0; i < n; ++i) wrong += c[i] != a[i] + b[i];
  std::printf("vector_add wrong=%u\n", wrong);

  cudaStream_t stream;
  cudaEvent_t start, stop;
  CHECK(cudaStreamCreate(&stream));
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  unsigned* dp;
  std::vector<unsigned> filled(n);
  CHECK(cudaMalloc(&dp, n * sizeof(unsigned)));
  CHECK(cudaEventRecord(start, stream));
  fill_u32<<<64, 128, 0, stream>>>(dp, 42u, n);
  CHECK(cudaEventRecord(stop, stream));
  CHECK(cudaMemcpyAsync(filled.data(), dp, n * sizeof(unsigned), cudaMemcpyDeviceToHost, stream));
  CHECK(cudaStreamSynchronize(stream));
  float ms = -1;
  CHECK(cudaEventElapsedTime(&ms, start, stop));
  unsigned not_42 = 0;
  for (unsigned v : filled) not_42 += v != 42u;
  std::printf("fill not_42=%u timing=%s\n", not_42, ms >= 0 ? "ok" : "bad");
  CHECK(cudaFree(da));
  CHECK(cudaFree(db));
  CHECK(cudaFree(dc));
  CHECK(cudaFree(dp));
  CHECK(cudaStreamDestroy(stream));
  return wrong == 0 && not_42 == 0 ? 0 : 1;
}
