// The GPU suite's programs: a failed CUDA call prints its name and error to standard output (which
// the suite compares) and ends main() with status 1.
#pragma once

#include <cstdio>

#define CHECK(call)                                                \
  do {                                                             \
    cudaError_t e_ = (call);                                       \
    if (e_ != cudaSuccess) {                                       \
      std::printf("%s failed: %s\n", #call, cudaGetErrorName(e_)); \
      return 1;                                                    \
    }                                                              \
  } while (0)
