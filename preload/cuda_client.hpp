// The client side of RGPU's CUDA driver: what the generated stubs (cuda_client.gen.cpp) and the
// hand-written entry points share. Compiled with __CUDA_API_VERSION_INTERNAL so that every
// versioned driver name is declared and none is renamed by cuda.h's macros.
#pragma once

#include <cuda.h>
#include <cudaProfiler.h>

#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_functions.gen.hpp"
#include "cuda_wire.hpp"
#include "wire.hpp"

#define RGPU_EXPORT extern "C" __attribute__((visibility("default")))

namespace rgpu::cuda {

// One call's payload: CallHeader, then 8-byte arguments, strings and raw bytes.
class CallBuilder {
 public:
  explicit CallBuilder(uint32_t function);
  void out_mask(uint32_t mask);
  template <typename T>
  void in(T value) {
    static_assert(sizeof(T) <= sizeof(uint64_t));
    uint64_t raw = 0;
    std::memcpy(&raw, &value, sizeof value);
    writer_.put(raw);
  }
  void str(const char* text) { writer_.str(text ? text : ""); }
  // A plain struct by pointer (NULL: absent) or by value (its address), as `u8 present` + its bytes.
  template <typename T>
  void struct_in(const T* value) {
    writer_.put<uint8_t>(value != nullptr);
    if (value) struct_bytes(*value);
  }
  // One plain struct's bytes, with its size for the server to check.
  template <typename T>
  void struct_bytes(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    writer_.put<uint32_t>(sizeof(T)).bytes(&value, sizeof(T));
  }
  // `count` plain structs from `values` (NULL: absent); false when there are more than may travel.
  template <typename T>
  bool struct_array(const T* values, uint64_t count) {
    static_assert(std::is_trivially_copyable_v<T>);
    writer_.put<uint8_t>(values != nullptr);
    if (values == nullptr) return true;
    if (count > kMaxStructArray) return false;
    writer_.put<uint32_t>(sizeof(T)).put<uint64_t>(count).bytes(values, count * sizeof(T));
    return true;
  }
  WireWriter& writer() { return writer_; }
  std::vector<uint8_t>& payload() { return writer_.buffer(); }
  uint32_t function() const { return function_; }

 private:
  uint32_t function_;
  WireWriter writer_;
};

template <typename T>
T take_out(WireReader& reader) {
  const uint64_t raw = reader.get<uint64_t>();
  T value;
  std::memcpy(&value, &raw, sizeof value);
  return value;
}

// A plain struct the server filled; its size must be this library's own.
template <typename T>
void take_struct(WireReader& reader, T& value, const char* type) {
  const uint32_t size = reader.get<uint32_t>();
  if (size != sizeof(T))
    throw WireError(std::string("the server's ") + type + " is " + std::to_string(size) + " bytes, this library's " +
                    std::to_string(sizeof(T)));
  std::memcpy(&value, reader.bytes(sizeof(T)).data(), sizeof(T));
}

using ReplyReader = std::function<void(WireReader&)>;

// Sends the call and waits for its answer; read_outs runs on a successful answer.
CUresult call_sync(CallBuilder& call, const ReplyReader& read_outs);
// Sends the call without waiting (errors surface at the next call that waits).
CUresult call_pipelined(CallBuilder& call);
// For entry points RGPU does not forward: logs the name once, returns CUDA_ERROR_NOT_SUPPORTED.
CUresult not_supported(const char* name);

// Device memory ranges the application holds (from the allocation calls), so that cuMemcpy can
// tell device pointers from host pointers.
void note_device_range(CUdeviceptr base, size_t bytes);
void forget_device_range(CUdeviceptr base);
// Managed and mapped host memory (shared_memory.cpp): the generated stubs call these.
// Sends the host's writes to shared allocations before device work is sent.
CUresult before_device_work();
// After a successful synchronisation: fetches what the device may have written to shared
// allocations (waiting for the whole context first unless `context_idle`).
CUresult after_synchronisation(bool context_idle);
// Before a device allocation is freed: stops sharing it; the address the server knows it by.
CUdeviceptr release_shared(CUdeviceptr pointer);
// After cuStreamBeginCapture* (begin) or cuStreamEndCapture* answered `result`: while a capture is
// under way, nothing is synchronised (the copies would be captured, or end the capture).
void capture_changed(bool begin, CUresult result);
// A context is going away: the stream shared memory's fetches use in it goes with it.
void shared_memory_context_gone(CUcontext context);
// A context is going away: its id and its kernels' functions are forgotten (api_identities.cpp).
void identities_context_gone(CUcontext context);
// Modules or libraries were unloaded: library kernels' functions are asked again.
void forget_kernel_functions();
// Modules, libraries or a context went: what was learnt about functions (attributes, values set,
// parameter layouts, library kernels' functions) is forgotten, as their handles may be reused.
void forget_function_facts();
// Whether a capture this process began may still be under way.
bool capture_under_way();

// Every range that starts in [base, base + bytes) (unmapped virtual memory).
void forget_device_ranges(CUdeviceptr base, size_t bytes);
struct DeviceRange {
  CUdeviceptr base = 0;
  size_t bytes = 0;
  CUcontext context = nullptr;
};
bool find_device_range(CUdeviceptr pointer, DeviceRange& range);

struct ExportedFunction {
  const char* name;
  void* address;
};
extern const ExportedFunction kExportedFunctions[];
extern const size_t kExportedFunctionCount;

// cuInit has succeeded in this process.
bool initialized();

}  // namespace rgpu::cuda
