// The driver's context table (21318c60-…), as far as NVIDIA's libraries are known to use it:
// slot 4 gives a context's unique id (cuCtxGetId's answer), which cuBLASLt keys its kernels by.
// The driver's table is longer; only the known prefix is handed out, its size saying so.
#include "cuda_client.hpp"
#include "export_tables.hpp"

extern "C" CUresult cuCtxGetId(CUcontext context, unsigned long long* id);

namespace rgpu::cuda {

namespace {
constexpr char kName[] = "context identity";

CUresult context_id(CUcontext context, unsigned long long* id) {
  if (id == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return ::cuCtxGetId(context, id);
}

const void* const kSlots[] = {
    size_slot(5),
    slot(&unknown_slot<kName, 1>),
    slot(&unknown_slot<kName, 2>),
    slot(&unknown_slot<kName, 3>),
    slot(&context_id),
};
}  // namespace

constinit const ExportTable kContextIdentityTable{kName, uuid_from_text("21318c60-9714-3248-8ca6-41ff7324c8f2"),
                                                  kSlots};

}  // namespace rgpu::cuda
