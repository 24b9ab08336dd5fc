// A driver-API program: loads a module (PTX or cubin, given on the command line), adds two vectors,
// scales the result on a stream, and prints what it computed. Its output must be the same natively
// and through RGPU.
#include <cuda.h>

#include "check_driver.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::printf("usage: %s MODULE\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string image = ss.str();

  CU_CHECK(cuInit(0));
  int count = 0;
  CU_CHECK(cuDeviceGetCount(&count));
  CUdevice device;
  CU_CHECK(cuDeviceGet(&device, 0));
  char name[256];
  CU_CHECK(cuDeviceGetName(name, sizeof name, device));
  int major = 0, minor = 0;
  CU_CHECK(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device));
  CU_CHECK(cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device));
  std::printf("devices: %d, device 0: %s, compute %d.%d\n", count, name, major, minor);

  CUcontext context;
  CU_CHECK(cuCtxCreate(&context, nullptr, 0, device));
  CUmodule module;
  CU_CHECK(cuModuleLoadData(&module, image.c_str()));
  CUfunction add, scale;
  CU_CHECK(cuModuleGetFunction(&add, module, "vector_add"));
  CU_CHECK(cuModuleGetFunction(&scale, module, "scale"));

  for (int n : {1000, 1 << 20, 24 << 20}) {
    std::vector<float> a(n), b(n), c(n);
    for (int i = 0; i < n; ++i) {
      a[i] = std::sin(i * 0.001f);
      b[i] = std::cos(i * 0.002f);
    }
    const size_t bytes = n * sizeof(float);
    CUdeviceptr da, db, dc;
    CU_CHECK(cuMemAlloc(&da, bytes));
    CU_CHECK(cuMemAlloc(&db, bytes));
    CU_CHECK(cuMemAlloc(&dc, bytes));
    CU_CHECK(cuMemcpyHtoD(da, a.data(), bytes));
    CU_CHECK(cuMemcpyHtoD(db, b.data(), bytes));
    void* args[] = {&da, &db, &dc, &n};
    const unsigned blocks = (n + 255) / 256;
    CU_CHECK(cuLaunchKernel(add, blocks, 1, 1, 256, 1, 1, 0, nullptr, args, nullptr));
    CUstream stream;
    CU_CHECK(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
    CUevent start, stop;
    CU_CHECK(cuEventCreate(&start, 0));
    CU_CHECK(cuEventCreate(&stop, 0));
    CU_CHECK(cuCtxSynchronize());
    float factor = 0.5f;
    void* scale_args[] = {&dc, &factor, &n};
    CU_CHECK(cuEventRecord(start, stream));
    CU_CHECK(cuLaunchKernel(scale, blocks, 1, 1, 256, 1, 1, 0, stream, scale_args, nullptr));
    CU_CHECK(cuEventRecord(stop, stream));
    CU_CHECK(cuMemcpyDtoHAsync(c.data(), dc, bytes, stream));
    CU_CHECK(cuStreamSynchronize(stream));
    float ms = 0;
    CU_CHECK(cuEventElapsedTime(&ms, start, stop));
    double sum = 0;
    int wrong = 0;
    for (int i = 0; i < n; ++i) {
      sum += c[i];
      if (std::fabs(c[i] - 0.5f * (a[i] + b[i])) > 1e-6f) ++wrong;
    }
    std::printf("n=%d checksum=%.6f wrong=%d timing=%s\n", n, sum, wrong, ms >= 0 ? "ok" : "bad");
    CU_CHECK(cuEventDestroy(start));
    CU_CHECK(cuEventDestroy(stop));
    CU_CHECK(cuStreamDestroy(stream));
    CU_CHECK(cuMemFree(da));
    CU_CHECK(cuMemFree(db));
    CU_CHECK(cuMemFree(dc));
  }
  size_t free_bytes = 0, total = 0;
  CU_CHECK(cuMemGetInfo(&free_bytes, &total));
  std::printf("memory info: %s\n", free_bytes > 0 && free_bytes <= total ? "ok" : "bad");
  CU_CHECK(cuModuleUnload(module));
  CU_CHECK(cuCtxDestroy(context));
  std::printf("done\n");
  return 0;
}
