// The driver's context table (21318c60-…), as far as NVIDIA's libraries are known to use it:
// slot 4 gives a context's unique id (cuCtxGetId's answer), which cuBLASLt keys its kernels by;
// slots 51 and 39 turn a stream handle into the stream it stands for and that stream into its id,
// by which cuBLAS keeps a workspace per stream. The driver's table has 93 slots; the known prefix
// is handed out, its size saying so, and the unknown slots in it answer CUDA_ERROR_NOT_SUPPORTED.
#include <array>
#include <utility>

#include "cuda_client.hpp"
#include "export_tables.hpp"

extern "C" CUresult cuCtxGetId(CUcontext context, unsigned long long* id);
extern "C" CUresult cuStreamGetId(CUstream stream, unsigned long long* id);

namespace rgpu::cuda {

namespace {
constexpr char kName[] = "context identity";
constexpr size_t kSlotCount = 52;

CUresult context_id(CUcontext context, unsigned long long* id) {
  if (id == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return ::cuCtxGetId(context, id);
}

// The null stream is the legacy default stream, or the thread's own default stream when the
// caller says it was built for per-thread default streams. RGPU's stream handles are the server
// driver's: a stream stands for itself.
CUresult resolve_stream(CUcontext, CUstream stream, CUstream* resolved, int per_thread_default) {
  if (resolved == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (stream == nullptr) stream = per_thread_default ? CU_STREAM_PER_THREAD : CU_STREAM_LEGACY;
  *resolved = stream;
  return CUDA_SUCCESS;
}

CUresult stream_id(CUcontext, CUstream stream, unsigned long long* id) {
  if (id == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return ::cuStreamGetId(stream, id);
}

template <size_t... Index>
std::array<const void*, kSlotCount> make_slots(std::index_sequence<Index...>) {
  std::array<const void*, kSlotCount> slots = {slot(&unknown_slot<kName, Index>)...};
  slots[0] = size_slot(kSlotCount);
  slots[4] = slot(&context_id);
  slots[39] = slot(&stream_id);
  slots[51] = slot(&resolve_stream);
  return slots;
}

const std::array<const void*, kSlotCount> kSlots = make_slots(std::make_index_sequence<kSlotCount>());
}  // namespace

constinit const ExportTable kContextIdentityTable{kName, uuid_from_text("21318c60-9714-3248-8ca6-41ff7324c8f2"),
                                                  kSlots};

}  // namespace rgpu::cuda
