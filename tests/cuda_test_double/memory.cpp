// The test double's device memory, and the copies and fills on it. Every range a call touches is
// checked against the live allocations: a bad pointer is an error, never a crash.
#include <sys/mman.h>

#include <algorithm>

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
  g_windows[it->second.device].used -= it->second.mapped;
  g_allocations.erase(it);
  publish_memory_use();
}

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

CUresult copy(CUdeviceptr to, End to_end, CUdeviceptr from, End from_end, size_t bytes, CUstream stream) {
  CUcontext context;
  if (CUresult r = enter(context, stream); r != CUDA_SUCCESS) return r;
  if (bytes == 0) return CUDA_SUCCESS;
  std::byte* destination = locate(to, to_end, bytes);
  const std::byte* source = locate(from, from_end, bytes);
  if (destination == nullptr || source == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::memmove(destination, source, bytes);
  return CUDA_SUCCESS;
}

CUdeviceptr address(const void* host) { return reinterpret_cast<CUdeviceptr>(host); }

template <typename T>
CUresult fill(CUdeviceptr to, T value, size_t count, CUstream stream) {
  CUcontext context;
  if (CUresult r = enter(context, stream); r != CUDA_SUCCESS) return r;
  if (count == 0) return CUDA_SUCCESS;
  if (to % sizeof(T) != 0 || count > SIZE_MAX / sizeof(T)) return CUDA_ERROR_INVALID_VALUE;
  auto* destination = reinterpret_cast<T*>(device_bytes(to, count * sizeof(T)));
  if (destination == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::fill_n(destination, count, value);
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

uint64_t device_memory_in_use(CUdevice device) {
  return device >= 0 && device < kDeviceCount ? g_windows[device].used : 0;
}

std::byte* device_bytes(CUdeviceptr pointer, size_t bytes, CUcontext context) {
  auto it = g_allocations.upper_bound(pointer);
  if (it == g_allocations.begin()) return nullptr;
  --it;
  const Allocation& allocation = it->second;
  const uintptr_t offset = pointer - it->first;
  if (offset >= allocation.bytes || bytes > allocation.bytes - offset) return nullptr;
  if (context != nullptr && allocation.context != context) return nullptr;
  return reinterpret_cast<std::byte*>(pointer);
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
  return allocate_device_memory(context, bytes, nullptr, *pointer);
}

DOUBLE_EXPORT CUresult cuMemAllocAsync(CUdeviceptr* pointer, size_t bytes, CUstream stream) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context, stream); r != CUDA_SUCCESS) return r;
  if (pointer == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  return allocate_device_memory(context, bytes, nullptr, *pointer);
}

DOUBLE_EXPORT CUresult cuMemFreeAsync(CUdeviceptr pointer, CUstream stream) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context, stream); r != CUDA_SUCCESS) return r;
  auto it = g_allocations.find(pointer);
  if (it == g_allocations.end() || it->second.module != nullptr) return CUDA_ERROR_INVALID_VALUE;
  unmap(it);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMemFree_v2(CUdeviceptr pointer) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = enter(context); r != CUDA_SUCCESS) return r;
  auto it = g_allocations.find(pointer);
  if (it == g_allocations.end() || it->second.module != nullptr) return CUDA_ERROR_INVALID_VALUE;
  unmap(it);
  return CUDA_SUCCESS;
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

// Copies and fills run when they are issued, so the stream-ordered ones are the others plus a
// check of the stream.

DOUBLE_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr to, const void* from, size_t bytes) {
  auto lock = lock_driver();
  return copy(to, End::Device, address(from), End::Host, bytes, nullptr);
}
DOUBLE_EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr to, const void* from, size_t bytes, CUstream stream) {
  auto lock = lock_driver();
  return copy(to, End::Device, address(from), End::Host, bytes, stream);
}
DOUBLE_EXPORT CUresult cuMemcpyDtoH_v2(void* to, CUdeviceptr from, size_t bytes) {
  auto lock = lock_driver();
  return copy(address(to), End::Host, from, End::Device, bytes, nullptr);
}
DOUBLE_EXPORT CUresult cuMemcpyDtoHAsync_v2(void* to, CUdeviceptr from, size_t bytes, CUstream stream) {
  auto lock = lock_driver();
  return copy(address(to), End::Host, from, End::Device, bytes, stream);
}
DOUBLE_EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr to, CUdeviceptr from, size_t bytes) {
  auto lock = lock_driver();
  return copy(to, End::Device, from, End::Device, bytes, nullptr);
}
DOUBLE_EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr to, CUdeviceptr from, size_t bytes, CUstream stream) {
  auto lock = lock_driver();
  return copy(to, End::Device, from, End::Device, bytes, stream);
}

// Rectangles and boxes of linear memory, row by row (arrays are not part of the double).
CUresult copy_box(const CUDA_MEMCPY3D& box, CUstream stream) {
  auto end_of = [](CUmemorytype type, End& end) {
    if (type == CU_MEMORYTYPE_HOST) end = End::Host;
    else if (type == CU_MEMORYTYPE_DEVICE) end = End::Device;
    else return false;
    return true;
  };
  End from_end, to_end;
  if (!end_of(box.srcMemoryType, from_end) || !end_of(box.dstMemoryType, to_end)) return CUDA_ERROR_NOT_SUPPORTED;
  const CUdeviceptr from = from_end == End::Host ? address(box.srcHost) : box.srcDevice;
  const CUdeviceptr to = to_end == End::Host ? address(box.dstHost) : box.dstDevice;
  if (box.WidthInBytes > box.srcPitch || box.WidthInBytes > box.dstPitch) return CUDA_ERROR_INVALID_VALUE;
  // Nothing to copy, however many rows (a run of 2^58 empty rows is not a copy to walk through).
  if (box.WidthInBytes == 0 || box.Height == 0 || box.Depth == 0) return CUDA_SUCCESS;
  for (size_t z = 0; z < box.Depth; ++z)
    for (size_t y = 0; y < box.Height; ++y) {
      const CUdeviceptr src = from + ((box.srcZ + z) * box.srcHeight + box.srcY + y) * box.srcPitch + box.srcXInBytes;
      const CUdeviceptr dst = to + ((box.dstZ + z) * box.dstHeight + box.dstY + y) * box.dstPitch + box.dstXInBytes;
      if (CUresult r = copy(dst, to_end, src, from_end, box.WidthInBytes, stream); r != CUDA_SUCCESS) return r;
    }
  return CUDA_SUCCESS;
}

CUDA_MEMCPY3D box_of(const CUDA_MEMCPY2D& rectangle) {
  CUDA_MEMCPY3D box{};
  box.srcXInBytes = rectangle.srcXInBytes;
  box.srcY = rectangle.srcY;
  box.srcMemoryType = rectangle.srcMemoryType;
  box.srcHost = rectangle.srcHost;
  box.srcDevice = rectangle.srcDevice;
  box.srcPitch = rectangle.srcPitch;
  box.dstXInBytes = rectangle.dstXInBytes;
  box.dstY = rectangle.dstY;
  box.dstMemoryType = rectangle.dstMemoryType;
  box.dstHost = rectangle.dstHost;
  box.dstDevice = rectangle.dstDevice;
  box.dstPitch = rectangle.dstPitch;
  box.WidthInBytes = rectangle.WidthInBytes;
  box.Height = rectangle.Height;
  box.Depth = 1;
  return box;
}

DOUBLE_EXPORT CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D* rectangle) {
  auto lock = lock_driver();
  return rectangle ? copy_box(box_of(*rectangle), nullptr) : CUDA_ERROR_INVALID_VALUE;
}
DOUBLE_EXPORT CUresult cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D* rectangle) {
  auto lock = lock_driver();
  return rectangle ? copy_box(box_of(*rectangle), nullptr) : CUDA_ERROR_INVALID_VALUE;
}
DOUBLE_EXPORT CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D* rectangle, CUstream stream) {
  auto lock = lock_driver();
  return rectangle ? copy_box(box_of(*rectangle), stream) : CUDA_ERROR_INVALID_VALUE;
}
DOUBLE_EXPORT CUresult cuMemcpy3D_v2(const CUDA_MEMCPY3D* box) {
  auto lock = lock_driver();
  return box ? copy_box(*box, nullptr) : CUDA_ERROR_INVALID_VALUE;
}
DOUBLE_EXPORT CUresult cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D* box, CUstream stream) {
  auto lock = lock_driver();
  return box ? copy_box(*box, stream) : CUDA_ERROR_INVALID_VALUE;
}

DOUBLE_EXPORT CUresult cuMemsetD8_v2(CUdeviceptr to, unsigned char value, size_t count) {
  auto lock = lock_driver();
  return fill(to, value, count, nullptr);
}
DOUBLE_EXPORT CUresult cuMemsetD8Async(CUdeviceptr to, unsigned char value, size_t count, CUstream stream) {
  auto lock = lock_driver();
  return fill(to, value, count, stream);
}
DOUBLE_EXPORT CUresult cuMemsetD16_v2(CUdeviceptr to, unsigned short value, size_t count) {
  auto lock = lock_driver();
  return fill(to, value, count, nullptr);
}
DOUBLE_EXPORT CUresult cuMemsetD16Async(CUdeviceptr to, unsigned short value, size_t count, CUstream stream) {
  auto lock = lock_driver();
  return fill(to, value, count, stream);
}
DOUBLE_EXPORT CUresult cuMemsetD32_v2(CUdeviceptr to, unsigned int value, size_t count) {
  auto lock = lock_driver();
  return fill(to, value, count, nullptr);
}
DOUBLE_EXPORT CUresult cuMemsetD32Async(CUdeviceptr to, unsigned int value, size_t count, CUstream stream) {
  auto lock = lock_driver();
  return fill(to, value, count, stream);
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
