// Large host memory copies shared out among a few helper threads: one core's memcpy (about
// 10 GB/s) is slower than the stages that follow an application's copy into its ring (parallel
// connections, the server's GPU copy), so it would bound every large host-to-device transfer.
#pragma once

#include <cstddef>

namespace rgpu {

// Copies `bytes` from `src` to `dst` (which do not overlap) and returns when all of it is there.
// Small copies take a plain memcpy on the calling thread.
void parallel_copy(void* dst, const void* src, size_t bytes);

}  // namespace rgpu
