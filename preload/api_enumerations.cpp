// A module's functions and a library's kernels as lists (cuModuleEnumerateFunctions,
// cuLibraryEnumerateKernels): the handles the server's driver lists.
#include "api_state.hpp"
#include "cuda_client.hpp"

namespace rgpu::cuda {
namespace {
template <typename Handle>
CUresult enumerate(uint32_t function, Handle* handles, unsigned count, const void* owner) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (handles == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(function);
  call.writer().put(reinterpret_cast<uint64_t>(owner)).put<uint32_t>(count);
  return call_sync(call, [&](WireReader& reader) {
    if (reader.get<uint32_t>() != count) throw WireError("a list of another length than asked for");
    for (unsigned i = 0; i < count; ++i) handles[i] = take_out<Handle>(reader);
  });
}
}  // namespace
}  // namespace rgpu::cuda

using namespace rgpu::cuda;

RGPU_EXPORT CUresult cuModuleEnumerateFunctions(CUfunction* functions, unsigned int count, CUmodule module) {
  return enumerate(FN_cuModuleEnumerateFunctions, functions, count, module);
}
RGPU_EXPORT CUresult cuLibraryEnumerateKernels(CUkernel* kernels, unsigned int count, CUlibrary library) {
  return enumerate(FN_cuLibraryEnumerateKernels, kernels, count, library);
}
