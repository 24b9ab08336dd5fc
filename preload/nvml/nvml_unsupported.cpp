// Every NVML entry point RGPU's libnvidia-ml.so.1 does not answer (unsupported.def): exported, so
// that programs which resolve them find them, and refused with NVML_ERROR_NOT_SUPPORTED, logged
// once by name. Their parameters are never read, so none are declared.
#include "nvml_state.hpp"

#define NVML_UNSUPPORTED(name) \
  extern "C" __attribute__((visibility("default"))) rgpu::nvml::Return name() { return rgpu::nvml_client::not_supported(#name); }
#include "unsupported.def"
