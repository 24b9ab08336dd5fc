// What the generated server dispatch (cuda_server.gen.cpp) needs: one call's arguments, device
// ordinal translation, and where its outputs go.
#pragma once

#include <cuda.h>

#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_functions.gen.hpp"
#include "wire.hpp"

namespace rgpu::cuda {

// The application numbers its devices 0..n-1; the server's driver numbers them its own way.
struct DeviceMap {
  std::vector<CUdevice> real;  // index: the application's ordinal
  CUdevice to_real(CUdevice app) const {
    if (app < 0 || static_cast<size_t>(app) >= real.size()) return -1;  // the driver answers INVALID_DEVICE
    return real[static_cast<size_t>(app)];
  }
  CUdevice to_app(CUdevice r) const {
    for (size_t i = 0; i < real.size(); ++i)
      if (real[i] == r) return static_cast<CUdevice>(i);
    return -1;
  }
};

class CallContext {
 public:
  // Checked before the driver is called (quota checks); may refuse the call with a CUresult.
  using Veto = std::function<CUresult(const CallContext&)>;

  CallContext(uint32_t function, WireReader& args, uint32_t out_mask, const DeviceMap& devices, Veto veto)
      : function_(function), args_(args), out_mask_(out_mask), devices_(devices), veto_(std::move(veto)) {}

  uint32_t function() const { return function_; }
  uint32_t out_mask() const { return out_mask_; }

  template <typename T>
  T in() {
    static_assert(sizeof(T) <= sizeof(uint64_t));
    const uint64_t raw = args_.get<uint64_t>();
    ins_.push_back(raw);
    T value;
    std::memcpy(&value, &raw, sizeof value);
    return value;
  }
  std::string str() { return args_.str(); }
  CUdevice device(CUdevice app_ordinal) const { return devices_.to_real(app_ordinal); }
  CUdevice virtual_device(CUdevice real) const { return devices_.to_app(real); }

  CUresult end_of_arguments() {
    args_.expect_end();
    const CUresult verdict = veto_ ? veto_(*this) : CUDA_SUCCESS;
    passed_veto_ = verdict == CUDA_SUCCESS;
    return verdict;
  }
  // The veto let the call through to the driver (what it reserved is held).
  bool passed_veto() const { return passed_veto_; }

  template <typename T>
  void out(const T& value) {
    static_assert(sizeof(T) <= sizeof(uint64_t));
    uint64_t raw = 0;
    std::memcpy(&raw, &value, sizeof value);
    outs_.push_back(raw);
  }

  // Raw 8-byte arguments and outputs in order, for the resource tracker's hooks.
  const std::vector<uint64_t>& ins() const { return ins_; }
  std::vector<uint64_t>& outs() { return outs_; }

 private:
  uint32_t function_;
  WireReader& args_;
  uint32_t out_mask_;
  const DeviceMap& devices_;
  Veto veto_;
  bool passed_veto_ = false;
  std::vector<uint64_t> ins_;
  std::vector<uint64_t> outs_;
};

struct AutoFunction {
  uint32_t id;
  const char* name;
  bool pipelined;
  CUresult (*call)(void* fn, CallContext& c);
};

// The generated entry for a driver function, or nullptr if it is not dispatched generically.
const AutoFunction* find_auto_function(uint32_t id);

}  // namespace rgpu::cuda
