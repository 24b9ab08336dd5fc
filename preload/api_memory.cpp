// Host memory (local to this process) and copies between host and device: small copies travel
// inline, large ones in ring-sized chunks so that sending one chunk overlaps filling the next.
#include <sys/mman.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "api_state.hpp"
#include "captured_host_copies.hpp"
#include "cuda_client.hpp"
#include "daemon_link.hpp"
#include "log.hpp"
#include "parallel_copy.hpp"
#include "shared_memory.hpp"

namespace rgpu::cuda {

namespace {
// Copies from this size on go through the ring (the daemon sends them from there, the server
// receives them into pinned staging memory); smaller ones travel inside their call.
constexpr size_t kRingCopyMin = 64 * 1024;
// Device-to-host chunks: at least this large (the daemon sends requests for answers this large
// over its bulk lanes) and a multiple of kChunkAlign.
constexpr size_t kMinReadChunk = 256 * 1024;
constexpr size_t kChunkAlign = 64 * 1024;

struct HostAllocation {
  size_t bytes;
  unsigned int flags;
  bool registered;  // cuMemHostRegister'ed application memory (not ours to free)
  bool mapped = false;  // the host copy of a device allocation (shared_memory.hpp)
};
std::mutex g_host_mutex;
std::map<uintptr_t, HostAllocation>& host_allocations() {
  static auto* value = new std::map<uintptr_t, HostAllocation>;  // never destroyed: see api_state.hpp
  return *value;
}

bool find_host(const void* pointer, uintptr_t& base, HostAllocation& allocation) {
  std::lock_guard lock(g_host_mutex);
  auto it = host_allocations().upper_bound(reinterpret_cast<uintptr_t>(pointer));
  if (it == host_allocations().begin()) return false;
  --it;
  if (reinterpret_cast<uintptr_t>(pointer) >= it->first + it->second.bytes) return false;
  base = it->first;
  allocation = it->second;
  return true;
}

// The ring is cut into slots of about kCopyChunkSize; a chunk leaves room for an answer's header.
struct RingSlots {
  size_t count, size, chunk;
};
RingSlots ring_slots(DaemonLink& link) {
  const size_t count = std::max<size_t>(2, link.ring().size() / kCopyChunkSize);
  const size_t size = link.ring().size() / count;
  return {count, size, size - 4096};
}

bool inside_one_allocation(CUdeviceptr pointer, size_t bytes) {
  DeviceRange range;
  return find_device_range(pointer, range) && bytes <= range.base + range.bytes - pointer;
}

}  // namespace

// Host to device. Once the data has left the application's buffer the copy need not be waited
// for (the driver, too, returns once pageable data is staged): a copy into memory known to be
// allocated goes without a round trip, and a failure surfaces at the next call that waits. A copy
// anywhere else waits, so that a bad address fails the call itself.
CUresult copy_to_device(uint32_t variant, CUdeviceptr dst, const void* src, size_t bytes, CUstream stream) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (bytes == 0) return CUDA_SUCCESS;
  if (src == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const auto* from = static_cast<const uint8_t*>(src);
  const bool wait = !inside_one_allocation(dst, bytes);
  const bool capturing = capture_under_way();
  if (bytes < kRingCopyMin) {
    if (capturing) note_possible_captured_copy(HostFunctionKind::ReadFromHost, reinterpret_cast<uint64_t>(from), bytes);
    CallBuilder call(FN_rgpuMemcpyHtoD);
    call.writer().put(variant).put<uint64_t>(dst).put<uint64_t>(reinterpret_cast<uint64_t>(stream));
    call.writer().put<uint64_t>(reinterpret_cast<uint64_t>(from));
    call.writer().bytes(from, bytes);
    return wait ? exchange(call, nullptr, nullptr) : send_pipelined(call, nullptr);
  }
  DaemonLink* link = DaemonLink::for_this_thread();
  if (link == nullptr) return kLinkLost;
  const RingSlots slots = ring_slots(*link);
  size_t done = 0;
  while (done < bytes) {
    const size_t n = std::min(slots.chunk, bytes - done);
    const uint64_t offset = link->next_upload_slot(slots.count) * slots.size;
    if (CUresult r = link->wait_released(offset); r != CUDA_SUCCESS) return r;
    parallel_copy(link->ring().data() + offset, from + done, n);
    CallBuilder call(FN_rgpuMemcpyHtoD);
    call.writer().put(variant).put<uint64_t>(dst + done).put<uint64_t>(reinterpret_cast<uint64_t>(stream));
    call.writer().put<uint64_t>(reinterpret_cast<uint64_t>(from + done));
    if (capturing) note_possible_captured_copy(HostFunctionKind::ReadFromHost, reinterpret_cast<uint64_t>(from + done), n);
    RingSpec spec{offset, n, 0, 0};
    const bool last = done + n == bytes;
    if (last && wait) return exchange(call, nullptr, &spec);
    if (CUresult r = send_pipelined(call, &spec); r != CUDA_SUCCESS) return r;
    link->mark_in_flight(offset);
    done += n;
  }
  return CUDA_SUCCESS;
}

CUresult copy_from_device(uint32_t variant, void* dst, CUdeviceptr src, size_t bytes, CUstream stream) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (bytes == 0) return CUDA_SUCCESS;
  if (dst == nullptr) return CUDA_ERROR_INVALID_VALUE;
  auto* to = static_cast<uint8_t*>(dst);
  const bool capturing = capture_under_way();
  auto request = [&](size_t at, size_t n) {
    if (capturing) note_possible_captured_copy(HostFunctionKind::WriteToHost, reinterpret_cast<uint64_t>(to + at), n);
    CallBuilder call(FN_rgpuMemcpyDtoH);
    call.writer().put(variant).put<uint64_t>(src + at).put<uint64_t>(n).put<uint64_t>(reinterpret_cast<uint64_t>(stream));
    call.writer().put<uint64_t>(reinterpret_cast<uint64_t>(to + at));
    return call;
  };
  auto take = [&](size_t at, size_t n) {
    return [to, at, n](WireReader& reader) {
      // No bytes: the stream captures, and the graph writes them at each launch.
      if (reader.remaining() == 0) return;
      auto data = reader.bytes(n);
      parallel_copy(to + at, data.data(), n);
    };
  };
  if (bytes < kRingCopyMin) {
    CallBuilder call = request(0, bytes);
    return exchange(call, take(0, bytes), nullptr);
  }
  DaemonLink* link = DaemonLink::for_this_thread();
  if (link == nullptr) return kLinkLost;
  const RingSlots slots = ring_slots(*link);
  // Several chunks in flight: the server copies one while others travel (over several
  // connections) and are taken out. A copy of a few MiB is cut into as many chunks as may be in
  // flight, so that it too crosses the connections in parallel.
  const size_t in_flight = slots.count / 2;
  const size_t chunk = std::clamp((bytes / in_flight + kChunkAlign - 1) / kChunkAlign * kChunkAlign,
                                  kMinReadChunk, slots.chunk);
  struct Pending {
    uint64_t id;
    size_t at, n;
  };
  std::vector<Pending> pending;
  CUresult first_error = CUDA_SUCCESS;
  size_t issued = 0;
  size_t slot = 0;
  auto issue = [&]() -> CUresult {
    const size_t n = std::min(chunk, bytes - issued);
    CallBuilder call = request(issued, n);
    RingSpec spec{0, 0, slot * slots.size, n + sizeof(ReplyHeader) + 64};
    slot = (slot + 1) % in_flight;
    uint64_t id = 0;
    if (CUresult r = send_call(call, &spec, id); r != CUDA_SUCCESS) return r;
    pending.push_back({id, issued, n});
    issued += n;
    return CUDA_SUCCESS;
  };
  for (size_t i = 0; i < in_flight && issued < bytes; ++i)
    if (CUresult r = issue(); r != CUDA_SUCCESS) return r;
  while (!pending.empty()) {
    Pending p = pending.front();
    pending.erase(pending.begin());
    std::vector<uint8_t> storage;
    std::span<const uint8_t> answer;
    // A refused chunk still lets the others in flight come back (they land in the ring, which
    // the next copy uses) before the copy returns; only a lost link ends it at once.
    CUresult r = link->wait(p.id, storage, answer);
    if (link->is_broken()) return kLinkLost;
    if (r == CUDA_SUCCESS) r = finish_reply(answer, take(p.at, p.n));
    if (r != CUDA_SUCCESS && first_error == CUDA_SUCCESS) first_error = r;
    if (issued < bytes && first_error == CUDA_SUCCESS) {
      if (CUresult e = issue(); e != CUDA_SUCCESS) return e;
    }
  }
  return first_error;
}

namespace {
bool is_device_pointer(CUdeviceptr pointer) {
  DeviceRange range;
  return find_device_range(pointer, range);
}

CUresult copy_any(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream, bool async, bool per_thread) {
  if (CUresult r = before_device_work(); r != CUDA_SUCCESS) return r;
  const bool dst_device = is_device_pointer(dst), src_device = is_device_pointer(src);
  if (dst_device && src_device) {
    if (async) return per_thread ? cuMemcpyDtoDAsync_v2_ptsz(dst, src, bytes, stream) : cuMemcpyDtoDAsync_v2(dst, src, bytes, stream);
    return per_thread ? cuMemcpyDtoD_v2_ptds(dst, src, bytes) : cuMemcpyDtoD_v2(dst, src, bytes);
  }
  if (dst_device) {
    uint32_t variant = async ? (per_thread ? FN_cuMemcpyHtoDAsync_v2_ptsz : FN_cuMemcpyHtoDAsync_v2)
                             : (per_thread ? FN_cuMemcpyHtoD_v2_ptds : FN_cuMemcpyHtoD_v2);
    return copy_to_device(variant, dst, reinterpret_cast<const void*>(src), bytes, stream);
  }
  if (src_device) {
    uint32_t variant = async ? (per_thread ? FN_cuMemcpyDtoHAsync_v2_ptsz : FN_cuMemcpyDtoHAsync_v2)
                             : (per_thread ? FN_cuMemcpyDtoH_v2_ptds : FN_cuMemcpyDtoH_v2);
    const CUresult result = copy_from_device(variant, reinterpret_cast<void*>(dst), src, bytes, stream);
    return result == CUDA_SUCCESS && !async ? after_synchronisation(false) : result;
  }
  // Host to host: the driver copies too (after ordering on the stream, which a local copy is).
  if (async && stream != nullptr)
    if (CUresult r = per_thread ? cuStreamSynchronize_ptsz(stream) : cuStreamSynchronize(stream); r != CUDA_SUCCESS)
      return r;
  std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), bytes);
  return CUDA_SUCCESS;
}
}  // namespace

}  // namespace rgpu::cuda

using namespace rgpu::cuda;
using rgpu::WireReader;

// The application's copies: device work for managed and mapped memory (shared_memory.hpp), and a
// synchronous copy from the device is a synchronisation.
static CUresult app_copy_to_device(uint32_t variant, CUdeviceptr dst, const void* src, size_t bytes, CUstream stream) {
  if (CUresult r = before_device_work(); r != CUDA_SUCCESS) return r;
  return copy_to_device(variant, dst, src, bytes, stream);
}
static CUresult app_copy_from_device(uint32_t variant, void* dst, CUdeviceptr src, size_t bytes, CUstream stream) {
  if (CUresult r = before_device_work(); r != CUDA_SUCCESS) return r;
  const CUresult result = copy_from_device(variant, dst, src, bytes, stream);
  const bool synchronous = variant == FN_cuMemcpyDtoH_v2 || variant == FN_cuMemcpyDtoH_v2_ptds;
  return result == CUDA_SUCCESS && synchronous ? after_synchronisation(false) : result;
}

RGPU_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t bytes) {
  return app_copy_to_device(FN_cuMemcpyHtoD_v2, dst, src, bytes, nullptr);
}
RGPU_EXPORT CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dst, const void* src, size_t bytes) {
  return app_copy_to_device(FN_cuMemcpyHtoD_v2_ptds, dst, src, bytes, nullptr);
}
RGPU_EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes, CUstream stream) {
  return app_copy_to_device(FN_cuMemcpyHtoDAsync_v2, dst, src, bytes, stream);
}
RGPU_EXPORT CUresult cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dst, const void* src, size_t bytes, CUstream stream) {
  return app_copy_to_device(FN_cuMemcpyHtoDAsync_v2_ptsz, dst, src, bytes, stream);
}
RGPU_EXPORT CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t bytes) {
  return app_copy_from_device(FN_cuMemcpyDtoH_v2, dst, src, bytes, nullptr);
}
RGPU_EXPORT CUresult cuMemcpyDtoH_v2_ptds(void* dst, CUdeviceptr src, size_t bytes) {
  return app_copy_from_device(FN_cuMemcpyDtoH_v2_ptds, dst, src, bytes, nullptr);
}
RGPU_EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes, CUstream stream) {
  return app_copy_from_device(FN_cuMemcpyDtoHAsync_v2, dst, src, bytes, stream);
}
RGPU_EXPORT CUresult cuMemcpyDtoHAsync_v2_ptsz(void* dst, CUdeviceptr src, size_t bytes, CUstream stream) {
  return app_copy_from_device(FN_cuMemcpyDtoHAsync_v2_ptsz, dst, src, bytes, stream);
}
// The pre-3.2 entry points with 32-bit sizes.
RGPU_EXPORT CUresult cuMemcpyHtoD(CUdeviceptr_v1 dst, const void* src, unsigned int bytes) {
  return cuMemcpyHtoD_v2(dst, src, bytes);
}
RGPU_EXPORT CUresult cuMemcpyDtoH(void* dst, CUdeviceptr_v1 src, unsigned int bytes) {
  return cuMemcpyDtoH_v2(dst, src, bytes);
}
RGPU_EXPORT CUresult cuMemcpyHtoDAsync(CUdeviceptr_v1 dst, const void* src, unsigned int bytes, CUstream stream) {
  return cuMemcpyHtoDAsync_v2(dst, src, bytes, stream);
}
RGPU_EXPORT CUresult cuMemcpyDtoHAsync(void* dst, CUdeviceptr_v1 src, unsigned int bytes, CUstream stream) {
  return cuMemcpyDtoHAsync_v2(dst, src, bytes, stream);
}

RGPU_EXPORT CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  return copy_any(dst, src, bytes, nullptr, false, false);
}
RGPU_EXPORT CUresult cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  return copy_any(dst, src, bytes, nullptr, false, true);
}
RGPU_EXPORT CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream) {
  return copy_any(dst, src, bytes, stream, true, false);
}
RGPU_EXPORT CUresult cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream) {
  return copy_any(dst, src, bytes, stream, true, true);
}

// ---- host memory: this process's own, page-locked where the system allows it -----------------

static CUresult host_alloc(void** pointer, size_t bytes, unsigned int flags) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (pointer == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  if (flags & ~(CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED))
    return CUDA_ERROR_INVALID_VALUE;
  if (flags & CU_MEMHOSTALLOC_DEVICEMAP) {  // kernels use it too: a device allocation with a host copy
    CUdeviceptr shared = 0;
    if (CUresult r = allocate_shared(&shared, bytes, SharedKind::MappedHost, flags); r != CUDA_SUCCESS) return r;
    std::lock_guard lock(g_host_mutex);
    host_allocations()[shared] = {bytes, flags, false, true};
    *pointer = reinterpret_cast<void*>(shared);
    return CUDA_SUCCESS;
  }
  void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  ::mlock(memory, bytes);  // best effort, as page-locked memory is meant to be; copies work either way
  std::lock_guard lock(g_host_mutex);
  host_allocations()[reinterpret_cast<uintptr_t>(memory)] = {bytes, flags, false};
  *pointer = memory;
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuMemHostAlloc(void** pointer, size_t bytes, unsigned int flags) {
  return host_alloc(pointer, bytes, flags);
}
RGPU_EXPORT CUresult cuMemAllocHost_v2(void** pointer, size_t bytes) { return host_alloc(pointer, bytes, 0); }
RGPU_EXPORT CUresult cuMemAllocHost(void** pointer, unsigned int bytes) { return host_alloc(pointer, bytes, 0); }

RGPU_EXPORT CUresult cuMemFreeHost(void* pointer) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  HostAllocation allocation;
  {
    std::lock_guard lock(g_host_mutex);
    auto it = host_allocations().find(reinterpret_cast<uintptr_t>(pointer));
    if (it == host_allocations().end() || it->second.registered) return CUDA_ERROR_INVALID_VALUE;
    allocation = it->second;
    host_allocations().erase(it);
  }
  if (allocation.mapped) return cuMemFree_v2(reinterpret_cast<CUdeviceptr>(pointer));
  ::munmap(pointer, allocation.bytes);
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuMemHostRegister_v2(void* pointer, size_t bytes, unsigned int flags) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (pointer == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  if (flags & CU_MEMHOSTREGISTER_IOMEMORY)
    return not_supported("cuMemHostRegister with CU_MEMHOSTREGISTER_IOMEMORY (a remote GPU cannot reach this host's devices)");
  {
    std::lock_guard lock(g_host_mutex);
    if (host_allocations().count(reinterpret_cast<uintptr_t>(pointer))) return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
  }
  const bool mapped = flags & CU_MEMHOSTREGISTER_DEVICEMAP;
  if (mapped) {  // kernels use it too: a device allocation kept in step with this memory
    CUdeviceptr device = 0;
    if (CUresult r = register_shared(pointer, bytes, flags, &device); r != CUDA_SUCCESS) return r;
  }
  std::lock_guard lock(g_host_mutex);
  host_allocations()[reinterpret_cast<uintptr_t>(pointer)] = HostAllocation{bytes, flags, true, mapped};
  return CUDA_SUCCESS;
}
RGPU_EXPORT CUresult cuMemHostRegister(void* pointer, size_t bytes, unsigned int flags) {
  return cuMemHostRegister_v2(pointer, bytes, flags);
}

RGPU_EXPORT CUresult cuMemHostUnregister(void* pointer) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  std::lock_guard lock(g_host_mutex);
  auto it = host_allocations().find(reinterpret_cast<uintptr_t>(pointer));
  if (it == host_allocations().end() || !it->second.registered) return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
  const bool mapped = it->second.mapped;
  host_allocations().erase(it);
  SharedAllocation shared;
  if (mapped && find_shared_host(reinterpret_cast<uint64_t>(pointer), shared)) return cuMemFree_v2(shared.base);
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuMemHostGetFlags(unsigned int* flags, void* pointer) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (flags == nullptr) return CUDA_ERROR_INVALID_VALUE;
  uintptr_t base;
  HostAllocation allocation;
  if (!find_host(pointer, base, allocation)) return CUDA_ERROR_INVALID_VALUE;
  *flags = allocation.flags;
  return CUDA_SUCCESS;
}

// Mapped host memory from cuMemHostAlloc has one address for the host and the device, as under
// unified addressing; registered memory has a device address of its own.
RGPU_EXPORT CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr* device_pointer, void* pointer, unsigned int flags) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (device_pointer == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  SharedAllocation shared;
  const uint64_t host = reinterpret_cast<uint64_t>(pointer);
  if (!find_shared_host(host, shared) || shared.kind == SharedKind::Managed)
    return CUDA_ERROR_INVALID_VALUE;  // not mapped (the driver's answer for such host memory)
  *device_pointer = shared.base + (host - shared.host);
  return CUDA_SUCCESS;
}
RGPU_EXPORT CUresult cuMemHostGetDevicePointer(CUdeviceptr_v1* device_pointer, void* pointer, unsigned int flags) {
  CUdeviceptr wide = 0;
  const CUresult r = cuMemHostGetDevicePointer_v2(device_pointer ? &wide : nullptr, pointer, flags);
  if (r == CUDA_SUCCESS) *device_pointer = static_cast<CUdeviceptr_v1>(wide);
  return r;
}

// ---- pointer attributes ---------------------------------------------------------------------

// Managed and mapped host memory: one address for the host and the device.
static CUresult shared_attribute(void* data, CUpointer_attribute attribute, CUdeviceptr pointer,
                                 const SharedAllocation& shared, const DeviceRange& range, CUdevice ordinal) {
  const bool managed = shared.kind == SharedKind::Managed;
  switch (attribute) {
    case CU_POINTER_ATTRIBUTE_CONTEXT: *static_cast<CUcontext*>(data) = range.context; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
      *static_cast<unsigned*>(data) = managed ? CU_MEMORYTYPE_DEVICE : CU_MEMORYTYPE_HOST;
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER: *static_cast<CUdeviceptr*>(data) = pointer; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_HOST_POINTER: *static_cast<void**>(data) = reinterpret_cast<void*>(pointer); return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: *static_cast<int*>(data) = ordinal; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: *static_cast<CUdeviceptr*>(data) = shared.base; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE: *static_cast<size_t*>(data) = shared.bytes; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_BUFFER_ID: *static_cast<unsigned long long*>(data) = shared.base; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_MANAGED: *static_cast<int*>(data) = managed ? 1 : 0; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MAPPED: *static_cast<int*>(data) = 1; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS: *static_cast<int*>(data) = 1; return CUDA_SUCCESS;
    default: return CUDA_ERROR_NOT_SUPPORTED;
  }
}

static CUresult pointer_attribute(void* data, CUpointer_attribute attribute, CUdeviceptr pointer, bool lenient) {
  DeviceRange range;
  uintptr_t host_base = 0;
  HostAllocation host{};
  const bool device = find_device_range(pointer, range);
  const bool host_known = !device && find_host(reinterpret_cast<void*>(pointer), host_base, host);
  if (!device && !host_known) {
    if (!lenient) return CUDA_ERROR_INVALID_VALUE;
    // cuPointerGetAttributes: an unknown pointer gets the "not a CUDA pointer" defaults.
    switch (attribute) {
      case CU_POINTER_ATTRIBUTE_CONTEXT: *static_cast<CUcontext*>(data) = nullptr; return CUDA_SUCCESS;
      case CU_POINTER_ATTRIBUTE_MEMORY_TYPE: *static_cast<unsigned*>(data) = 0; return CUDA_SUCCESS;
      case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
      case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: *static_cast<CUdeviceptr*>(data) = 0; return CUDA_SUCCESS;
      case CU_POINTER_ATTRIBUTE_HOST_POINTER: *static_cast<void**>(data) = nullptr; return CUDA_SUCCESS;
      case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: *static_cast<int*>(data) = -2; return CUDA_SUCCESS;
      case CU_POINTER_ATTRIBUTE_RANGE_SIZE: *static_cast<size_t*>(data) = 0; return CUDA_SUCCESS;
      case CU_POINTER_ATTRIBUTE_BUFFER_ID: *static_cast<unsigned long long*>(data) = 0; return CUDA_SUCCESS;
      case CU_POINTER_ATTRIBUTE_IS_MANAGED:
      case CU_POINTER_ATTRIBUTE_MAPPED:
      case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS:
      case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE: *static_cast<int*>(data) = 0; return CUDA_SUCCESS;
      default: return CUDA_ERROR_INVALID_VALUE;
    }
  }
  CUdevice ordinal = 0;
  if (device) context_device(range.context, ordinal);
  SharedAllocation shared;
  if (device && find_shared(pointer, shared)) return shared_attribute(data, attribute, pointer, shared, range, ordinal);
  switch (attribute) {
    case CU_POINTER_ATTRIBUTE_CONTEXT:
      *static_cast<CUcontext*>(data) = device ? range.context : nullptr;
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
      *static_cast<unsigned*>(data) = device ? CU_MEMORYTYPE_DEVICE : CU_MEMORYTYPE_HOST;
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
      if (!device) {  // registered host memory has a device address when mapped
        CUdeviceptr mapped = 0;
        if (cuMemHostGetDevicePointer_v2(&mapped, reinterpret_cast<void*>(pointer), 0) != CUDA_SUCCESS)
          return CUDA_ERROR_INVALID_VALUE;
        *static_cast<CUdeviceptr*>(data) = mapped;
        return CUDA_SUCCESS;
      }
      *static_cast<CUdeviceptr*>(data) = pointer;
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_HOST_POINTER:
      if (device) return CUDA_ERROR_INVALID_VALUE;
      *static_cast<void**>(data) = reinterpret_cast<void*>(pointer);
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: *static_cast<int*>(data) = device ? ordinal : 0; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
      *static_cast<CUdeviceptr*>(data) = device ? range.base : host_base;
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE: *static_cast<size_t*>(data) = device ? range.bytes : host.bytes; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_BUFFER_ID:
      *static_cast<unsigned long long*>(data) = device ? range.base : host_base;
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_MANAGED: *static_cast<int*>(data) = 0; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MAPPED: *static_cast<int*>(data) = device || host.mapped ? 1 : 0; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS: *static_cast<int*>(data) = 1; return CUDA_SUCCESS;
    default: return CUDA_ERROR_NOT_SUPPORTED;
  }
}

RGPU_EXPORT CUresult cuPointerGetAttribute(void* data, CUpointer_attribute attribute, CUdeviceptr pointer) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (data == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return pointer_attribute(data, attribute, pointer, false);
}

RGPU_EXPORT CUresult cuPointerGetAttributes(unsigned int count, CUpointer_attribute* attributes, void** data,
                                            CUdeviceptr pointer) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (attributes == nullptr || data == nullptr) return CUDA_ERROR_INVALID_VALUE;
  for (unsigned int i = 0; i < count; ++i) {
    if (data[i] == nullptr) continue;
    if (CUresult r = pointer_attribute(data[i], attributes[i], pointer, true); r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}
