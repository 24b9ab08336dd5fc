// Driver handles and memory types as they come from the wire: handles are their values; a memory
// type may hold any value, so it is read as its bits.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <cstring>

namespace rgpu::cuda {

template <typename T>
T handle_of(uint64_t raw) {
  return reinterpret_cast<T>(static_cast<uintptr_t>(raw));
}
template <typename T>
uint64_t raw_of(T handle) {
  return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(handle));
}

// Loading a value outside the enum would be undefined behaviour.
inline uint32_t memory_type(const CUmemorytype& field) {
  uint32_t value;
  std::memcpy(&value, &field, sizeof value);
  return value;
}
// Device memory or an array: memory of the server's, not an address of the application's host.
inline bool on_server(const CUmemorytype& field) {
  const uint32_t type = memory_type(field);
  return type == CU_MEMORYTYPE_DEVICE || type == CU_MEMORYTYPE_ARRAY;
}

}  // namespace rgpu::cuda
