// The test double's CUDA arrays: 1D, 2D, 3D, layered and cubemap arrays and mipmapped arrays,
// each its descriptor and its elements in host memory, row after row and slice after slice; and
// the linear copies into and out of them (cuMemcpyHtoA and the others).
#include <sys/mman.h>

#include <algorithm>
#include <memory>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
constexpr size_t kMaxArrayBytes = size_t{1} << 30;  // the double keeps arrays in host memory
constexpr unsigned kKnownFlags = CUDA_ARRAY3D_LAYERED | CUDA_ARRAY3D_SURFACE_LDST | CUDA_ARRAY3D_CUBEMAP;

// Anonymous memory: pages are taken only when written, so that a large array costs nothing until used.
struct Storage {
  std::byte* bytes = nullptr;
  size_t size = 0;
  explicit Storage(size_t n) : size(n) {
    void* memory = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    bytes = memory == MAP_FAILED ? nullptr : static_cast<std::byte*>(memory);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (bytes) ::munmap(bytes, size);
  }
};

struct Array {
  CUDA_ARRAY3D_DESCRIPTOR descriptor;
  CUcontext context;
  CUdevice device;
  size_t row_bytes, rows, slices;
  std::shared_ptr<Storage> storage;
  CUmipmappedArray owner = nullptr;  // the mipmapped array whose level this is
};
struct Mipmap {
  CUcontext context;
  std::vector<CUarray> levels;
};
Registry<CUarray, Array> g_arrays;
Registry<CUmipmappedArray, Mipmap> g_mipmaps;

bool checked_product(size_t a, size_t b, size_t& out) { return !__builtin_mul_overflow(a, b, &out); }

// Checks a descriptor as the driver does (formats the double stores, 1, 2 or 4 channels, the
// shape rules of layered and cubemap arrays) and makes the array.
CUresult create(const CUDA_ARRAY3D_DESCRIPTOR& d, CUmipmappedArray owner, CUarray& handle) {
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  uint32_t format;
  std::memcpy(&format, &d.Format, sizeof format);
  const size_t element = format_bytes(format);
  if (element == 0 || (d.NumChannels != 1 && d.NumChannels != 2 && d.NumChannels != 4) || d.Width == 0 ||
      (d.Flags & ~kKnownFlags) != 0)
    return CUDA_ERROR_INVALID_VALUE;
  if ((d.Flags & CUDA_ARRAY3D_CUBEMAP) &&
      (d.Width != d.Height || (d.Flags & CUDA_ARRAY3D_LAYERED ? d.Depth % 6 : d.Depth - 6) != 0))
    return CUDA_ERROR_INVALID_VALUE;
  if ((d.Flags & CUDA_ARRAY3D_LAYERED) && d.Depth == 0) return CUDA_ERROR_INVALID_VALUE;
  if (d.Height == 0 && d.Depth != 0) return CUDA_ERROR_INVALID_VALUE;
  Array array{d, context, 0, 0, std::max<size_t>(d.Height, 1), std::max<size_t>(d.Depth, 1), nullptr, owner};
  size_t total = 0;
  if (!checked_product(d.Width, element * d.NumChannels, array.row_bytes) ||
      !checked_product(array.row_bytes, array.rows, total) || !checked_product(total, array.slices, total) ||
      total > kMaxArrayBytes)
    return CUDA_ERROR_OUT_OF_MEMORY;
  array.device = find_context(context)->device;
  if (!take_device_memory(array.device, total)) return CUDA_ERROR_OUT_OF_MEMORY;
  array.storage = std::make_shared<Storage>(total);
  if (array.storage->bytes == nullptr) {
    give_device_memory(array.device, total);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  handle = g_arrays.add(std::move(array));
  return CUDA_SUCCESS;
}

void destroy(CUarray handle) {
  Array* array = g_arrays.find(handle);
  give_device_memory(array->device, array->storage->size);
  g_arrays.remove(handle);
}

void destroy_mipmap(CUmipmappedArray handle) {
  for (CUarray level : g_mipmaps.find(handle)->levels) destroy(level);
  g_mipmaps.remove(handle);
}

CUDA_ARRAY3D_DESCRIPTOR widen(const CUDA_ARRAY_DESCRIPTOR& d) {
  CUDA_ARRAY3D_DESCRIPTOR wide{};
  wide.Width = d.Width;
  wide.Height = d.Height;
  wide.Format = d.Format;
  wide.NumChannels = d.NumChannels;
  return wide;
}

// A linear range of the array's bytes (the 1D view cuMemcpyHtoA and the others copy).
std::byte* linear(CUarray handle, size_t offset, size_t bytes) {
  const Array* array = g_arrays.find(handle);
  if (array == nullptr || offset > array->storage->size || bytes > array->storage->size - offset) return nullptr;
  return array->storage->bytes + offset;
}

CUresult copy_linear(std::byte* to, const std::byte* from, size_t bytes, CUstream stream) {
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_stream(stream, context); r != CUDA_SUCCESS) return r;
  if (bytes == 0) return CUDA_SUCCESS;
  if (to == nullptr || from == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::memmove(to, from, bytes);
  return CUDA_SUCCESS;
}
}  // namespace

size_t format_bytes(uint32_t format) {
  switch (format) {
    case CU_AD_FORMAT_UNSIGNED_INT8:
    case CU_AD_FORMAT_SIGNED_INT8: return 1;
    case CU_AD_FORMAT_UNSIGNED_INT16:
    case CU_AD_FORMAT_SIGNED_INT16:
    case CU_AD_FORMAT_HALF: return 2;
    case CU_AD_FORMAT_UNSIGNED_INT32:
    case CU_AD_FORMAT_SIGNED_INT32:
    case CU_AD_FORMAT_FLOAT: return 4;
    default: return 0;
  }
}

std::byte* array_bytes(CUarray handle, size_t x_bytes, size_t y, size_t z, size_t bytes, CUcontext context) {
  const Array* array = g_arrays.find(handle);
  if (array == nullptr || (context != nullptr && array->context != context)) return nullptr;
  if (y >= array->rows || z >= array->slices || x_bytes > array->row_bytes || bytes > array->row_bytes - x_bytes)
    return nullptr;
  return array->storage->bytes + (z * array->rows + y) * array->row_bytes + x_bytes;
}

bool array_descriptor(CUarray handle, CUDA_ARRAY3D_DESCRIPTOR& descriptor) {
  const Array* array = g_arrays.find(handle);
  if (array == nullptr) return false;
  descriptor = array->descriptor;
  return true;
}

bool mipmapped_array_exists(CUmipmappedArray mipmap) { return g_mipmaps.find(mipmap) != nullptr; }

void release_arrays_of(CUcontext context) {
  for (CUmipmappedArray handle : g_mipmaps.handles_if([&](const Mipmap& m) { return m.context == context; }))
    destroy_mipmap(handle);
  for (CUarray handle : g_arrays.handles_if([&](const Array& a) { return a.context == context; })) destroy(handle);
}

}  // namespace rgpu::cuda_double

using namespace rgpu::cuda_double;

DOUBLE_EXPORT CUresult cuArrayCreate_v2(CUarray* handle, const CUDA_ARRAY_DESCRIPTOR* descriptor) {
  auto lock = lock_driver();
  if (handle == nullptr || descriptor == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return create(widen(*descriptor), nullptr, *handle);
}

DOUBLE_EXPORT CUresult cuArray3DCreate_v2(CUarray* handle, const CUDA_ARRAY3D_DESCRIPTOR* descriptor) {
  auto lock = lock_driver();
  if (handle == nullptr || descriptor == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return create(*descriptor, nullptr, *handle);
}

DOUBLE_EXPORT CUresult cuArrayGetDescriptor_v2(CUDA_ARRAY_DESCRIPTOR* descriptor, CUarray handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (descriptor == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Array* array = g_arrays.find(handle);
  if (array == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  descriptor->Width = array->descriptor.Width;
  descriptor->Height = array->descriptor.Height;
  descriptor->Format = array->descriptor.Format;
  descriptor->NumChannels = array->descriptor.NumChannels;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuArray3DGetDescriptor_v2(CUDA_ARRAY3D_DESCRIPTOR* descriptor, CUarray handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (descriptor == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return array_descriptor(handle, *descriptor) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

DOUBLE_EXPORT CUresult cuArrayDestroy(CUarray handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const Array* array = g_arrays.find(handle);
  if (array == nullptr || array->owner != nullptr) return CUDA_ERROR_INVALID_HANDLE;  // levels go with their mipmap
  destroy(handle);
  return CUDA_SUCCESS;
}

// Each level halves every dimension but the layers (at least 1 element).
DOUBLE_EXPORT CUresult cuMipmappedArrayCreate(CUmipmappedArray* handle, const CUDA_ARRAY3D_DESCRIPTOR* descriptor,
                                              unsigned int levels) {
  auto lock = lock_driver();
  if (handle == nullptr || descriptor == nullptr || levels == 0 || levels > 32) return CUDA_ERROR_INVALID_VALUE;
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  const bool layered = descriptor->Flags & (CUDA_ARRAY3D_LAYERED | CUDA_ARRAY3D_CUBEMAP);
  const size_t largest = std::max({descriptor->Width, descriptor->Height, layered ? 0 : descriptor->Depth});
  if (largest >> (levels - 1) == 0) return CUDA_ERROR_INVALID_VALUE;  // more levels than halvings
  *handle = g_mipmaps.add(Mipmap{context, {}});
  for (unsigned level = 0; level < levels; ++level) {
    CUDA_ARRAY3D_DESCRIPTOR d = *descriptor;
    auto halve = [level](size_t n) { return n == 0 ? 0 : std::max<size_t>(1, n >> level); };
    d.Width = halve(d.Width);
    d.Height = halve(d.Height);
    if (!layered) d.Depth = halve(d.Depth);
    CUarray array = nullptr;
    if (CUresult r = create(d, *handle, array); r != CUDA_SUCCESS) {
      destroy_mipmap(*handle);
      return r;
    }
    g_mipmaps.find(*handle)->levels.push_back(array);
  }
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMipmappedArrayGetLevel(CUarray* level, CUmipmappedArray handle, unsigned int index) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const Mipmap* mipmap = g_mipmaps.find(handle);
  if (mipmap == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (level == nullptr || index >= mipmap->levels.size()) return CUDA_ERROR_INVALID_VALUE;
  *level = mipmap->levels[index];
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuMipmappedArrayDestroy(CUmipmappedArray handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (g_mipmaps.find(handle) == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  destroy_mipmap(handle);
  return CUDA_SUCCESS;
}

// Linear copies: the array's bytes from `offset` on, as one row after another.
DOUBLE_EXPORT CUresult cuMemcpyHtoA_v2(CUarray to, size_t offset, const void* from, size_t bytes) {
  auto lock = lock_driver();
  return copy_linear(linear(to, offset, bytes), static_cast<const std::byte*>(from), bytes, nullptr);
}
DOUBLE_EXPORT CUresult cuMemcpyHtoAAsync_v2(CUarray to, size_t offset, const void* from, size_t bytes, CUstream stream) {
  auto lock = lock_driver();
  return copy_linear(linear(to, offset, bytes), static_cast<const std::byte*>(from), bytes, stream);
}
DOUBLE_EXPORT CUresult cuMemcpyAtoH_v2(void* to, CUarray from, size_t offset, size_t bytes) {
  auto lock = lock_driver();
  return copy_linear(static_cast<std::byte*>(to), linear(from, offset, bytes), bytes, nullptr);
}
DOUBLE_EXPORT CUresult cuMemcpyAtoHAsync_v2(void* to, CUarray from, size_t offset, size_t bytes, CUstream stream) {
  auto lock = lock_driver();
  return copy_linear(static_cast<std::byte*>(to), linear(from, offset, bytes), bytes, stream);
}
DOUBLE_EXPORT CUresult cuMemcpyAtoD_v2(CUdeviceptr to, CUarray from, size_t offset, size_t bytes) {
  auto lock = lock_driver();
  return copy_linear(device_bytes(to, bytes), linear(from, offset, bytes), bytes, nullptr);
}
DOUBLE_EXPORT CUresult cuMemcpyDtoA_v2(CUarray to, size_t offset, CUdeviceptr from, size_t bytes) {
  auto lock = lock_driver();
  return copy_linear(linear(to, offset, bytes), device_bytes(from, bytes), bytes, nullptr);
}
DOUBLE_EXPORT CUresult cuMemcpyAtoA_v2(CUarray to, size_t to_offset, CUarray from, size_t from_offset, size_t bytes) {
  auto lock = lock_driver();
  return copy_linear(linear(to, to_offset, bytes), linear(from, from_offset, bytes), bytes, nullptr);
}
