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

// For the server's own driver calls that CUDA counts as unsafe while a stream captures (page-locking
// and freeing staging memory, a captured copy's staging): the calling thread's capture mode is
// relaxed while one lives, so that an application's capture in the global or thread-local mode is
// neither refused nor invalidated by work the application did not ask for.
class RelaxedCapture {
 public:
  RelaxedCapture() : exchange_(Driver::get().fn<Exchange>("cuThreadExchangeStreamCaptureMode")) {
    if (exchange_ && exchange_(&mode_) != CUDA_SUCCESS) exchange_ = nullptr;
  }
  ~RelaxedCapture() {
    if (exchange_) exchange_(&mode_);
  }
  RelaxedCapture(const RelaxedCapture&) = delete;
  RelaxedCapture& operator=(const RelaxedCapture&) = delete;

 private:
  using Exchange = CUresult (*)(CUstreamCaptureMode*);
  Exchange exchange_;
  CUstreamCaptureMode mode_ = CU_STREAM_CAPTURE_MODE_RELAXED;  // the thread's own mode while relaxed
};

}  // namespace rgpu::cuda
