#include "cuda_driver.hpp"

#include <dlfcn.h>

#include "cuda_probe.hpp"

namespace rgpu::cuda {

Driver& Driver::get() {
  static Driver driver;
  return driver;
}

Driver::Driver() {
  CudaLibrary library = cuda_driver_library();
  handle_ = library.handle;
  if (handle_ == nullptr) {
    problem_ = "cannot load " + library.name + ": " + library.error;
    return;
  }
  auto init = fn<CUresult (*)(unsigned int)>("cuInit");
  if (init == nullptr) {
    problem_ = cuda_library_name() + " has no cuInit";
    return;
  }
  if (CUresult r = init(0); r != CUDA_SUCCESS) {
    problem_ = std::string("cuInit failed: ") + error_name(r);
    return;
  }
  ready_ = true;
}

void* Driver::symbol(const char* name) {
  if (handle_ == nullptr) return nullptr;
  std::lock_guard lock(mutex_);
  auto [it, inserted] = symbols_.try_emplace(name, nullptr);
  if (inserted) it->second = dlsym(handle_, name);
  return it->second;
}

const char* error_name(CUresult result) {
  static auto get_name = Driver::get().fn<CUresult (*)(CUresult, const char**)>("cuGetErrorName");
  const char* name = nullptr;
  if (get_name && get_name(result, &name) == CUDA_SUCCESS && name) return name;
  return "unknown CUresult";
}

}  // namespace rgpu::cuda
