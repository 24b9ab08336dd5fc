// Names and lists the driver owns: a module's functions and a library's kernels
// (cuModuleEnumerateFunctions, cuLibraryEnumerateKernels), a function's or kernel's name
// (cuFuncGetName, cuKernelGetName), as the server's driver has them.
#include <map>
#include <mutex>
#include <string>

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

// The driver hands out names it keeps; these stay for the life of the process, one per handle.
CUresult name_of(uint32_t function, const char** name, const void* handle) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (name == nullptr || handle == nullptr) return CUDA_ERROR_INVALID_VALUE;
  static std::mutex mutex;
  static auto* names = new std::map<std::pair<uint32_t, const void*>, std::string>;  // never destroyed: see api_state.hpp
  {
    std::lock_guard lock(mutex);
    if (auto it = names->find({function, handle}); it != names->end()) {
      *name = it->second.c_str();
      return CUDA_SUCCESS;
    }
  }
  CallBuilder call(function);
  call.writer().put(reinterpret_cast<uint64_t>(handle));
  std::string text;
  if (CUresult r = call_sync(call, [&](WireReader& reader) { text = reader.str(); }); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(mutex);
  *name = names->try_emplace({function, handle}, std::move(text)).first->second.c_str();
  return CUDA_SUCCESS;
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
RGPU_EXPORT CUresult cuFuncGetName(const char** name, CUfunction function) {
  return name_of(FN_cuFuncGetName, name, function);
}
RGPU_EXPORT CUresult cuKernelGetName(const char** name, CUkernel kernel) {
  return name_of(FN_cuKernelGetName, name, kernel);
}
