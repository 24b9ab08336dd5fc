// CUDA calls on the wire (docs/protocol.md): a CudaCall frame carries CallHeader + arguments,
// a CudaReply frame carries ReplyHeader + outputs. Generic arguments and outputs are 8 bytes
// each (the value's bytes, zero-padded); C strings are u32 length + bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

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
inline constexpr size_t kBulkFrameMinSize = 64u << 10;

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
inline constexpr uint32_t FN_rgpuImagePart = fnv1a("rgpu.ImagePart");          // the start of a large image
inline constexpr uint32_t FN_rgpuLinkCreate = fnv1a("rgpu.LinkCreate");        // cuLinkCreate, no options
inline constexpr uint32_t FN_rgpuLinkAdd = fnv1a("rgpu.LinkAdd");              // cuLinkAddData
inline constexpr uint32_t FN_rgpuLinkComplete = fnv1a("rgpu.LinkComplete");    // -> the linked image
inline constexpr uint32_t FN_rgpuLinkDestroy = fnv1a("rgpu.LinkDestroy");
inline constexpr uint32_t FN_rgpuTensorMap = fnv1a("rgpu.TensorMap");          // cuTensorMapEncode*, ReplaceAddress
inline constexpr uint32_t FN_rgpuLaunchHostFunction = fnv1a("rgpu.LaunchHostFunction");  // a host function, by id
inline constexpr uint32_t FN_rgpuHostFunctionPoll = fnv1a("rgpu.HostFunctionPoll");      // which one was reached
inline constexpr uint32_t FN_rgpuGraphAddHostNode = fnv1a("rgpu.GraphAddHostNode");      // a host node, by id

// The answer to an asynchronous rgpu.MemcpyDtoH on a capturing stream: no bytes (the copy became
// graph nodes that deliver them at each launch). Copies of host memory say where it is for that.

// Plain structs cross as `u32 size` + their bytes, checked against the receiver's own size; an
// array of them (a `const S*` beside its count) as `u8 present, u32 size, u64 n`, n structs, at most
// kMaxStructArray of them.
inline constexpr uint64_t kMaxStructArray = 1024;

// Module and library images larger than this travel in parts (rgpu.ImagePart, then the load call
// with the last part); the server keeps at most kMaxImageSize bytes of one image.
inline constexpr size_t kImagePartSize = 16u << 20;
inline constexpr size_t kMaxImageSize = size_t{2} << 30;

// rgpu.Memcpy2D modes: both sides on the server; packed rows from the application's host memory
// follow the descriptor; the answer carries packed rows for the application's host memory.
inline constexpr uint8_t kCopyOnServer = 0, kCopyFromHost = 1, kCopyToHost = 2;

// rgpu.Memcpy2D: which driver copy the application called, as one of this fixed set (never a
// function id): the server maps each value to its own driver function and refuses any other
// value, and a descriptor whose dimensions do not match the function's, with
// CUDA_ERROR_INVALID_VALUE.
enum class CopyFunction : uint32_t {
  Memcpy2D = 1,            // cuMemcpy2D_v2
  Memcpy2DPtds,            // cuMemcpy2D_v2_ptds
  Memcpy2DUnaligned,       // cuMemcpy2DUnaligned_v2
  Memcpy2DUnalignedPtds,   // cuMemcpy2DUnaligned_v2_ptds
  Memcpy2DAsync,           // cuMemcpy2DAsync_v2
  Memcpy2DAsyncPtsz,       // cuMemcpy2DAsync_v2_ptsz
  Memcpy3D,                // cuMemcpy3D_v2
  Memcpy3DPtds,            // cuMemcpy3D_v2_ptds
  Memcpy3DAsync,           // cuMemcpy3DAsync_v2
  Memcpy3DAsyncPtsz,       // cuMemcpy3DAsync_v2_ptsz
};

// cuStreamGetCaptureInfo_v2/_v3: which outputs the application asked for (the call's out mask).
// The answer: status u32, id u64, graph u64, dependency count u64, which lists follow u8, then the
// dependency nodes (u64 each) and their CUgraphEdgeData, each if listed.
inline constexpr uint32_t kCaptureStatus = 1, kCaptureId = 2, kCaptureGraph = 4, kCaptureDependencies = 8,
                          kCaptureEdgeData = 16, kCaptureCount = 32;
inline constexpr uint8_t kCaptureListsNodes = 1, kCaptureListsEdges = 2;

// Graph and node lists (cuGraphGetNodes, cuGraphGetEdges, cuGraphNodeGetDependencies, ...): the
// call sends `u64 handle, u64 capacity, u8 lists`, the answer is `u64 count, u64 n`, then n nodes
// (n pairs for edges) and, if asked, their CUgraphEdgeData; n is at most the capacity and kMaxGraphList.
inline constexpr uint8_t kGraphListNodes = 1, kGraphListEdgeData = 2;
inline constexpr uint64_t kMaxGraphList = 1u << 20;
// A conditional node's body graphs: at most this many (a switch's cases).
inline constexpr uint32_t kMaxConditionalBodies = 1024;
// cuStreamBatchMemOp: at most this many operations in one call.
inline constexpr uint32_t kMaxBatchMemOps = 256;

// What a reached host function is: the application's own function, or one of a captured copy
// between the device and the application's host memory (the server's, run at each graph launch):
// write the answer's bytes at `address`, or send `size` bytes from `address` with the next poll.
enum class HostFunctionKind : uint8_t { Application = 0, WriteToHost = 1, ReadFromHost = 2 };
// Captured copies' host functions have ids of the server's, apart from the application's.
inline constexpr uint64_t kServerHostFunctionIds = uint64_t{1} << 63;

// rgpu.HostFunctionPoll's answer: the host function the stream reached, if one was (`reach`
// names this run of it: a graph's runs again at each launch), and ids the application may forget.
struct HostFunctionPollAnswer {
  bool reached = false;
  uint64_t reach = 0;
  uint64_t id = 0;
  int32_t status = 0;  // cuStreamAddCallback's status
  bool once = false;   // the id runs only this once: forget it after the run
  std::vector<uint64_t> forgotten;
  HostFunctionKind kind = HostFunctionKind::Application;
  uint64_t address = 0;  // a captured copy's host memory
  uint64_t size = 0;
  std::vector<uint8_t> bytes;  // WriteToHost: what to write there
};

inline void encode(WireWriter& out, const HostFunctionPollAnswer& answer) {
  out.put<uint8_t>(answer.reached).put(answer.reach).put(answer.id).put(answer.status).put<uint8_t>(answer.once);
  out.put(static_cast<uint32_t>(answer.forgotten.size()));
  for (uint64_t id : answer.forgotten) out.put(id);
  out.put(static_cast<uint8_t>(answer.kind)).put(answer.address).put(answer.size);
  out.put(static_cast<uint64_t>(answer.bytes.size())).bytes(answer.bytes.data(), answer.bytes.size());
}

inline HostFunctionPollAnswer decode_host_function_poll_answer(WireReader& in) {
  HostFunctionPollAnswer answer;
  answer.reached = in.get<uint8_t>() != 0;
  answer.reach = in.get<uint64_t>();
  answer.id = in.get<uint64_t>();
  answer.status = in.get<int32_t>();
  answer.once = in.get<uint8_t>() != 0;
  const uint32_t count = in.get<uint32_t>();
  if (count > in.remaining() / sizeof(uint64_t)) throw WireError("host function poll answer: more ids than bytes");
  for (uint32_t i = 0; i < count; ++i) answer.forgotten.push_back(in.get<uint64_t>());
  const uint8_t kind = in.get<uint8_t>();
  if (kind > static_cast<uint8_t>(HostFunctionKind::ReadFromHost)) throw WireError("host function poll answer: unknown kind");
  answer.kind = static_cast<HostFunctionKind>(kind);
  answer.address = in.get<uint64_t>();
  answer.size = in.get<uint64_t>();
  const uint64_t length = in.get<uint64_t>();
  if (length > in.remaining()) throw WireError("host function poll answer: more bytes than came");
  auto bytes = in.bytes(length);
  answer.bytes.assign(bytes.begin(), bytes.end());
  in.expect_end();
  return answer;
}

// The name of one of RGPU's own calls, for logs (nullptr for any other id).
inline const char* rgpu_call_name(uint32_t id) {
  switch (id) {
    case FN_rgpuDeviceInfo: return "rgpu.DeviceInfo";
    case FN_rgpuMemcpyHtoD: return "rgpu.MemcpyHtoD";
    case FN_rgpuMemcpyDtoH: return "rgpu.MemcpyDtoH";
    case FN_rgpuFunctionParams: return "rgpu.FunctionParams";
    case FN_rgpuLaunch: return "rgpu.Launch";
    case FN_rgpuModuleLoad: return "rgpu.ModuleLoad";
    case FN_rgpuLibraryLoad: return "rgpu.LibraryLoad";
    case FN_rgpuCtxCreate: return "rgpu.CtxCreate";
    case FN_rgpuMemcpy2D: return "rgpu.Memcpy2D";
    case FN_rgpuImagePart: return "rgpu.ImagePart";
    case FN_rgpuLinkCreate: return "rgpu.LinkCreate";
    case FN_rgpuLinkAdd: return "rgpu.LinkAdd";
    case FN_rgpuLinkComplete: return "rgpu.LinkComplete";
    case FN_rgpuLinkDestroy: return "rgpu.LinkDestroy";
    case FN_rgpuTensorMap: return "rgpu.TensorMap";
    case FN_rgpuLaunchHostFunction: return "rgpu.LaunchHostFunction";
    case FN_rgpuHostFunctionPoll: return "rgpu.HostFunctionPoll";
    case FN_rgpuGraphAddHostNode: return "rgpu.GraphAddHostNode";
    default: return nullptr;
  }
}

}  // namespace rgpu::cuda
