// Answers that never change for the life of what they are about, kept after the server first gives
// them: a context's id, a stream's id, a library kernel's function in a context. cuBLAS and cuBLASLt
// ask for the first two before each call, the CUDA runtime for the third at launches.
#include <map>
#include <mutex>
#include <tuple>

#include "api_state.hpp"
#include "cuda_client.hpp"

namespace rgpu::cuda {

namespace {
std::mutex g_mutex;  // guards what follows
std::map<CUcontext, unsigned long long>& context_ids() {
  static auto* value = new std::map<CUcontext, unsigned long long>;  // never destroyed: see api_state.hpp
  return *value;
}
std::map<CUstream, unsigned long long>& stream_ids() {
  static auto* value = new std::map<CUstream, unsigned long long>;  // never destroyed: see api_state.hpp
  return *value;
}
std::map<std::pair<CUkernel, CUcontext>, CUfunction>& kernel_functions() {
  static auto* value = new std::map<std::pair<CUkernel, CUcontext>, CUfunction>;  // never destroyed: see api_state.hpp
  return *value;
}

// Streams made by the application; the null, legacy and per-thread handles stand for a different
// stream in each context or thread.
bool is_made_stream(CUstream stream) {
  return stream != nullptr && stream != CU_STREAM_LEGACY && stream != CU_STREAM_PER_THREAD;
}

template <typename Key, typename Value, typename Ask>
CUresult kept_answer(std::map<Key, Value>& kept, const Key& key, bool keep, Value* out, Ask ask) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (keep) {
    std::lock_guard lock(g_mutex);
    if (auto it = kept.find(key); it != kept.end()) {
      *out = it->second;
      return CUDA_SUCCESS;
    }
  }
  Value value{};
  if (CUresult r = ask(value); r != CUDA_SUCCESS) return r;
  *out = value;
  if (keep) {
    std::lock_guard lock(g_mutex);
    kept[key] = value;
  }
  return CUDA_SUCCESS;
}

template <typename Value, typename Handle>
CUresult ask_server(uint32_t function, Handle handle, Value& value) {
  CallBuilder call(function);
  call.out_mask(1u);
  call.in(handle);
  return call_sync(call, [&](WireReader& r) { value = take_out<Value>(r); });
}

CUresult stream_id(uint32_t function, CUstream stream, unsigned long long* id) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  return kept_answer(stream_ids(), stream, is_made_stream(stream), id,
                     [&](unsigned long long& value) { return ask_server(function, stream, value); });
}

CUresult destroy_stream(uint32_t function, CUstream stream) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  {
    std::lock_guard lock(g_mutex);
    stream_ids().erase(stream);
  }
  CallBuilder call(function);
  call.in(stream);
  return call_pipelined(call);
}
}  // namespace

void identities_context_gone(CUcontext context) {
  std::lock_guard lock(g_mutex);
  context_ids().erase(context);
  stream_ids().clear();  // its streams went with it; which those were is not kept
  std::erase_if(kernel_functions(), [&](const auto& entry) { return entry.first.second == context; });
}

void forget_kernel_functions() {
  std::lock_guard lock(g_mutex);
  kernel_functions().clear();
}

}  // namespace rgpu::cuda

using namespace rgpu::cuda;

RGPU_EXPORT CUresult cuCtxGetId(CUcontext context, unsigned long long* id) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const CUcontext which = context ? context : current_context();
  return kept_answer(context_ids(), which, which != nullptr, id,
                     [&](unsigned long long& value) { return ask_server(FN_cuCtxGetId, context, value); });
}

RGPU_EXPORT CUresult cuStreamGetId(CUstream stream, unsigned long long* id) { return stream_id(FN_cuStreamGetId, stream, id); }
RGPU_EXPORT CUresult cuStreamGetId_ptsz(CUstream stream, unsigned long long* id) {
  return stream_id(FN_cuStreamGetId_ptsz, stream, id);
}
RGPU_EXPORT CUresult cuStreamDestroy(CUstream stream) { return destroy_stream(FN_cuStreamDestroy, stream); }
RGPU_EXPORT CUresult cuStreamDestroy_v2(CUstream stream) { return destroy_stream(FN_cuStreamDestroy_v2, stream); }

RGPU_EXPORT CUresult cuKernelGetFunction(CUfunction* function, CUkernel kernel) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const CUcontext current = current_context();
  return kept_answer(kernel_functions(), std::pair{kernel, current}, current != nullptr, function,
                     [&](CUfunction& value) { return ask_server(FN_cuKernelGetFunction, kernel, value); });
}
