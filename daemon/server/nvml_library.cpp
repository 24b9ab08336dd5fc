#include "nvml_library.hpp"

#include <dlfcn.h>

#include <cstdlib>

namespace rgpu::nvml {

const Library& Library::get() {
  static const Library loaded = [] {
    Library out;
    const char* env = std::getenv("RGPU_NVML_LIBRARY");
    const std::string name = env && *env ? env : "libnvidia-ml.so.1";
    out.handle_ = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (out.handle_ == nullptr) {
      out.problem_ = "cannot load " + name + ": " + ::dlerror();
      return out;
    }
    auto init = out.symbol<InitFn>("nvmlInit_v2");
    if (init == nullptr) out.problem_ = name + " lacks nvmlInit_v2";
    else if (Return r = init(); r != kSuccess) out.problem_ = "nvmlInit failed (NVML error " + std::to_string(r) + ")";
    return out;
  }();
  return loaded;
}

void* Library::lookup(const char* name) const { return handle_ ? ::dlsym(handle_, name) : nullptr; }

}  // namespace rgpu::nvml
