// The driver's "cluster" table (1734dc26-…), named so by nvrtc's kernel cache, which gives the
// cache up when the table is missing or smaller than it needs. cuBLASLt asks for it when it picks
// some bf16/fp16 kernels and calls slot 4 without checking the table is there; on an error answer
// it takes its path for drivers without the table. RGPU hands out a small table whose slots say
// "not supported", which keeps cuBLASLt and nvrtc on those paths.
#include "cuda_client.hpp"
#include "export_tables.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
constexpr char kClusterName[] = "cluster";

// cuBLASLt's call: (const uint8_t** data, size_t* size), a byte string it walks when answered.
CUresult cluster_bytes(const void**, size_t*) {
  LOG_DEBUG("slot 4 of the private cluster table: not supported, cuBLASLt takes its path without it");
  return CUDA_ERROR_NOT_SUPPORTED;
}

const void* const kClusterSlots[] = {
    size_slot(6),
    slot(&unknown_slot<kClusterName, 1>),
    slot(&unknown_slot<kClusterName, 2>),
    slot(&unknown_slot<kClusterName, 3>),
    slot(&cluster_bytes),
    slot(&unknown_slot<kClusterName, 5>),
};
}  // namespace

constinit const ExportTable kClusterTable{kClusterName, uuid_from_text("1734dc26-800d-4745-8726-c0f1e7dd8bca"),
                                          kClusterSlots};

}  // namespace rgpu::cuda
