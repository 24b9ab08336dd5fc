// The server's CUDA driver library, dlopened once (libcuda.so.1, or $RGPU_CUDA_LIBRARY), its
// symbols resolved by name and kept.
#pragma once

#include <cuda.h>

#include <mutex>
#include <string>
#include <unordered_map>

namespace rgpu::cuda {

class Driver {
 public:
  // Loads the library and runs cuInit(0) on first use.
  static Driver& get();

  bool ready() const { return ready_; }
  // Why the driver is not ready ("cannot load libcuda.so.1: ...", "cuInit failed: ...").
  const std::string& problem() const { return problem_; }

  // nullptr when the library does not export `name`.
  void* symbol(const char* name);

  template <typename Fn>
  Fn fn(const char* name) {
    return reinterpret_cast<Fn>(symbol(name));
  }

 private:
  Driver();
  void* handle_ = nullptr;
  bool ready_ = false;
  std::string problem_;
  std::mutex mutex_;
  std::unordered_map<std::string, void*> symbols_;
};

const char* error_name(CUresult result);

}  // namespace rgpu::cuda
