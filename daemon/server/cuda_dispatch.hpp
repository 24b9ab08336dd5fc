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
#include "cuda_wire.hpp"
#include "log.hpp"
#include "wire.hpp"

namespace rgpu::cuda {

// The entry of a fixed table of calls (each with an `id`, a function id) for `id`, or nullptr.
template <typename Entry, size_t N>
const Entry* find_call(const Entry (&table)[N], uint32_t id) {
  for (const Entry& entry : table)
    if (entry.id == id) return &entry;
  return nullptr;
}

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
  // Checked before the driver is called (quota checks); may refuse the call with a CUresult, and
  // notes what it reserved (set_reserved).
  using Veto = std::function<CUresult(CallContext&)>;

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

  // A plain struct the application passed by pointer (false: it passed NULL) or by value.
  template <typename T>
  bool struct_in(T& value, const char* type) {
    if (args_.get<uint8_t>() == 0) return false;
    struct_bytes(value, type);
    return true;
  }
  // The bytes of one plain struct, whose size must be the server's own.
  template <typename T>
  void struct_bytes(T& value, const char* type) {
    static_assert(std::is_trivially_copyable_v<T>);
    check_size(args_.get<uint32_t>(), sizeof(T), type);
    std::memcpy(&value, args_.bytes(sizeof(T)).data(), sizeof(T));
    struct_ins_.emplace_back(reinterpret_cast<const uint8_t*>(&value), reinterpret_cast<const uint8_t*>(&value) + sizeof(T));
  }
  // An array of plain structs (false: the application passed NULL), at most kMaxStructArray long.
  template <typename T>
  bool struct_array(std::vector<T>& values, const char* type) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (args_.get<uint8_t>() == 0) return false;
    check_size(args_.get<uint32_t>(), sizeof(T), type);
    const uint64_t count = args_.get<uint64_t>();
    if (count > kMaxStructArray)
      throw WireError(std::string("an array of ") + std::to_string(count) + " " + type + " is over the limit of " +
                      std::to_string(kMaxStructArray));
    values.resize(count);
    if (count) std::memcpy(values.data(), args_.bytes(count * sizeof(T)).data(), count * sizeof(T));
    return true;
  }
  // The n-th struct read (by pointer, value or in-out), for the resource tracker's hooks.
  template <typename T>
  bool struct_input(size_t index, T& value) const {
    if (index >= struct_ins_.size() || struct_ins_[index].size() != sizeof(T)) return false;
    std::memcpy(&value, struct_ins_[index].data(), sizeof(T));
    return true;
  }
  // Refuses the call for what the text names (logged).
  CUresult refuse(const char* why) const {
    LOG_WARN("%s; refused", why);
    return CUDA_ERROR_INVALID_VALUE;
  }
  // A location's device is the application's ordinal on the wire and the driver's here.
  void to_real(CUmemLocation& location) const {
    if (location_type(location) == CU_MEM_LOCATION_TYPE_DEVICE) location.id = devices_.to_real(location.id);
  }
  void to_app(CUmemLocation& location) const {
    if (location_type(location) == CU_MEM_LOCATION_TYPE_DEVICE) location.id = devices_.to_app(location.id);
  }

  CUresult end_of_arguments() {
    args_.expect_end();
    const CUresult verdict = veto_ ? veto_(*this) : CUDA_SUCCESS;
    passed_veto_ = verdict == CUDA_SUCCESS;
    return verdict;
  }
  // The veto let the call through to the driver (what it reserved is held).
  bool passed_veto() const { return passed_veto_; }
  // Bytes of the quota the veto reserved for this call.
  void set_reserved(uint64_t bytes) { reserved_ = bytes; }
  uint64_t reserved() const { return reserved_; }

  template <typename T>
  void out(const T& value) {
    static_assert(sizeof(T) <= sizeof(uint64_t));
    uint64_t raw = 0;
    std::memcpy(&raw, &value, sizeof value);
    outs_.push_back(raw);
  }

  // A plain struct the driver filled; the reply carries them after the 8-byte outputs.
  template <typename T>
  void struct_out(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    struct_outs_.emplace_back(reinterpret_cast<const uint8_t*>(&value), reinterpret_cast<const uint8_t*>(&value) + sizeof(T));
  }

  // Raw 8-byte arguments and outputs in order, for the resource tracker's hooks.
  const std::vector<uint64_t>& ins() const { return ins_; }
  std::vector<uint64_t>& outs() { return outs_; }
  const std::vector<std::vector<uint8_t>>& struct_outs() const { return struct_outs_; }

 private:
  static void check_size(uint32_t sent, size_t own, const char* type) {
    if (sent != own)
      throw WireError(std::string("the application's ") + type + " is " + std::to_string(sent) + " bytes, the server's " +
                      std::to_string(own));
  }
  static uint32_t location_type(const CUmemLocation& location) {
    uint32_t type;  // as its bits: the wire may hold any value
    std::memcpy(&type, &location.type, sizeof type);
    return type;
  }

  uint32_t function_;
  WireReader& args_;
  uint32_t out_mask_;
  const DeviceMap& devices_;
  Veto veto_;
  bool passed_veto_ = false;
  uint64_t reserved_ = 0;
  std::vector<uint64_t> ins_;
  std::vector<uint64_t> outs_;
  std::vector<std::vector<uint8_t>> struct_ins_;
  std::vector<std::vector<uint8_t>> struct_outs_;
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
