// The test double's device memory, and the copies and fills on it. Every range a call touches is
// checked against the live allocations: a bad pointer is an error, never a crash.
#include <sys/mman.h>

#include <algorithm>
#include <memory>
#include <set>

#include <cstdlib>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
// Each device's memory lies in a window of address space reserved for it, well away from where
// the host's allocators put things (the application's host pointers live in another process and
// must not look like device pointers there). Allocations are never given the same address twice,
// and a page without access follows each one.
constexpr uintptr_t kWindowBase = 0x2000'0000'0000;
constexpr uint64_t kWindowSize = 1ull << 40;
constexpr size_t kPage = 4096;

struct Window {
  uintptr_t base = 0;  // 0: not reserved yet
  uintptr_t next = 0;
  uint64_t used = 0;   // bytes of live allocations
};
Window g_windows[kDeviceCount];

struct Allocation {
  size_t bytes;
  size_t mapped;  // whole pages
  CUcontext context;
  CUdevice device;
  CUmodule module;  // the module whose global this is, or nullptr for cuMemAlloc memory
  CUmemoryPool pool = nullptr;  // the pool it was allocated from
  bool mapping = false;         // a VMM mapping: its memory is its allocation handle's, in any context
  bool accessible = true;       // a mapping: its device was given access (cuMemSetAccess)
  bool managed = false;         // cuMemAllocManaged
  // Managed memory's hints, for the whole allocation whatever range they were given for (the
  // double's simplification): what cuMemRangeGetAttribute answers.
  bool read_mostly = false;
  CUdevice preferred = CU_DEVICE_INVALID;
  std::set<CUdevice> accessed_by{};
  CUdevice last_prefetch = CU_DEVICE_INVALID;
};
std::map<uintptr_t, Allocation> g_allocations;  // by base address

Window* window_of(CUdevice device) {
  Window& window = g_windows[device];
  if (window.base == 0) {
    void* hint = reinterpret_cast<void*>(kWindowBase + kWindowSize * static_cast<uint64_t>(device));
    void* reserved = ::mmap(hint, kWindowSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserved == MAP_FAILED) return nullptr;
    window.base = window.next = reinterpret_cast<uintptr_t>(reserved);
  }
  return &window;
}

void unmap(std::map<uintptr_t, Allocation>::iterator it) {
  // Replacing the pages gives their memory back and leaves the range inaccessible.
  ::mmap(reinterpret_cast<void*>(it->first), it->second.mapped, PROT_NONE,
         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (!it->second.mapping) g_windows[it->second.device].used -= it->second.mapped;
  if (it->second.pool != nullptr) pool_memory_freed(it->second.pool, it->second.mapped);
  g_allocations.erase(it);
  publish_memory_use();
}

// Addresses that cuMemAddressReserve hands out: a window of their own, after the devices'.
Window g_reserved;

template <typename Predicate>
void unmap_if(Predicate predicate) {
  for (auto it = g_allocations.begin(); it != g_allocations.end();) {
    auto next = std::next(it);
    if (predicate(it->second)) unmap(it);
    it = next;
  }
}

// The checks every call that works in the current context makes first.
CUresult enter(CUcontext& context, CUstream stream = nullptr) {
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  return check_stream(stream, context);
}

enum class End { Host, Device };

// A copy's end: device memory must lie in one allocation; host memory is the caller's, only
// checked for not being null.
std::byte* locate(CUdeviceptr pointer, End end, size_t bytes) {
  if (end == End::Device) return device_bytes(pointer, bytes);
  return reinterpret_cast<std::byte*>(pointer);
}

// Copies and fills check their ranges when they are issued (a bad one fails the call). The
// synchronous ones first wait for the legacy stream; the stream-ordered ones may be queued behind
// a host function, and then run when the stream reaches them (a range freed meanwhile is a fault).
CUresult copy(std::unique_lock<std::mutex>& lock, CUdeviceptr to, End to_end, CUdeviceptr from, End from_end,
              size_t bytes, CUstream stream, bool ordered) {
  CUcontext context;
  if (CUresult r = enter(context, stream); r != CUDA_SUCCESS) return r;
  if (bytes == 0) return CUDA_SUCCESS;
  if (locate(to, to_end, bytes) == nullptr || locate(from, from_end, bytes) == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (!ordered && unsafe_during_capture(context)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  if (!ordered) finish_stream(lock, context, nullptr);
  auto staged = std::make_shared<std::vector<std::byte>>();
  auto run = [=] {
    std::byte* destination = locate(to, to_end, bytes);
    const std::byte* source = staged->empty() ? locate(from, from_end, bytes) : staged->data();
    if (destination == nullptr || source == nullptr) return CUDA_ERROR_ILLEGAL_ADDRESS;
    std::memmove(destination, source, bytes);
    return CUDA_SUCCESS;
  };
  if (!ordered) return run() == CUDA_SUCCESS ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
  // Captured, the copy reads its source when the graph runs it, at each launch.
  CUDA_MEMCPY3D params{};  // as the node describes it
  params.srcMemoryType = from_end == End::Host ? CU_MEMORYTYPE_HOST : CU_MEMORYTYPE_DEVICE;
  if (from_end == End::Host) params.srcHost = reinterpret_cast<const void*>(from);
  else params.srcDevice = from;
  params.dstMemoryType = to_end == End::Host ? CU_MEMORYTYPE_HOST : CU_MEMORYTYPE_DEVICE;
  if (to_end == End::Host) params.dstHost = reinterpret_cast<void*>(to);
  else params.dstDevice = to;
  params.WidthInBytes = bytes, params.Height = 1, params.Depth = 1;
  if (capture_copy(stream, run, params)) return CUDA_SUCCESS;
  issue(lock, context, stream, run, [&] {
    if (from_end == End::Host) staged->assign(locate(from, from_end, bytes), locate(from, from_end, bytes) + bytes);
  });
  return CUDA_SUCCESS;
}

CUdeviceptr address(const void* host) { return reinterpret_cast<CUdeviceptr>(host); }

// cuMemFree and cuMemFreeAsync: allocations only, not module globals or mappings.
CUresult free_allocation(CUdeviceptr pointer) {
  auto it = g_allocations.find(pointer);
  if (it == g_allocations.end() || it->second.module != nullptr || it->second.mapping) return CUDA_ERROR_INVALID_VALUE;
  unmap(it);
  return CUDA_SUCCESS;
}

template <typename T>
CUresult fill(std::unique_lock<std::mutex>& lock, CUdeviceptr to, T value, size_t count, CUstream stream, bool ordered) {
  CUcontext context;
  if (CUresult r = enter(context, stream); r != CUDA_SUCCESS) return r;
  if (count == 0) return CUDA_SUCCESS;
  if (to % sizeof(T) != 0 || count > SIZE_MAX / sizeof(T)) return CUDA_ERROR_INVALID_VALUE;
  if (device_bytes(to, count * sizeof(T)) == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (!ordered) finish_stream(lock, context, nullptr);
  auto run = [=] {
    auto* destination = reinterpret_cast<T*>(device_bytes(to, count * sizeof(T)));
    if (destination == nullptr) return CUDA_ERROR_ILLEGAL_ADDRESS;
    std::fill_n(destination, count, value);
    return CUDA_SUCCESS;
  };
  if (!ordered) return run() == CUDA_SUCCESS ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
  issue(lock, context, stream, run);
  return CUDA_SUCCESS;
}
}  // namespace

CUresult allocate_device_memory(CUcontext context, size_t bytes, CUmodule module, CUdeviceptr& pointer) {
  const CUdevice device = find_context(context)->device;
  Window* window = window_of(device);
  if (window == nullptr || bytes > kDeviceMemory) return CUDA_ERROR_OUT_OF_MEMORY;
  const size_t mapped = (bytes + kPage - 1) / kPage * kPage;
  // Addresses start over once the window is used up and nothing in it is live (a long fuzzing run).
  if (window->used == 0 && window->next + mapped + kPage > window->base + kWindowSize) window->next = window->base;
  if (window->used + mapped > kDeviceMemory || window->next + mapped + kPage > window->base + kWindowSize)
    return CUDA_ERROR_OUT_OF_MEMORY;
  if (::mprotect(reinterpret_cast<void*>(window->next), mapped, PROT_READ | PROT_WRITE) != 0)
    return CUDA_ERROR_OUT_OF_MEMORY;
  pointer = window->next;
  window->next += mapped + kPage;
  window->used += mapped;
  g_allocations.emplace(pointer, Allocation{bytes, mapped, context, device, module});
  publish_memory_use();
  return CUDA_SUCCESS;
}

bool take_device_memory(CUdevice device, uint64_t bytes) {
  Window* window = window_of(device);
  if (window == nullptr || bytes > kDeviceMemory - window->used) return false;
  window->used += bytes;
  publish_memory_use();
  return true;
}

void give_device_memory(CUdevice device, uint64_t bytes) {
  g_windows[device].used -= std::min(bytes, g_windows[device].used);
  publish_memory_use();
}

uint64_t device_memory_in_use(CUdevice device) {
  return device >= 0 && device < kDeviceCount ? g_windows[device].used : 0;
}

std::byte* device_bytes(CUdeviceptr pointer, size_t bytes, CUcontext context) {
  auto it = g_allocations.upper_bound(pointer);
  if (it == g_allocations.begin()) return nullptr;
  --it;
  const Allocation& allocation = it->second;
  const uintptr_t offset = pointer - it->first;
  if (offset >= allocation.bytes) return nullptr;
  if (allocation.mapping) {
    // Any context may use a mapping its device has access to; a range may run on into the
    // mapping right after it (memory mapped contiguously, chunk after chunk).
    uintptr_t end = 0;
    if (__builtin_add_overflow(pointer, bytes, &end)) return nullptr;
    for (;;) {
      if (!it->second.mapping || !it->second.accessible) return nullptr;
      const uintptr_t stop = it->first + it->second.bytes;
      if (end <= stop) return reinterpret_cast<std::byte*>(pointer);
      auto next = std::next(it);
      if (next == g_allocations.end() || next->first != stop) return nullptr;
      it = next;
    }
  }
  if (bytes > allocation.bytes - offset) return nullptr;
  if (context != nullptr && allocation.context != context) return nullptr;
  return reinterpret_cast<std::byte*>(pointer);
}

CUresult allocate_pool_memory(CUcontext context, size_t bytes, CUmemoryPool pool, CUdeviceptr& pointer) {
  if (CUresult r = allocate_device_memory(context, bytes, nullptr, pointer); r != CUDA_SUCCESS) return r;
  g_allocations.at(pointer).pool = pool;
  return CUDA_SUCCESS;
}

CUdeviceptr reserve_addresses(size_t bytes, size_t alignment) {
  if (g_reserved.base == 0) {
    void* hint = reinterpret_cast<void*>(kWindowBase + kWindowSize * kDeviceCount);
    void* reserved = ::mmap(hint, kWindowSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserved == MAP_FAILED) return 0;
    g_reserved.base = g_reserved.next = reinterpret_cast<uintptr_t>(reserved);
  }
  const uintptr_t at = (g_reserved.next + alignment - 1) / alignment * alignment;
  if (bytes > kWindowSize || at + bytes > g_reserved.base + kWindowSize) return 0;
  g_reserved.next = at + bytes;
  return at;
}

bool map_addresses(CUdeviceptr at, size_t bytes, int fd, size_t offset, CUdevice device) {
  auto after = g_allocations.lower_bound(at);
  if (after != g_allocations.end() && after->first < at + bytes) return false;
  if (after != g_allocations.begin() && std::prev(after)->first + std::prev(after)->second.mapped > at) return false;
  if (::mmap(reinterpret_cast<void*>(at), bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
             static_cast<off_t>(offset)) == MAP_FAILED)
    return false;
  Allocation mapping{bytes, bytes, nullptr, device, nullptr};
  mapping.mapping = true;
  mapping.accessible = false;
  g_allocations.emplace(at, mapping);
  return true;
}

void unmap_addresses(CUdeviceptr at) {
  auto it = g_allocations.find(at);
  if (it != g_allocations.end() && it->second.mapping) unmap(it);
}

void set_mapping_access(CUdeviceptr at, bool accessible) {
  auto it = g_allocations.find(at);
  if (it != g_allocations.end() && it->second.mapping) it->second.accessible = accessible;
}

void release_memory_of(CUcontext context) {
  unmap_if([&](const Allocation& allocation) { return allocation.context == context; });
}

void release_memory_of_module(CUmodule module) {
  unmap_if([&](const Allocation& allocation) { return allocation.module == module; });
}

}  // namespace rgpu::cuda_double

using namespace rgpu::cuda_double;

DOUBLE_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* pointer, size_t bytes) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context); r != CUDA_SUCCESS) return r;
  if (pointer == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  return allocate_device_memory(context, bytes, nullptr, *pointer);
}

// The other ways to allocate device memory give the double's plain allocations: what the server
// counts against max_memory is the same for all of them.
DOUBLE_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr* pointer, size_t* pitch, size_t width, size_t height,
                                          unsigned element_bytes) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context); r != CUDA_SUCCESS) return r;
  if (pointer == nullptr || pitch == nullptr || width == 0 || height == 0 ||
      (element_bytes != 4 && element_bytes != 8 && element_bytes != 16))
    return CUDA_ERROR_INVALID_VALUE;
  *pitch = (width + 511) / 512 * 512;  // rows start at 512-byte boundaries
  return allocate_device_memory(context, *pitch * height, nullptr, *pointer);
}

DOUBLE_EXPORT CUresult cuMemAllocManaged(CUdeviceptr* pointer, size_t bytes, unsigned flags) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context); r != CUDA_SUCCESS) return r;
  if (pointer == nullptr || bytes == 0 || (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST))
    return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = allocate_device_memory(context, bytes, nullptr, *pointer); r != CUDA_SUCCESS) return r;
  g_allocations.at(*pointer).managed = true;
  return CUDA_SUCCESS;
}

// From the current pool of the stream's device (pools.cpp).
DOUBLE_EXPORT CUresult cuMemAllocAsync(CUdeviceptr* pointer, size_t bytes, CUstream stream) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context, stream); r != CUDA_SUCCESS) return r;
  if (pointer == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  return allocate_from_pool(context, current_pool(find_context(context)->device), bytes, *pointer);
}

DOUBLE_EXPORT CUresult cuMemFreeAsync(CUdeviceptr pointer, CUstream stream) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context, stream); r != CUDA_SUCCESS) return r;
  return free_allocation(pointer);
}

// Page-locked host memory is host memory here; allocating and freeing it are unsafe during a capture.
DOUBLE_EXPORT CUresult cuMemHostAlloc(void** pointer, size_t bytes, unsigned flags) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context); r != CUDA_SUCCESS) return r;
  if (pointer == nullptr || bytes == 0 || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  if (unsafe_during_capture(context)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  *pointer = std::malloc(bytes);
  return *pointer ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

DOUBLE_EXPORT CUresult cuMemFreeHost(void* pointer) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (CUcontext context = nullptr; current_context(context) == CUDA_SUCCESS && unsafe_during_capture(context))
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  std::free(pointer);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemFree_v2(CUdeviceptr pointer) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context); r != CUDA_SUCCESS) return r;
  if (unsafe_during_capture(context)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  return free_allocation(pointer);
}

DOUBLE_EXPORT CUresult cuMemGetInfo_v2(size_t* free, size_t* total) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context); r != CUDA_SUCCESS) return r;
  if (free == nullptr || total == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *total = kDeviceMemory;
  *free = kDeviceMemory - g_windows[find_context(context)->device].used;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr to, const void* from, size_t bytes) {
  auto lock = lock_driver();
  return copy(lock, to, End::Device, address(from), End::Host, bytes, nullptr, false);
}
DOUBLE_EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr to, const void* from, size_t bytes, CUstream stream) {
  auto lock = lock_driver();
  return copy(lock, to, End::Device, address(from), End::Host, bytes, stream, true);
}
DOUBLE_EXPORT CUresult cuMemcpyDtoH_v2(void* to, CUdeviceptr from, size_t bytes) {
  auto lock = lock_driver();
  return copy(lock, address(to), End::Host, from, End::Device, bytes, nullptr, false);
}
DOUBLE_EXPORT CUresult cuMemcpyDtoHAsync_v2(void* to, CUdeviceptr from, size_t bytes, CUstream stream) {
  auto lock = lock_driver();
  return copy(lock, address(to), End::Host, from, End::Device, bytes, stream, true);
}
DOUBLE_EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr to, CUdeviceptr from, size_t bytes) {
  auto lock = lock_driver();
  return copy(lock, to, End::Device, from, End::Device, bytes, nullptr, false);
}
DOUBLE_EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr to, CUdeviceptr from, size_t bytes, CUstream stream) {
  auto lock = lock_driver();
  return copy(lock, to, End::Device, from, End::Device, bytes, stream, true);
}

namespace {
// One end of a rectangle or box copy: where its row y of slice z starts, `bytes` long, or nullptr
// outside the memory it names.
struct BoxEnd {
  uint32_t type;
  const void* host;
  CUdeviceptr device;
  CUarray array;
  size_t x, y, z, pitch, height;

  std::byte* row(size_t dy, size_t dz, size_t bytes) const {
    const size_t offset = ((z + dz) * height + y + dy) * pitch + x;
    switch (type) {
      case CU_MEMORYTYPE_HOST: return const_cast<std::byte*>(static_cast<const std::byte*>(host)) + offset;
      case CU_MEMORYTYPE_DEVICE: return device_bytes(device + offset, bytes);
      case CU_MEMORYTYPE_ARRAY: return array_bytes(array, x, y + dy, z + dz, bytes);
      default: return nullptr;
    }
  }
};

uint32_t type_of(CUmemorytype type) {
  uint32_t value;
  std::memcpy(&value, &type, sizeof value);
  return value;
}
}  // namespace

// Rectangles and boxes, row by row, between host memory, device memory and arrays.
CUresult copy_box(std::unique_lock<std::mutex>& lock, const CUDA_MEMCPY3D& box, CUstream stream, bool ordered) {
  const BoxEnd from{type_of(box.srcMemoryType), box.srcHost, box.srcDevice, box.srcArray, box.srcXInBytes, box.srcY,
                    box.srcZ, box.srcPitch, box.srcHeight};
  const BoxEnd to{type_of(box.dstMemoryType), box.dstHost, box.dstDevice, box.dstArray, box.dstXInBytes, box.dstY,
                  box.dstZ, box.dstPitch, box.dstHeight};
  for (const BoxEnd* end : {&from, &to}) {
    if (end->type != CU_MEMORYTYPE_HOST && end->type != CU_MEMORYTYPE_DEVICE && end->type != CU_MEMORYTYPE_ARRAY)
      return CUDA_ERROR_NOT_SUPPORTED;
    if (end->type != CU_MEMORYTYPE_ARRAY && box.WidthInBytes > end->pitch) return CUDA_ERROR_INVALID_VALUE;
  }
  CUcontext context;
  if (CUresult r = enter(context, stream); r != CUDA_SUCCESS) return r;
  // Nothing to copy, however many rows (a run of 2^58 empty rows is not a copy to walk through).
  if (box.WidthInBytes == 0 || box.Height == 0 || box.Depth == 0) return CUDA_SUCCESS;
  // Every row is checked before the first is copied. The rows of host memory are read when the
  // copy runs: the server waits for such a copy before its rows go.
  auto rows = [=](bool copy) {
    for (size_t z = 0; z < box.Depth; ++z)
      for (size_t y = 0; y < box.Height; ++y) {
        std::byte* destination = to.row(y, z, box.WidthInBytes);
        const std::byte* source = from.row(y, z, box.WidthInBytes);
        if (destination == nullptr || source == nullptr) return CUDA_ERROR_INVALID_VALUE;
        if (copy) std::memmove(destination, source, box.WidthInBytes);
      }
    return CUDA_SUCCESS;
  };
  if (CUresult r = rows(false); r != CUDA_SUCCESS) return r;
  if (!ordered) {
    finish_stream(lock, context, nullptr);
    return rows(true);
  }
  issue(lock, context, stream, [rows] { return rows(true) == CUDA_SUCCESS ? CUDA_SUCCESS : CUDA_ERROR_ILLEGAL_ADDRESS; });
  return CUDA_SUCCESS;
}

CUDA_MEMCPY3D box_of(const CUDA_MEMCPY2D& rectangle) {
  CUDA_MEMCPY3D box{};
  box.srcXInBytes = rectangle.srcXInBytes;
  box.srcY = rectangle.srcY;
  box.srcMemoryType = rectangle.srcMemoryType;
  box.srcHost = rectangle.srcHost;
  box.srcDevice = rectangle.srcDevice;
  box.srcArray = rectangle.srcArray;
  box.srcPitch = rectangle.srcPitch;
  box.dstXInBytes = rectangle.dstXInBytes;
  box.dstY = rectangle.dstY;
  box.dstMemoryType = rectangle.dstMemoryType;
  box.dstHost = rectangle.dstHost;
  box.dstDevice = rectangle.dstDevice;
  box.dstArray = rectangle.dstArray;
  box.dstPitch = rectangle.dstPitch;
  box.WidthInBytes = rectangle.WidthInBytes;
  box.Height = rectangle.Height;
  box.Depth = 1;
  return box;
}

DOUBLE_EXPORT CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D* rectangle) {
  auto lock = lock_driver();
  return rectangle ? copy_box(lock, box_of(*rectangle), nullptr, false) : CUDA_ERROR_INVALID_VALUE;
}
DOUBLE_EXPORT CUresult cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D* rectangle) {
  auto lock = lock_driver();
  return rectangle ? copy_box(lock, box_of(*rectangle), nullptr, false) : CUDA_ERROR_INVALID_VALUE;
}
DOUBLE_EXPORT CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D* rectangle, CUstream stream) {
  auto lock = lock_driver();
  return rectangle ? copy_box(lock, box_of(*rectangle), stream, true) : CUDA_ERROR_INVALID_VALUE;
}
DOUBLE_EXPORT CUresult cuMemcpy3D_v2(const CUDA_MEMCPY3D* box) {
  auto lock = lock_driver();
  return box ? copy_box(lock, *box, nullptr, false) : CUDA_ERROR_INVALID_VALUE;
}
DOUBLE_EXPORT CUresult cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D* box, CUstream stream) {
  auto lock = lock_driver();
  return box ? copy_box(lock, *box, stream, true) : CUDA_ERROR_INVALID_VALUE;
}

DOUBLE_EXPORT CUresult cuMemsetD8_v2(CUdeviceptr to, unsigned char value, size_t count) {
  auto lock = lock_driver();
  return fill(lock, to, value, count, nullptr, false);
}
DOUBLE_EXPORT CUresult cuMemsetD8Async(CUdeviceptr to, unsigned char value, size_t count, CUstream stream) {
  auto lock = lock_driver();
  return fill(lock, to, value, count, stream, true);
}
DOUBLE_EXPORT CUresult cuMemsetD16_v2(CUdeviceptr to, unsigned short value, size_t count) {
  auto lock = lock_driver();
  return fill(lock, to, value, count, nullptr, false);
}
DOUBLE_EXPORT CUresult cuMemsetD16Async(CUdeviceptr to, unsigned short value, size_t count, CUstream stream) {
  auto lock = lock_driver();
  return fill(lock, to, value, count, stream, true);
}
DOUBLE_EXPORT CUresult cuMemsetD32_v2(CUdeviceptr to, unsigned int value, size_t count) {
  auto lock = lock_driver();
  return fill(lock, to, value, count, nullptr, false);
}
DOUBLE_EXPORT CUresult cuMemsetD32Async(CUdeviceptr to, unsigned int value, size_t count, CUstream stream) {
  auto lock = lock_driver();
  return fill(lock, to, value, count, stream, true);
}

// Tensor maps: the double's own encoding of what the map describes (the real one is the driver's
// secret): [0] data type | rank << 8 | interleave << 16 | swizzle << 24, [1] address,
// [2..6] dims, [7..11] box sizes.
DOUBLE_EXPORT CUresult cuTensorMapEncodeTiled(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank,
                                              void* address, const cuuint64_t* dims, const cuuint64_t* strides,
                                              const cuuint32_t* box, const cuuint32_t* element_strides,
                                              CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
                                              CUtensorMapL2promotion, CUtensorMapFloatOOBfill) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (map == nullptr || rank < 1 || rank > 5 || dims == nullptr || box == nullptr || element_strides == nullptr ||
      (rank > 1 && strides == nullptr) || reinterpret_cast<uintptr_t>(address) % 16 != 0)
    return CUDA_ERROR_INVALID_VALUE;
  *map = CUtensorMap{};
  map->opaque[0] = type | rank << 8 | static_cast<uint64_t>(interleave) << 16 | static_cast<uint64_t>(swizzle) << 24;
  map->opaque[1] = reinterpret_cast<uintptr_t>(address);
  for (cuuint32_t i = 0; i < rank; ++i) {
    map->opaque[2 + i] = dims[i];
    map->opaque[7 + i] = box[i];
  }
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuTensorMapReplaceAddress(CUtensorMap* map, void* address) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (map == nullptr || reinterpret_cast<uintptr_t>(address) % 16 != 0) return CUDA_ERROR_INVALID_VALUE;
  map->opaque[1] = reinterpret_cast<uintptr_t>(address);
  return CUDA_SUCCESS;
}

// The managed allocation that holds `pointer`, if any.
static Allocation* managed_at(CUdeviceptr pointer) {
  auto it = g_allocations.upper_bound(pointer);
  if (it == g_allocations.begin()) return nullptr;
  --it;
  if (!it->second.managed || pointer - it->first >= it->second.bytes) return nullptr;
  return &it->second;
}

// Prefetches and advice are hints for where pages live; the double has one place for memory, so it
// checks the range and the target as the driver does.
static CUresult check_hint(CUdeviceptr pointer, size_t bytes, CUdevice device) {
  if (bytes == 0 || device_bytes(pointer, bytes) == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return device == CU_DEVICE_CPU || (device >= 0 && device < kDeviceCount) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

DOUBLE_EXPORT CUresult cuMemPrefetchAsync(CUdeviceptr pointer, size_t bytes, CUdevice device, CUstream stream) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context, stream); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_hint(pointer, bytes, device); r != CUDA_SUCCESS) return r;
  if (Allocation* managed = managed_at(pointer)) managed->last_prefetch = device;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemAdvise(CUdeviceptr pointer, size_t bytes, CUmem_advise advice, CUdevice device) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context); r != CUDA_SUCCESS) return r;
  if (advice < CU_MEM_ADVISE_SET_READ_MOSTLY || advice > CU_MEM_ADVISE_UNSET_ACCESSED_BY) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_hint(pointer, bytes, device); r != CUDA_SUCCESS) return r;
  Allocation* managed = managed_at(pointer);
  if (managed == nullptr) return CUDA_SUCCESS;
  switch (advice) {
    case CU_MEM_ADVISE_SET_READ_MOSTLY: managed->read_mostly = true; break;
    case CU_MEM_ADVISE_UNSET_READ_MOSTLY: managed->read_mostly = false; break;
    case CU_MEM_ADVISE_SET_PREFERRED_LOCATION: managed->preferred = device; break;
    case CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION: managed->preferred = CU_DEVICE_INVALID; break;
    case CU_MEM_ADVISE_SET_ACCESSED_BY: managed->accessed_by.insert(device); break;
    case CU_MEM_ADVISE_UNSET_ACCESSED_BY: managed->accessed_by.erase(device); break;
  }
  return CUDA_SUCCESS;
}

// Managed memory only; every attribute is one or more 32-bit values.
DOUBLE_EXPORT CUresult cuMemRangeGetAttribute(void* data, size_t size, CUmem_range_attribute attribute,
                                              CUdeviceptr pointer, size_t count) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context); r != CUDA_SUCCESS) return r;
  const Allocation* managed = managed_at(pointer);
  if (data == nullptr || count == 0 || managed == nullptr || device_bytes(pointer, count) == nullptr)
    return CUDA_ERROR_INVALID_VALUE;
  auto* out = static_cast<int*>(data);
  auto location_type = [](CUdevice device) {
    return device == CU_DEVICE_INVALID ? CU_MEM_LOCATION_TYPE_INVALID
           : device == CU_DEVICE_CPU   ? CU_MEM_LOCATION_TYPE_HOST
                                       : CU_MEM_LOCATION_TYPE_DEVICE;
  };
  if (attribute == CU_MEM_RANGE_ATTRIBUTE_ACCESSED_BY) {
    if (size == 0 || size % 4 != 0) return CUDA_ERROR_INVALID_VALUE;
    size_t i = 0;
    for (CUdevice device : managed->accessed_by)
      if (i < size / 4) out[i++] = device;
    for (; i < size / 4; ++i) out[i] = CU_DEVICE_INVALID;
    return CUDA_SUCCESS;
  }
  if (size != 4) return CUDA_ERROR_INVALID_VALUE;
  switch (attribute) {
    case CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY: *out = managed->read_mostly ? 1 : 0; return CUDA_SUCCESS;
    case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION: *out = managed->preferred; return CUDA_SUCCESS;
    case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION: *out = managed->last_prefetch; return CUDA_SUCCESS;
    case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_TYPE: *out = location_type(managed->preferred); return CUDA_SUCCESS;
    case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_ID: *out = std::max(managed->preferred, 0); return CUDA_SUCCESS;
    case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_TYPE: *out = location_type(managed->last_prefetch); return CUDA_SUCCESS;
    case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_ID: *out = std::max(managed->last_prefetch, 0); return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
  }
}
