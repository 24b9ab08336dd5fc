// The cudart interface table: how libcudart loads the fat binaries compiled into a program and
// finds a device's primary context.
#include <cstdint>

#include "api_state.hpp"
#include "cuda_client.hpp"
#include "export_tables.hpp"

namespace rgpu::cuda {

namespace {
constexpr char kName[] = "cudart interface";

// The compiler's fat binary wrapper (__fatBinC_Wrapper_t) or the fat binary itself: our
// cuModuleLoadData takes either and ships the image to the server.
CUresult load_fatbin(CUmodule* module, const void* image) {
  if (module == nullptr || image == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return cuModuleLoadData(module, image);
}

CUresult get_module_from_fatbin(CUmodule* module, const void* fatbin_wrapper) {
  return load_fatbin(module, fatbin_wrapper);
}

// The same with three further arguments, understood only in their null/zero form; anything else
// asks for something we do not know how to honour.
CUresult get_module_from_fatbin_with_options(CUmodule* module, const void* fatbin_wrapper, void* extra1,
                                             void* extra2, unsigned extra3) {
  if (extra1 != nullptr || extra2 != nullptr || extra3 != 0)
    return not_supported("loading a fat binary with options through the cudart interface");
  return load_fatbin(module, fatbin_wrapper);
}

CUresult get_module_from_fatbin_header(const void* fatbin, CUmodule* module, void* extra1, void* extra2,
                                       unsigned extra3) {
  if (extra1 != nullptr || extra2 != nullptr || extra3 != 0)
    return not_supported("loading a fat binary with options through the cudart interface");
  return load_fatbin(module, fatbin);
}

// The device's primary context handle without retaining it: cudart retains it itself when it
// first needs the device.
CUresult primary_context(CUcontext* context, CUdevice device) {
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return primary_context_of(device, context);
}

void runtime_notice(uintptr_t) {}  // a notification; nothing for the driver to do

// The real driver loads its PTX and NVVM compilers here; the server's driver compiles.
CUresult load_compilers() { return CUDA_SUCCESS; }

const void* const kSlots[] = {
    size_slot(13),
    slot(&get_module_from_fatbin),
    slot(&primary_context),
    slot(&unknown_slot<kName, 3>),
    slot(&unknown_slot<kName, 4>),
    slot(&unknown_slot<kName, 5>),
    slot(&get_module_from_fatbin_with_options),
    slot(&runtime_notice),
    slot(&get_module_from_fatbin_header),
    slot(&unknown_slot<kName, 9>),
    nullptr,  // empty in the driver's own table too
    slot(&unknown_slot<kName, 11>),
    slot(&load_compilers),
};
static_assert(std::size(kSlots) == 13);
}  // namespace

constinit const ExportTable kCudartInterfaceTable{
    kName, uuid_from_text("6bd5fb6c-5bf4-e74a-8987-d93912fd9df9"), kSlots};

}  // namespace rgpu::cuda
