// The GPU suite's driver API programs: a failed driver call prints its name and error to standard
// output (which the suite compares) and ends main() with status 1.
#pragma once

#include <cuda.h>

#include <cstdio>

#define CU_CHECK(call)                                            \
  do {                                                            \
    CUresult r_ = (call);                                         \
    if (r_ != CUDA_SUCCESS) {                                     \
      const char* name_ = nullptr;                                \
      cuGetErrorName(r_, &name_);                                 \
      std::printf("%s failed: %s\n", #call, name_ ? name_ : "?"); \
      return 1;                                                   \
    }                                                             \
  } while (0)
