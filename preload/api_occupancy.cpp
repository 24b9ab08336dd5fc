// cuOccupancyMaxPotentialBlockSize: the search over block sizes runs here, in the application,
// because it calls the application's own function for each block size's dynamic shared memory.
// Each candidate's occupancy is the server's answer to
// cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags, as the driver's own search uses it.
#include <algorithm>

#include "api_state.hpp"
#include "cuda_client.hpp"

using namespace rgpu::cuda;

RGPU_EXPORT CUresult cuOccupancyMaxPotentialBlockSizeWithFlags(int* min_grid_size, int* block_size, CUfunction func,
                                                               CUoccupancyB2DSize dynamic_shared_of,
                                                               size_t dynamic_shared, int block_size_limit,
                                                               unsigned int flags) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (min_grid_size == nullptr || block_size == nullptr || block_size_limit < 0) return CUDA_ERROR_INVALID_VALUE;
  CUdevice device = 0;
  int function_limit = 0, warp = 0, multiprocessors = 0, threads_per_multiprocessor = 0;
  for (CUresult result :
       {cuCtxGetDevice(&device), cuFuncGetAttribute(&function_limit, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, func),
        cuDeviceGetAttribute(&warp, CU_DEVICE_ATTRIBUTE_WARP_SIZE, device),
        cuDeviceGetAttribute(&multiprocessors, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device),
        cuDeviceGetAttribute(&threads_per_multiprocessor, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR, device)})
    if (result != CUDA_SUCCESS) return result;
  if (warp <= 0 || function_limit <= 0) return CUDA_ERROR_INVALID_VALUE;
  const int limit = block_size_limit > 0 ? std::min(block_size_limit, function_limit) : function_limit;

  // From the largest block size down, in steps of a warp; a larger block size wins a tie.
  int best_size = 0, best_blocks = 0, best_threads = 0;
  for (int aligned = (limit + warp - 1) / warp * warp; aligned > 0; aligned -= warp) {
    const int size = std::min(limit, aligned);
    const size_t shared = dynamic_shared_of != nullptr ? dynamic_shared_of(size) : dynamic_shared;
    int blocks = 0;
    const CUresult result = cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&blocks, func, size, shared, flags);
    if (result != CUDA_SUCCESS) return result;
    if (blocks * size > best_threads) {
      best_size = size;
      best_blocks = blocks;
      best_threads = blocks * size;
    }
    if (best_threads == threads_per_multiprocessor) break;  // no block size can do better
  }
  *min_grid_size = best_blocks * multiprocessors;
  *block_size = best_size;
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuOccupancyMaxPotentialBlockSize(int* min_grid_size, int* block_size, CUfunction func,
                                                      CUoccupancyB2DSize dynamic_shared_of, size_t dynamic_shared,
                                                      int block_size_limit) {
  return cuOccupancyMaxPotentialBlockSizeWithFlags(min_grid_size, block_size, func, dynamic_shared_of, dynamic_shared,
                                                   block_size_limit, CU_OCCUPANCY_DEFAULT);
}
