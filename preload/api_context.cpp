// Contexts: each thread's context stack lives here (no round trip); every call carries the
// calling thread's current context to the server, which makes it current on its thread.
#include <map>
#include <mutex>

#include "api_state.hpp"
#include "cuda_client.hpp"
#include "export_tables.hpp"

namespace rgpu::cuda {

namespace {
thread_local std::vector<CUcontext>* t_stack = nullptr;  // freed at thread exit: see api_state.hpp
std::mutex g_context_mutex;
std::map<CUcontext, CUdevice>& context_devices() {
  static auto* value = new std::map<CUcontext, CUdevice>;  // never destroyed: see api_state.hpp
  return *value;
}

// Each device's primary context handle once learnt, and how many retains this process holds on it
// (when they are all released, the context is gone as far as this process is concerned).
struct PrimaryContext {
  CUcontext handle = nullptr;
  unsigned retains = 0;
};
std::map<CUdevice, PrimaryContext>& primary_contexts() {
  static auto* value = new std::map<CUdevice, PrimaryContext>;  // never destroyed: see api_state.hpp
  return *value;
}

CUresult send_primary_retain(CUcontext* context, CUdevice device) {
  CallBuilder call(FN_cuDevicePrimaryCtxRetain);
  call.out_mask(1);
  call.in(device);
  CUresult r = call_sync(call, [&](WireReader& reader) { *context = take_out<CUcontext>(reader); });
  if (r == CUDA_SUCCESS) remember_context_device(*context, device);
  return r;
}

CUresult send_primary_release(CUdevice device) {
  CallBuilder call(FN_cuDevicePrimaryCtxRelease_v2);
  call.in(device);
  return call_sync(call, nullptr);
}

CUresult retain_primary(CUcontext* context, CUdevice device) {
  CUresult r = send_primary_retain(context, device);
  if (r != CUDA_SUCCESS) return r;
  std::lock_guard lock(g_context_mutex);
  PrimaryContext& primary = primary_contexts()[device];
  primary.handle = *context;
  ++primary.retains;
  return CUDA_SUCCESS;
}

// What this process keeps about a context that is going away: its context-local storage runs its
// destructors; the stream shared memory fetches on, its id, and what was learnt about functions
// (their handles may come back for others) are forgotten.
void context_goes(CUcontext context) {
  context_storage_destroyed(context);
  shared_memory_context_gone(context);
  identities_context_gone(context);
  forget_function_facts();
}

CUresult release_primary(CUdevice device) {
  CUcontext going = nullptr;
  {
    std::lock_guard lock(g_context_mutex);
    auto& primaries = primary_contexts();
    auto it = primaries.find(device);
    if (it != primaries.end() && it->second.retains > 0 && --it->second.retains == 0) going = it->second.handle;
  }
  if (going != nullptr) context_goes(going);
  return send_primary_release(device);
}

// A reset ends the primary context whatever the retain count.
CUcontext forget_primary_retains(CUdevice device) {
  std::lock_guard lock(g_context_mutex);
  auto it = primary_contexts().find(device);
  if (it == primary_contexts().end()) return nullptr;
  it->second.retains = 0;
  return it->second.handle;
}
}  // namespace

CUresult primary_context_of(CUdevice device, CUcontext* context) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (device < 0 || static_cast<size_t>(device) >= devices().size()) return CUDA_ERROR_INVALID_DEVICE;
  {
    std::lock_guard lock(g_context_mutex);
    auto it = primary_contexts().find(device);
    if (it != primary_contexts().end() && it->second.handle != nullptr) {
      *context = it->second.handle;
      return CUDA_SUCCESS;
    }
  }
  // The handle of a device's primary context never changes, active or not: learn it with a
  // retain and give the retain straight back.
  CUcontext handle = nullptr;
  if (CUresult r = send_primary_retain(&handle, device); r != CUDA_SUCCESS) return r;
  if (CUresult r = send_primary_release(device); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(g_context_mutex);
  primary_contexts()[device].handle = handle;
  *context = handle;
  return CUDA_SUCCESS;
}

std::vector<CUcontext>& context_stack() {
  if (t_stack == nullptr) {
    t_stack = new std::vector<CUcontext>;
    static thread_local ThreadExitDelete<std::vector<CUcontext>> cleanup{&t_stack};
  }
  return *t_stack;
}
CUcontext current_context() { return t_stack == nullptr || t_stack->empty() ? nullptr : t_stack->back(); }

void remember_context_device(CUcontext context, CUdevice device) {
  std::lock_guard lock(g_context_mutex);
  context_devices()[context] = device;
}

bool context_device(CUcontext context, CUdevice& device) {
  std::lock_guard lock(g_context_mutex);
  auto it = context_devices().find(context);
  if (it == context_devices().end()) return false;
  device = it->second;
  return true;
}

}  // namespace rgpu::cuda

using namespace rgpu::cuda;
using rgpu::WireReader;

RGPU_EXPORT CUresult cuCtxGetCurrent(CUcontext* context) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *context = current_context();
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuCtxSetCurrent(CUcontext context) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  auto& stack = context_stack();
  if (context == nullptr) {
    if (!stack.empty()) stack.pop_back();
  } else if (stack.empty()) {
    stack.push_back(context);
  } else {
    stack.back() = context;
  }
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuCtxPushCurrent_v2(CUcontext context) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  context_stack().push_back(context);
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuCtxPopCurrent_v2(CUcontext* context) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  auto& stack = context_stack();
  if (stack.empty()) return CUDA_ERROR_INVALID_CONTEXT;
  if (context) *context = stack.back();
  stack.pop_back();
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuCtxPushCurrent(CUcontext context) { return cuCtxPushCurrent_v2(context); }
RGPU_EXPORT CUresult cuCtxPopCurrent(CUcontext* context) { return cuCtxPopCurrent_v2(context); }

RGPU_EXPORT CUresult cuCtxGetDevice(CUdevice* device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUcontext context = current_context();
  if (context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (context_device(context, *device)) return CUDA_SUCCESS;
  return cuCtxGetDevice_v2(device, context);  // a context this process learnt of another way
}

RGPU_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* context, CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return retain_primary(context, device);
}

RGPU_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  return release_primary(device);
}

RGPU_EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice device) { return cuDevicePrimaryCtxRelease_v2(device); }

RGPU_EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (CUcontext primary = forget_primary_retains(device)) context_goes(primary);
  CallBuilder call(FN_cuDevicePrimaryCtxReset_v2);
  call.in(device);
  return call_sync(call, nullptr);
}

RGPU_EXPORT CUresult cuDevicePrimaryCtxReset(CUdevice device) { return cuDevicePrimaryCtxReset_v2(device); }

static CUresult create_context(CUcontext* context, unsigned int flags, CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_rgpuCtxCreate);
  call.writer().put<uint32_t>(flags);
  call.in(static_cast<uint64_t>(device));
  CUresult r = call_sync(call, [&](WireReader& reader) { *context = take_out<CUcontext>(reader); });
  if (r != CUDA_SUCCESS) return r;
  remember_context_device(*context, device);
  context_stack().push_back(*context);  // a new context is current to the creating thread
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuCtxCreate_v2(CUcontext* context, unsigned int flags, CUdevice device) {
  return create_context(context, flags, device);
}

RGPU_EXPORT CUresult cuCtxCreate(CUcontext* context, unsigned int flags, CUdevice device) {
  return create_context(context, flags, device);
}

RGPU_EXPORT CUresult cuCtxCreate_v3(CUcontext* context, CUexecAffinityParam* params, int count, unsigned int flags,
                                    CUdevice device) {
  if (params != nullptr && count > 0) return not_supported("cuCtxCreate_v3 with execution affinity");
  return create_context(context, flags, device);
}

RGPU_EXPORT CUresult cuCtxCreate_v4(CUcontext* context, CUctxCreateParams* params, unsigned int flags,
                                    CUdevice device) {
  if (params != nullptr && (params->execAffinityParams != nullptr || params->cigParams != nullptr))
    return not_supported("cuCtxCreate_v4 with execution affinity or CIG parameters");
  return create_context(context, flags, device);
}

RGPU_EXPORT CUresult cuCtxDestroy_v2(CUcontext context) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  context_goes(context);
  CallBuilder call(FN_cuCtxDestroy_v2);
  call.in(context);
  CUresult r = call_sync(call, nullptr);
  if (r == CUDA_SUCCESS) std::erase(context_stack(), context);
  return r;
}

RGPU_EXPORT CUresult cuCtxDestroy(CUcontext context) { return cuCtxDestroy_v2(context); }
