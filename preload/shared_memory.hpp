// Managed memory and mapped (zero-copy) host memory with the GPU on another machine. Each such
// allocation is a device allocation on the server plus a host copy in this process: at the same
// address for managed memory and cuMemHostAlloc'ed mapped memory, so that one pointer serves the
// host and kernels; the application's own memory for cuMemHostRegister'ed mapped memory, whose
// device address differs (as CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM says). The copies are kept in step where CUDA
// makes one side's writes visible to the other, as on a device without concurrent managed access:
// the pages the host wrote travel before device work is sent (launches, copies, memsets, graph
// launches, prefetches), and what the device may have written comes back after a synchronisation
// succeeds (context, stream or event), once the whole context is idle.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <cstdint>

namespace rgpu::cuda {

enum class SharedKind : uint8_t { Managed, MappedHost, RegisteredHost };

struct SharedAllocation {
  CUdeviceptr base = 0;         // the device address the application uses
  uint64_t host = 0;            // the host copy's address (base, but for registered memory)
  CUdeviceptr server_base = 0;  // the server's allocation (base, or a page below it)
  size_t bytes = 0;
  SharedKind kind = SharedKind::Managed;
  unsigned int flags = 0;  // cuMemAllocManaged's or cuMemHostAlloc's
};

// Allocates on the server (cuMemAllocManaged or cuMemAlloc) and puts the host copy in place.
CUresult allocate_shared(CUdeviceptr* pointer, size_t bytes, SharedKind kind, unsigned int flags);
// Keeps the application's memory [host, host + bytes) in step with a new device allocation.
CUresult register_shared(void* host, size_t bytes, unsigned int flags, CUdeviceptr* device);
// The shared allocation whose device range holds `pointer`, if any.
bool find_shared(uint64_t pointer, SharedAllocation& found);
// The shared allocation whose host copy holds `pointer`, if any.
bool find_shared_host(uint64_t pointer, SharedAllocation& found);

}  // namespace rgpu::cuda
