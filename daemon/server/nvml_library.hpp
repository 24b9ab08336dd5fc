// NVIDIA's management library (libnvidia-ml.so.1, or $RGPU_NVML_LIBRARY), loaded at run time once
// per process and started (nvmlInit_v2): the worker's memory meter and the main process's NVML
// reader share it.
#pragma once

#include <string>

#include "nvml_abi.hpp"

namespace rgpu::nvml {

class Library {
 public:
  // Loads and starts the library on first use (it takes tens of milliseconds, more on a GPU
  // without persistence mode); thread-safe.
  static const Library& get();
  // Empty when loaded and started; else why not.
  const std::string& problem() const { return problem_; }
  // The entry point `name`, or nullptr when the library lacks it (or is not loaded).
  template <typename Fn>
  Fn symbol(const char* name) const {
    return reinterpret_cast<Fn>(lookup(name));
  }

 private:
  void* lookup(const char* name) const;
  void* handle_ = nullptr;
  std::string problem_;
};

}  // namespace rgpu::nvml
