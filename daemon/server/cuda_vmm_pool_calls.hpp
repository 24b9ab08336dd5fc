// The server's side of the hand-written virtual memory and pool calls: cuMemRetainAllocationHandle
// (a device address as a number) and the pool attributes (values sized by the attribute).
#pragma once

#include <cuda.h>

#include "cuda_resources.hpp"
#include "wire.hpp"

namespace rgpu::cuda {

// Arguments: u64 address. Reply: u64 handle.
CUresult retain_allocation_handle(WireReader& args, WireWriter& out, SessionResources& resources);
// cuMemPoolSetAttribute: u64 pool, u32 attribute, u32 size, the value. cuMemPoolGetAttribute:
// u64 pool, u32 attribute; reply: the value. The size must be the attribute's (cuda_pool_attributes.hpp).
CUresult pool_attribute(uint32_t function, WireReader& args, WireWriter& out, SessionResources& resources);

}  // namespace rgpu::cuda
