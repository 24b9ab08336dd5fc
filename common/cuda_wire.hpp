// CUDA calls on the wire (docs/protocol.md): a CudaCall frame carries CallHeader + arguments,
// a CudaReply frame carries ReplyHeader + outputs. Generic arguments and outputs are 8 bytes
// each (the value's bytes, zero-padded); C strings are u32 length + bytes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "wire.hpp"

namespace rgpu::cuda {

inline constexpr uint16_t kMsgCudaCall = 0x100;
inline constexpr uint16_t kMsgCudaReply = 0x101;

struct CallHeader {
  uint32_t function = 0;  // FN_* id (FNV-1a of the driver function's name)
  uint32_t thread = 0;    // the calling application thread; each gets its own server thread
  uint64_t context = 0;   // the calling thread's current CUcontext (server value), 0 for none
  uint32_t out_mask = 0;  // bit i: the i-th output pointer was not NULL
  // Process-wide issue order: the server starts calls in this order whatever thread sent them,
  // so work issued by one thread is in the driver before work another thread issues after it.
  uint32_t sequence = 0;
};
static_assert(sizeof(CallHeader) == 24);

struct ReplyHeader {
  int32_t result = 0;
  // An earlier pipelined call that failed (0 when none): reported once, on the next reply.
  uint32_t deferred_function = 0;
  int32_t deferred_result = 0;
  uint32_t reserved = 0;
};
static_assert(sizeof(ReplyHeader) == 16);

// Large host<->device copies travel in chunks of at most this many data bytes, so that the
// application's copy into its ring, the network and the server's GPU copy overlap; the server
// stages a chunk in page-locked memory of kCopyStagingSize bytes (data plus headers).
inline constexpr size_t kCopyChunkSize = 8u << 20;
inline constexpr size_t kCopyStagingSize = kCopyChunkSize + (64u << 10);
// Frames with payloads from this size on may go straight into staging or ring memory.
inline constexpr size_t kBulkFrameMinSize = 256u << 10;

// Calls RGPU adds to the driver API (ids outside the FNV space of "cu*" names by construction:
// they are FNV-1a of names starting with "rgpu.").
inline constexpr uint32_t FN_rgpuDeviceInfo = fnv1a("rgpu.DeviceInfo");        // bulk device facts
inline constexpr uint32_t FN_rgpuMemcpyHtoD = fnv1a("rgpu.MemcpyHtoD");        // one chunk host -> device
inline constexpr uint32_t FN_rgpuMemcpyDtoH = fnv1a("rgpu.MemcpyDtoH");        // one chunk device -> host
inline constexpr uint32_t FN_rgpuFunctionParams = fnv1a("rgpu.FunctionParams");  // kernel parameter layout
inline constexpr uint32_t FN_rgpuLaunch = fnv1a("rgpu.Launch");                // cuLaunchKernel(Ex) with packed params
inline constexpr uint32_t FN_rgpuModuleLoad = fnv1a("rgpu.ModuleLoad");        // image bytes -> CUmodule
inline constexpr uint32_t FN_rgpuLibraryLoad = fnv1a("rgpu.LibraryLoad");      // image bytes -> CUlibrary
inline constexpr uint32_t FN_rgpuCtxCreate = fnv1a("rgpu.CtxCreate");          // cuCtxCreate_v4 and older
inline constexpr uint32_t FN_rgpuMemcpy2D = fnv1a("rgpu.Memcpy2D");            // 2D/3D copies

// rgpu.Memcpy2D modes: both sides on the server; packed rows from the application's host memory
// follow the descriptor; the answer carries packed rows for the application's host memory.
inline constexpr uint8_t kCopyOnServer = 0, kCopyFromHost = 1, kCopyToHost = 2;

}  // namespace rgpu::cuda
