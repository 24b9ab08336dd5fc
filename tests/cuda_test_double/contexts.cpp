// The test double's contexts: one primary context per device (retained and released, reset when
// the last retain goes), created contexts, and each thread's context stack.
#include <bit>
#include <cstdlib>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
Registry<CUcontext, Context> g_contexts;
CUcontext g_primary[kDeviceCount] = {};
thread_local std::vector<CUcontext> t_stack;

bool valid_flags(unsigned flags) {
  return (flags & ~unsigned{CU_CTX_FLAGS_MASK}) == 0 && std::popcount(flags & CU_CTX_SCHED_MASK) <= 1;
}

// Frees what the context owns, once its queued work has run; it stays known (a handle that is
// never found again would turn CUDA_ERROR_CONTEXT_IS_DESTROYED into CUDA_ERROR_INVALID_CONTEXT).
void tear_down(std::unique_lock<std::mutex>& lock, CUcontext handle, Context& context) {
  finish_context(lock, handle);
  if (context.primary && context.primary_retains > 0) return;  // retained again meanwhile
  release_modules_of(handle);
  release_textures_of(handle);
  release_arrays_of(handle);
  release_streams_and_events_of(lock, handle);
  release_memory_of(handle);
  context.sticky = CUDA_SUCCESS;
  context.alive = false;
}

Context& primary_of(CUdevice device) {
  if (g_primary[device] == nullptr) {
    Context context;
    context.device = device;
    context.primary = true;
    context.alive = false;
    g_primary[device] = g_contexts.add(context);
  }
  return *g_contexts.find(g_primary[device]);
}
}  // namespace

Context* find_context(CUcontext handle) { return g_contexts.find(handle); }

CUresult current_context(CUcontext& handle) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (t_stack.empty()) return CUDA_ERROR_INVALID_CONTEXT;
  handle = t_stack.back();
  const Context* context = find_context(handle);
  if (context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (!context->alive) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
  return context->sticky;
}

}  // namespace rgpu::cuda_double

using namespace rgpu::cuda_double;

DOUBLE_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* handle, CUdevice device) {
  auto lock = lock_driver();
  if (CUresult r = check_device(device); r != CUDA_SUCCESS) return r;
  if (handle == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context& primary = primary_of(device);
  primary.alive = true;
  ++primary.primary_retains;
  *handle = g_primary[device];
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  auto lock = lock_driver();
  if (CUresult r = check_device(device); r != CUDA_SUCCESS) return r;
  Context& primary = primary_of(device);
  if (primary.primary_retains == 0) return CUDA_ERROR_INVALID_CONTEXT;
  if (--primary.primary_retains == 0) tear_down(lock, g_primary[device], primary);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuDevicePrimaryCtxGetState(CUdevice device, unsigned int* flags, int* active) {
  auto lock = lock_driver();
  if (CUresult r = check_device(device); r != CUDA_SUCCESS) return r;
  if (flags == nullptr || active == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Context& primary = primary_of(device);
  *flags = primary.flags;
  *active = primary.alive ? 1 : 0;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice device, unsigned int flags) {
  auto lock = lock_driver();
  if (CUresult r = check_device(device); r != CUDA_SUCCESS) return r;
  if (!valid_flags(flags)) return CUDA_ERROR_INVALID_VALUE;
  primary_of(device).flags = flags;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuCtxCreate_v4(CUcontext* handle, CUctxCreateParams* params, unsigned int flags,
                                      CUdevice device) {
  auto lock = lock_driver();
  if (CUresult r = check_device(device); r != CUDA_SUCCESS) return r;
  if (handle == nullptr || !valid_flags(flags)) return CUDA_ERROR_INVALID_VALUE;
  if (params != nullptr && (params->execAffinityParams != nullptr || params->cigParams != nullptr))
    return CUDA_ERROR_NOT_SUPPORTED;
  Context context;
  context.device = device;
  context.flags = flags;
  *handle = g_contexts.add(context);
  // CUDA_TEST_DOUBLE_CONTEXT_BYTES (a CUDA_ variable: it reaches a server worker's driver): device
  // memory each created context holds for itself, as a real
  // driver's contexts do (the application cannot free it; it goes with the context).
  if (const char* bytes = std::getenv("CUDA_TEST_DOUBLE_CONTEXT_BYTES"); bytes != nullptr && std::atoll(bytes) > 0) {
    CUdeviceptr reserve = 0;
    if (CUresult r = allocate_device_memory(*handle, static_cast<size_t>(std::atoll(bytes)), kContextReserve, reserve);
        r != CUDA_SUCCESS)
      return r;
  }
  t_stack.push_back(*handle);  // a new context is current to the thread that made it
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuCtxDestroy_v2(CUcontext handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Context* context = find_context(handle);
  if (context == nullptr || context->primary || !context->alive) return CUDA_ERROR_INVALID_CONTEXT;
  tear_down(lock, handle, *context);
  if (!t_stack.empty() && t_stack.back() == handle) t_stack.pop_back();
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuCtxSetCurrent(CUcontext handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (handle == nullptr) {
    if (!t_stack.empty()) t_stack.pop_back();
    return CUDA_SUCCESS;
  }
  const Context* context = find_context(handle);
  if (context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  // A primary context nobody retains may be made current (it is unusable until retained again);
  // a destroyed created context may not.
  if (!context->alive && !context->primary) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
  if (t_stack.empty()) t_stack.push_back(handle);
  else t_stack.back() = handle;
  return CUDA_SUCCESS;
}

// A context's device; a primary context answers even while inactive (its handle stays the same).
DOUBLE_EXPORT CUresult cuCtxGetDevice_v2(CUdevice* device, CUcontext handle) {
  auto lock = lock_driver();
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (handle == nullptr) {
    if (CUresult r = current_context(handle); r != CUDA_SUCCESS) return r;
  }
  const Context* context = find_context(handle);
  if (context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (!context->alive && !context->primary) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
  *device = context->device;
  return CUDA_SUCCESS;
}

// Handles are never reused, so a context's handle serves as its unique id.
DOUBLE_EXPORT CUresult cuCtxGetId(CUcontext handle, unsigned long long* id) {
  auto lock = lock_driver();
  if (id == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (handle == nullptr) {
    if (CUresult r = current_context(handle); r != CUDA_SUCCESS) return r;
  }
  const Context* context = find_context(handle);
  if (context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (!context->alive) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
  *id = reinterpret_cast<uintptr_t>(handle);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuCtxSynchronize() {
  auto lock = lock_driver();
  CUcontext current;
  if (CUresult r = current_context(current); r != CUDA_SUCCESS) return r;
  if (unsafe_during_capture(current)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  finish_context(lock, current);
  release_pool_memory();
  return current_context(current);
}
