// The driver's table 6e163fbe-… as cuFFT uses it: slot 7 finds the kernel of a module that cuFFT
// loaded without knowing the kernel's name (each of its generated modules holds one kernel).
// cuFFT checks the table holds at least 7 slots past its size and treats any answer but 1 as its
// internal error (999).
#include "api_state.hpp"
#include "cuda_client.hpp"
#include "export_tables.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
constexpr char kName[] = "module functions";

using Put = void (*)(void** out, void* value);

// (context the module belongs to or null, module, put, out): put(out, the module's kernel) and 1,
// or 0 when the module does not hold exactly one kernel or the server cannot say.
int only_function_of_module(CUcontext context, CUmodule module, Put put, void** out) {
  if (module == nullptr || put == nullptr) return 0;
  if (context != nullptr && cuCtxPushCurrent_v2(context) != CUDA_SUCCESS) return 0;
  unsigned count = 0;
  CUfunction function = nullptr;
  CUresult r = cuModuleGetFunctionCount(&count, module);
  if (r == CUDA_SUCCESS && count == 1) r = cuModuleEnumerateFunctions(&function, 1, module);
  if (context != nullptr) {
    CUcontext popped = nullptr;
    cuCtxPopCurrent_v2(&popped);
  }
  if (r != CUDA_SUCCESS || count != 1) {
    LOG_WARN("slot 7 of the private %s table: a module with %u functions (%s); answered that there is none", kName,
             count, error_name_of(r));
    return 0;
  }
  put(out, function);
  return 1;
}

const void* const kSlots[] = {
    size_slot(8),
    slot(&unknown_slot<kName, 1>),
    slot(&unknown_slot<kName, 2>),
    slot(&unknown_slot<kName, 3>),
    slot(&unknown_slot<kName, 4>),
    slot(&unknown_slot<kName, 5>),
    slot(&unknown_slot<kName, 6>),
    slot(&only_function_of_module),
};
}  // namespace

constinit const ExportTable kModuleFunctionsTable{kName, uuid_from_text("6e163fbe-b958-444d-835c-e182aff1991e"), kSlots};

}  // namespace rgpu::cuda
