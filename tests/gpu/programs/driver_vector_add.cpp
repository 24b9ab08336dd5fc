// A driver-API program: loads a module (PTX or cubin, given on the command line), adds two vectors,
// scales the result on a stream, and prints what it computed. Its output must be the same natively
// and through RGPU.
#include <cuda.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#define CHECK(call)                                                              \
  do {                                                                           \
    CUresult r_ = (call);                                                        \
    if (r_ != CUDA_SUCCESS) {                                                    \
      const char* name_ = nullptr;                                               \
      cuGetErrorName(r_, &name_);                                                \
      std::printf("%s failed: %s\n", #call, name_ ? name_ : "?");                \
      return 1;                                                                  \
    }                                                                            \
  } while (0)

int main(int argc, char** argv) {
  if (argc != 2) {
    std::printf("usage: %s MODULE\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string image = ss.str();

  CHECK(cuInit(0));
  int count = 0;
  CHECK(cuDeviceGetCount(&count));
  CUdevice device;
  CHECK(cuDeviceGet(&device, 0));
  char name[256];
  CHECK(cuDeviceGetName(name, sizeof name, device));
  int major = 0, minor = 0;
  CHECK(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device));
  CHECK(cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device));
  std::printf("devices: %d, device 0: %s, compute %d.%d\n", count, name, major, minor);

  CUcontext context;
  CHECK(cuCtxCreate(&context, nullptr, 0, device));
  CUmodule module;
  CHECK(cuModuleLoadData(&module, image.c_str()));
  CUfunction add, scale;
  CHECK(cuModuleGetFunction(&add, module, "vector_add"));
  CHECK(cuModuleGetFunction(&scale, module, "scale"));

  for (int n : {1000, 1 << 20, 24 << 20}) {
    std::vector<float> a(n), b(n), c(n);
    for (int i = 0; i < n; ++i) {
      a[i] = std::sin(i * 0.001f);
      b[i] = std::cos(i * 0.002f);
    }
    const size_t bytes = n * sizeof(float);
    CUdeviceptr da, db, dc;
    CHECK(cuMemAlloc(&da, bytes));
    CHECK(cuMemAlloc(&db, bytes));
    CHECK(cuMemAlloc(&dc, bytes));
    CHECK(cuMemcpyHtoD(da, a.data(), bytes));
    CHECK(cuMemcpyHtoD(db, b.data(), bytes));
    void* args[] = {&da, &db, &dc, &n};
    const unsigned blocks = (n + 255) / 256;
    CHECK(cuLaunchKernel(add, blocks, 1, 1, 256, 1, 1, 0, nullptr, args, nullptr));
    CUstream stream;
    CHECK(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
    CUevent start, stop;
    CHECK(cuEventCreate(&start, 0));
    CHECK(cuEventCreate(&stop, 0));
    CHECK(cuCtxSynchronize());
    float factor = 0.5f;
    void* scale_args[] = {&dc, &factor, &n};
    CHECK(cuEventRecord(start, stream));
    CHECK(cuLaunchKernel(scale, blocks, 1, 1, 256, 1, 1, 0, stream, scale_args, nullptr));
    CHECK(cuEventRecord(stop, stream));
    CHECK(cuMemcpyDtoHAsync(c.data(), dc, bytes, stream));
    CHECK(cuStreamSynchronize(stream));
    float ms = 0;
    CHECK(cuEventElapsedTime(&ms, start, stop));
    double sum = 0;
    int wrong = 0;
    for (int i = 0; i < n; ++i) {
      sum += c[i];
      if (std::fabs(c[i] - 0.5f * (a[i] + b[i])) > 1e-6f) ++wrong;
    }
    std::printf("n=%d checksum=%.6f wrong=%d timing=%s\n", n, sum, wrong, ms >= 0 ? "ok" : "bad");
    CHECK(cuEventDestroy(start));
    CHECK(cuEventDestroy(stop));
    CHECK(cuStreamDestroy(stream));
    CHECK(cuMemFree(da));
    CHECK(cuMemFree(db));
    CHECK(cuMemFree(dc));
  }
  size_t free_bytes = 0, total = 0;
  CHECK(cuMemGetInfo(&free_bytes, &total));
  std::printf("memory info: %s\n", free_bytes > 0 && free_bytes <= total ? "ok" : "bad");
  CHECK(cuModuleUnload(module));
  CHECK(cuCtxDestroy(context));
  std::printf("done\n");
  return 0;
}
