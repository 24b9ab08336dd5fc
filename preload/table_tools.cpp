// The tables NVIDIA's tools (CUPTI, profilers) share with the runtime through the driver. No
// tool is attached through RGPU, so they describe an empty tool state.
#include <array>
#include <cstdint>

#include "cuda_client.hpp"
#include "export_tables.hpp"

extern "C" CUresult cuCtxGetCurrent(CUcontext* context);

namespace rgpu::cuda {

namespace {
constexpr char kTlsName[] = "tools thread-local state";
constexpr char kHooksName[] = "tools runtime callback hooks";

// The calling thread's current context. cuBLAS asks on each of its calls, and cuBLASLt keys its
// kernels by it: an answer that leaves the context unset leaves it no kernel to run.
CUresult thread_context(CUcontext* context) {
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return ::cuCtxGetCurrent(context);
}

const void* const kTlsSlots[] = {size_slot(3), slot(&unknown_slot<kTlsName, 1>), slot(&thread_context)};

// Areas where a tool would find the runtime's callback hooks: zeroed, so no hook is installed.
std::array<uint32_t, 1024> g_hooks_area{};
std::array<uint32_t, 14> g_hooks_flags{};

void hooks_area(void** area, size_t* size) {
  if (area) *area = g_hooks_area.data();
  if (size) *size = g_hooks_area.size();
}

void hooks_flags(void** area, size_t* size) {
  if (area) *area = g_hooks_flags.data();
  if (size) *size = g_hooks_flags.size();
}

const void* const kHooksSlots[] = {
    size_slot(7),
    slot(&unknown_slot<kHooksName, 1>),
    slot(&hooks_area),
    slot(&unknown_slot<kHooksName, 3>),
    slot(&unknown_slot<kHooksName, 4>),
    slot(&unknown_slot<kHooksName, 5>),
    slot(&hooks_flags),
};
}  // namespace

constinit const ExportTable kToolsTlsTable{
    kTlsName, uuid_from_text("42d85a81-23f6-cb47-8298-f6e78a3aecdc"), kTlsSlots};

constinit const ExportTable kToolsCallbackHooksTable{
    kHooksName, uuid_from_text("a094798c-2e74-2e74-93f2-0800200c0a66"), kHooksSlots};

}  // namespace rgpu::cuda
