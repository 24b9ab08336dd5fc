// Function attributes: asked of the server once per function and attribute, then answered here.
// cuFuncSetAttribute changes what the function reports, so it forgets that function's answers.
// A value set again, as libraries such as cuBLASLt do before each launch, is already the
// driver's: it is answered here without a round trip.
#include <limits>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>

#include "api_state.hpp"
#include "cuda_client.hpp"

namespace rgpu::cuda {

namespace {
std::mutex g_mutex;
std::map<std::pair<CUfunction, int>, int>* g_attributes = new std::map<std::pair<CUfunction, int>, int>;
// What cuFuncSetAttribute and cuKernelSetAttribute last set (by function or kernel, device and
// attribute); each forgets the other's, which may change the same kernel.
std::map<std::pair<CUfunction, int>, int>* g_function_set = new std::map<std::pair<CUfunction, int>, int>;
std::map<std::tuple<CUkernel, CUdevice, int>, int>* g_kernel_set = new std::map<std::tuple<CUkernel, CUdevice, int>, int>;

void forget_attributes() {
  std::lock_guard lock(g_mutex);
  g_attributes->clear();
  g_function_set->clear();
  g_kernel_set->clear();
}

void forget(CUfunction f) {
  std::lock_guard lock(g_mutex);
  auto it = g_attributes->lower_bound({f, std::numeric_limits<int>::min()});
  while (it != g_attributes->end() && it->first.first == f) it = g_attributes->erase(it);
}
}  // namespace

void forget_function_facts() {
  forget_attributes();
  forget_kernel_parameter_layouts();
  forget_kernel_functions();
}

}  // namespace rgpu::cuda

using namespace rgpu::cuda;

RGPU_EXPORT CUresult cuFuncGetAttribute(int* value, CUfunction_attribute attribute, CUfunction f) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const std::pair<CUfunction, int> key{f, attribute};
  {
    std::lock_guard lock(g_mutex);
    if (auto it = g_attributes->find(key); it != g_attributes->end()) {
      *value = it->second;
      return CUDA_SUCCESS;
    }
  }
  CallBuilder call(FN_cuFuncGetAttribute);
  call.out_mask(1u);
  call.in(attribute);
  call.in(f);
  int answer = 0;
  const CUresult result = call_sync(call, [&](rgpu::WireReader& r) { answer = take_out<int>(r); });
  if (result != CUDA_SUCCESS) return result;
  *value = answer;
  std::lock_guard lock(g_mutex);
  g_attributes->emplace(key, answer);
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuFuncSetAttribute(CUfunction f, CUfunction_attribute attribute, int value) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  {
    std::lock_guard lock(g_mutex);
    auto it = g_function_set->find({f, attribute});
    if (it != g_function_set->end() && it->second == value) return CUDA_SUCCESS;
  }
  forget(f);
  CallBuilder call(FN_cuFuncSetAttribute);
  call.in(f);
  call.in(attribute);
  call.in(value);
  const CUresult result = call_sync(call, nullptr);
  std::lock_guard lock(g_mutex);
  g_kernel_set->clear();
  if (result == CUDA_SUCCESS) (*g_function_set)[{f, attribute}] = value;
  else g_function_set->erase({f, attribute});
  return result;
}

RGPU_EXPORT CUresult cuKernelSetAttribute(CUfunction_attribute attribute, int value, CUkernel kernel, CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const std::tuple<CUkernel, CUdevice, int> key{kernel, device, attribute};
  {
    std::lock_guard lock(g_mutex);
    auto it = g_kernel_set->find(key);
    if (it != g_kernel_set->end() && it->second == value) return CUDA_SUCCESS;
  }
  CallBuilder call(FN_cuKernelSetAttribute);
  call.in(attribute);
  call.in(value);
  call.in(kernel);
  call.in(device);
  const CUresult result = call_sync(call, nullptr);
  std::lock_guard lock(g_mutex);
  // The kernel's functions in every context report the new value.
  g_attributes->clear();
  g_function_set->clear();
  if (result == CUDA_SUCCESS) (*g_kernel_set)[key] = value;
  else g_kernel_set->erase(key);
  return result;
}

// A function handle may be reused by the server once its module or library is gone: what was
// learnt about functions is forgotten with it.
RGPU_EXPORT CUresult cuModuleUnload(CUmodule module) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  forget_function_facts();
  CallBuilder call(FN_cuModuleUnload);
  call.in(module);
  return call_pipelined(call);
}

RGPU_EXPORT CUresult cuLibraryUnload(CUlibrary library) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  forget_function_facts();
  CallBuilder call(FN_cuLibraryUnload);
  call.in(library);
  return call_pipelined(call);
}
