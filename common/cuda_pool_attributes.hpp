// The value of each memory pool attribute: cuMemPoolSetAttribute and cuMemPoolGetAttribute take it
// as `void*`, its type depending on the attribute. Both ends size it from this table.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <cstdint>

namespace rgpu::cuda {

// Bytes of the attribute's value, or 0 for an attribute RGPU does not know.
inline size_t pool_attribute_size(uint32_t attribute) {
  switch (attribute) {
    case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES: return sizeof(int);
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
    case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT:
    case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
    case CU_MEMPOOL_ATTR_USED_MEM_CURRENT:
    case CU_MEMPOOL_ATTR_USED_MEM_HIGH: return sizeof(cuuint64_t);
    default: return 0;
  }
}

}  // namespace rgpu::cuda
