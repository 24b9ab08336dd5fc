// cuMemcpy2D/3D and the linear array copies (cuMemcpyHtoA, cuMemcpyAtoH): copies of rectangles
// and boxes. Between device memory and arrays the server copies alone; where the application's
// host memory takes part, its rows travel packed (without the pitch gaps) in chunks of whole
// rows, and the server copies them with its own pitch.
#include <algorithm>
#include <cstring>
#include <functional>
#include <vector>

#include "api_state.hpp"
#include "cuda_client.hpp"
#include "cuda_formats.hpp"

namespace rgpu::cuda {

namespace {
constexpr size_t kRowChunkBytes = 4u << 20;

enum class Side { Host, Device, Array };

// Unified addresses are device memory when they fall in an allocation we know, else host memory.
Side side_of(CUmemorytype type, CUdeviceptr unified) {
  switch (type) {
    case CU_MEMORYTYPE_HOST: return Side::Host;
    case CU_MEMORYTYPE_ARRAY: return Side::Array;
    case CU_MEMORYTYPE_DEVICE: return Side::Device;
    default: {
      DeviceRange range;
      return find_device_range(unified, range) ? Side::Device : Side::Host;
    }
  }
}

// Rewrites unified addressing as what it resolved to, so that the server sees only device,
// array or (its own) host memory.
void resolve_unified(CUmemorytype& type, CUdeviceptr& device, const void*& host, Side side) {
  if (type != CU_MEMORYTYPE_UNIFIED) return;
  if (side == Side::Device) {
    type = CU_MEMORYTYPE_DEVICE;
  } else {
    type = CU_MEMORYTYPE_HOST;
    host = reinterpret_cast<const void*>(device);
  }
}

CUresult send_copy(CopyFunction function, CUstream stream, uint8_t mode, const void* descriptor, size_t descriptor_size,
                   std::span<const uint8_t> rows, uint8_t* into, size_t into_size) {
  CallBuilder call(FN_rgpuMemcpy2D);
  call.writer().put(static_cast<uint32_t>(function)).put<uint64_t>(reinterpret_cast<uint64_t>(stream)).put(mode);
  call.writer().put<uint8_t>(descriptor_size == sizeof(CUDA_MEMCPY3D) ? 3 : 2).bytes(descriptor, descriptor_size);
  if (!rows.empty()) call.writer().bytes(rows.data(), rows.size());
  if (into == nullptr) return exchange(call, nullptr, nullptr);
  return exchange(call, [into, into_size](WireReader& reader) {
    auto data = reader.bytes(into_size);
    std::memcpy(into, data.data(), into_size);
  }, nullptr);
}

// Rows wider than a chunk: each is a linear copy of its own (through the ring, in chunks).
CUresult copy_wide_rows(const CUDA_MEMCPY2D& copy, Side src, Side dst, CUstream stream) {
  if (src == Side::Array || dst == Side::Array) return CUDA_ERROR_INVALID_VALUE;  // wider than any array
  for (size_t y = 0; y < copy.Height; ++y) {
    CUresult r;
    if (src == Side::Host) {
      const auto* from = static_cast<const uint8_t*>(copy.srcHost) + (copy.srcY + y) * copy.srcPitch + copy.srcXInBytes;
      const CUdeviceptr to = copy.dstDevice + (copy.dstY + y) * copy.dstPitch + copy.dstXInBytes;
      r = stream ? cuMemcpyHtoDAsync_v2(to, from, copy.WidthInBytes, stream) : cuMemcpyHtoD_v2(to, from, copy.WidthInBytes);
    } else {
      auto* to = static_cast<uint8_t*>(copy.dstHost) + (copy.dstY + y) * copy.dstPitch + copy.dstXInBytes;
      const CUdeviceptr from = copy.srcDevice + (copy.srcY + y) * copy.srcPitch + copy.srcXInBytes;
      r = stream ? cuMemcpyDtoHAsync_v2(to, from, copy.WidthInBytes, stream) : cuMemcpyDtoH_v2(to, from, copy.WidthInBytes);
    }
    if (r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}

// Rows of the application's host memory to or from the server, packed, in chunks of whole rows:
// `part(first, rows)` is the descriptor of one chunk (2D or 3D), its host side packed.
template <typename Rows, typename Part>
CUresult in_row_chunks(bool from_host, size_t height, size_t width, Rows src_row, Rows dst_row, Part part,
                       CopyFunction function, CUstream stream) {
  const size_t rows_per_chunk = std::max<size_t>(1, kRowChunkBytes / width);
  std::vector<uint8_t> packed;
  for (size_t y0 = 0; y0 < height; y0 += rows_per_chunk) {
    const size_t rows = std::min(rows_per_chunk, height - y0);
    const auto descriptor = part(y0, rows);
    packed.resize(rows * width);
    CUresult r;
    if (from_host) {
      for (size_t y = 0; y < rows; ++y) std::memcpy(packed.data() + y * width, src_row(y0 + y), width);
      r = send_copy(function, stream, kCopyFromHost, &descriptor, sizeof descriptor, packed, nullptr, 0);
    } else {
      r = send_copy(function, stream, kCopyToHost, &descriptor, sizeof descriptor, {}, packed.data(), packed.size());
      if (r == CUDA_SUCCESS)
        for (size_t y = 0; y < rows; ++y) std::memcpy(dst_row(y0 + y), packed.data() + y * width, width);
    }
    if (r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}

CUresult copy_2d(CopyFunction function, CUDA_MEMCPY2D copy, CUstream stream) {
  if (CUresult r = before_device_work(); r != CUDA_SUCCESS) return r;
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (copy.WidthInBytes == 0 || copy.Height == 0) return CUDA_SUCCESS;
  const Side src = side_of(copy.srcMemoryType, copy.srcDevice);
  const Side dst = side_of(copy.dstMemoryType, copy.dstDevice);
  resolve_unified(copy.srcMemoryType, copy.srcDevice, copy.srcHost, src);
  const void* dst_host = copy.dstHost;
  resolve_unified(copy.dstMemoryType, copy.dstDevice, dst_host, dst);
  copy.dstHost = const_cast<void*>(dst_host);
  const size_t width = copy.WidthInBytes;
  const std::function<uint8_t*(size_t)> src_row = [&](size_t y) {
    return const_cast<uint8_t*>(static_cast<const uint8_t*>(copy.srcHost)) + (copy.srcY + y) * copy.srcPitch +
           copy.srcXInBytes;
  };
  const std::function<uint8_t*(size_t)> dst_row = [&](size_t y) {
    return static_cast<uint8_t*>(copy.dstHost) + (copy.dstY + y) * copy.dstPitch + copy.dstXInBytes;
  };
  if (src == Side::Host && dst == Side::Host) {
    for (size_t y = 0; y < copy.Height; ++y) std::memmove(dst_row(y), src_row(y), width);
    return CUDA_SUCCESS;
  }
  if (src != Side::Host && dst != Side::Host) return send_copy(function, stream, kCopyOnServer, &copy, sizeof copy, {}, nullptr, 0);
  if (width > kRowChunkBytes) return copy_wide_rows(copy, src, dst, stream);

  return in_row_chunks(src == Side::Host, copy.Height, width, src_row, dst_row, [&](size_t y0, size_t rows) {
    CUDA_MEMCPY2D part = copy;
    part.Height = rows;
    if (src == Side::Host) {
      part.srcHost = nullptr;  // the server points it at the packed rows
      part.srcXInBytes = part.srcY = 0;
      part.srcPitch = width;
      part.dstY = copy.dstY + y0;
    } else {
      part.dstHost = nullptr;  // the server packs the rows into its answer
      part.dstXInBytes = part.dstY = 0;
      part.dstPitch = width;
      part.srcY = copy.srcY + y0;
    }
    return part;
  }, function, stream);
}

// Between host memory and an array (3D, layered or cubemap): each slice in chunks of whole rows,
// boxes one slice deep, the host side's rows packed. An array's rows are at most 2 MiB wide.
CUresult copy_3d_with_array(CopyFunction function, const CUDA_MEMCPY3D& copy, bool from_host, CUstream stream) {
  const size_t width = copy.WidthInBytes;
  if (width > kRowChunkBytes) return CUDA_ERROR_INVALID_VALUE;  // wider than any array
  for (size_t z = 0; z < copy.Depth; ++z) {
    const std::function<uint8_t*(size_t)> src_row = [&](size_t y) {
      return const_cast<uint8_t*>(static_cast<const uint8_t*>(copy.srcHost)) +
             ((copy.srcZ + z) * copy.srcHeight + copy.srcY + y) * copy.srcPitch + copy.srcXInBytes;
    };
    const std::function<uint8_t*(size_t)> dst_row = [&](size_t y) {
      return static_cast<uint8_t*>(copy.dstHost) + ((copy.dstZ + z) * copy.dstHeight + copy.dstY + y) * copy.dstPitch +
             copy.dstXInBytes;
    };
    const CUresult r = in_row_chunks(from_host, copy.Height, width, src_row, dst_row, [&](size_t y0, size_t rows) {
      CUDA_MEMCPY3D part = copy;
      part.Height = rows;
      part.Depth = 1;
      if (from_host) {
        part.srcHost = nullptr;  // the server points it at the packed rows
        part.srcXInBytes = part.srcY = part.srcZ = part.srcLOD = 0;
        part.srcPitch = width;
        part.srcHeight = rows;
        part.dstY = copy.dstY + y0;
        part.dstZ = copy.dstZ + z;
      } else {
        part.dstHost = nullptr;  // the server packs the rows into its answer
        part.dstXInBytes = part.dstY = part.dstZ = part.dstLOD = 0;
        part.dstPitch = width;
        part.dstHeight = rows;
        part.srcY = copy.srcY + y0;
        part.srcZ = copy.srcZ + z;
      }
      return part;
    }, function, stream);
    if (r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}

// A box: on the server when no host memory takes part, else slice by slice as rectangles (the
// host side's slices are srcPitch * srcHeight bytes apart), or with an array as boxes of a slice.
CUresult copy_3d(CopyFunction function_3d, CopyFunction function_2d, CUDA_MEMCPY3D copy, CUstream stream) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (copy.WidthInBytes == 0 || copy.Height == 0 || copy.Depth == 0) return CUDA_SUCCESS;
  const Side src = side_of(copy.srcMemoryType, copy.srcDevice);
  const Side dst = side_of(copy.dstMemoryType, copy.dstDevice);
  resolve_unified(copy.srcMemoryType, copy.srcDevice, copy.srcHost, src);
  const void* dst_host = copy.dstHost;
  resolve_unified(copy.dstMemoryType, copy.dstDevice, dst_host, dst);
  copy.dstHost = const_cast<void*>(dst_host);
  if (src != Side::Host && dst != Side::Host) return send_copy(function_3d, stream, kCopyOnServer, &copy, sizeof copy, {}, nullptr, 0);
  if (src == Side::Array || dst == Side::Array) return copy_3d_with_array(function_3d, copy, src == Side::Host, stream);
  for (size_t z = 0; z < copy.Depth; ++z) {
    const size_t src_slice = (copy.srcZ + z) * copy.srcPitch * copy.srcHeight;
    const size_t dst_slice = (copy.dstZ + z) * copy.dstPitch * copy.dstHeight;
    CUDA_MEMCPY2D plane{};
    plane.srcXInBytes = copy.srcXInBytes;
    plane.srcY = copy.srcY;
    plane.srcMemoryType = copy.srcMemoryType;
    plane.srcHost = src == Side::Host ? static_cast<const uint8_t*>(copy.srcHost) + src_slice : nullptr;
    plane.srcDevice = src == Side::Device ? copy.srcDevice + src_slice : 0;
    plane.srcPitch = copy.srcPitch;
    plane.dstXInBytes = copy.dstXInBytes;
    plane.dstY = copy.dstY;
    plane.dstMemoryType = copy.dstMemoryType;
    plane.dstHost = dst == Side::Host ? static_cast<uint8_t*>(copy.dstHost) + dst_slice : nullptr;
    plane.dstDevice = dst == Side::Device ? copy.dstDevice + dst_slice : 0;
    plane.dstPitch = copy.dstPitch;
    plane.WidthInBytes = copy.WidthInBytes;
    plane.Height = copy.Height;
    if (CUresult r = copy_2d(function_2d, plane, stream); r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}
// cuMemcpyHtoA and cuMemcpyAtoH: `bytes` from `offset` of the array's elements taken as one row
// after another (a 1D array's one row): cut into boxes of whole rows and the rows' ends, in the
// array's own row length, which its descriptor gives.
CUresult copy_linear_array(CopyFunction function, CUarray array, size_t offset, void* host, size_t bytes, bool to_array,
                           CUstream stream) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (bytes == 0) return CUDA_SUCCESS;
  if (host == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUDA_ARRAY3D_DESCRIPTOR d{};
  if (CUresult r = cuArray3DGetDescriptor_v2(&d, array); r != CUDA_SUCCESS) return r;
  uint32_t format;
  std::memcpy(&format, &d.Format, sizeof format);
  size_t row = 0;
  if (__builtin_mul_overflow(d.Width, array_channel_bytes(format) * d.NumChannels, &row)) return CUDA_ERROR_INVALID_VALUE;
  // Elements that are not whole channels (compressed formats): one row as long as the copy.
  if (row == 0) row = offset + bytes;
  const size_t rows = std::max<size_t>(d.Height, 1);
  for (size_t done = 0; done < bytes;) {
    const size_t at = offset + done;
    const size_t x = at % row, y = (at / row) % rows, z = at / row / rows;
    const size_t left = bytes - done;
    const size_t width = x != 0 || left < row ? std::min(left, row - x) : row;
    const size_t height = width == row ? std::min(rows - y, left / row) : 1;
    CUDA_MEMCPY3D box{};
    auto* memory = static_cast<uint8_t*>(host) + done;
    if (to_array) {
      box.srcMemoryType = CU_MEMORYTYPE_HOST;
      box.srcHost = memory;
      box.srcPitch = width;
      box.srcHeight = height;
      box.dstMemoryType = CU_MEMORYTYPE_ARRAY;
      box.dstArray = array;
      box.dstXInBytes = x, box.dstY = y, box.dstZ = z;
    } else {
      box.srcMemoryType = CU_MEMORYTYPE_ARRAY;
      box.srcArray = array;
      box.srcXInBytes = x, box.srcY = y, box.srcZ = z;
      box.dstMemoryType = CU_MEMORYTYPE_HOST;
      box.dstHost = memory;
      box.dstPitch = width;
      box.dstHeight = height;
    }
    box.WidthInBytes = width;
    box.Height = height;
    box.Depth = 1;
    if (CUresult r = copy_3d_with_array(function, box, to_array, stream); r != CUDA_SUCCESS) return r;
    done += width * height;
  }
  return CUDA_SUCCESS;
}
}  // namespace

}  // namespace rgpu::cuda

using namespace rgpu::cuda;

RGPU_EXPORT CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D* copy) {
  return copy ? copy_2d(CopyFunction::Memcpy2D, *copy, nullptr) : CUDA_ERROR_INVALID_VALUE;
}
RGPU_EXPORT CUresult cuMemcpy2D_v2_ptds(const CUDA_MEMCPY2D* copy) {
  return copy ? copy_2d(CopyFunction::Memcpy2DPtds, *copy, nullptr) : CUDA_ERROR_INVALID_VALUE;
}
RGPU_EXPORT CUresult cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D* copy) {
  return copy ? copy_2d(CopyFunction::Memcpy2DUnaligned, *copy, nullptr) : CUDA_ERROR_INVALID_VALUE;
}
RGPU_EXPORT CUresult cuMemcpy2DUnaligned_v2_ptds(const CUDA_MEMCPY2D* copy) {
  return copy ? copy_2d(CopyFunction::Memcpy2DUnalignedPtds, *copy, nullptr) : CUDA_ERROR_INVALID_VALUE;
}
RGPU_EXPORT CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D* copy, CUstream stream) {
  return copy ? copy_2d(CopyFunction::Memcpy2DAsync, *copy, stream) : CUDA_ERROR_INVALID_VALUE;
}
RGPU_EXPORT CUresult cuMemcpy2DAsync_v2_ptsz(const CUDA_MEMCPY2D* copy, CUstream stream) {
  return copy ? copy_2d(CopyFunction::Memcpy2DAsyncPtsz, *copy, stream) : CUDA_ERROR_INVALID_VALUE;
}
RGPU_EXPORT CUresult cuMemcpy3D_v2(const CUDA_MEMCPY3D* copy) {
  return copy ? copy_3d(CopyFunction::Memcpy3D, CopyFunction::Memcpy2D, *copy, nullptr) : CUDA_ERROR_INVALID_VALUE;
}
RGPU_EXPORT CUresult cuMemcpy3D_v2_ptds(const CUDA_MEMCPY3D* copy) {
  return copy ? copy_3d(CopyFunction::Memcpy3DPtds, CopyFunction::Memcpy2DPtds, *copy, nullptr)
              : CUDA_ERROR_INVALID_VALUE;
}
RGPU_EXPORT CUresult cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D* copy, CUstream stream) {
  return copy ? copy_3d(CopyFunction::Memcpy3DAsync, CopyFunction::Memcpy2DAsync, *copy, stream)
              : CUDA_ERROR_INVALID_VALUE;
}
RGPU_EXPORT CUresult cuMemcpy3DAsync_v2_ptsz(const CUDA_MEMCPY3D* copy, CUstream stream) {
  return copy ? copy_3d(CopyFunction::Memcpy3DAsyncPtsz, CopyFunction::Memcpy2DAsyncPtsz, *copy, stream)
              : CUDA_ERROR_INVALID_VALUE;
}

RGPU_EXPORT CUresult cuMemcpyHtoA_v2(CUarray dst, size_t offset, const void* src, size_t bytes) {
  return copy_linear_array(CopyFunction::Memcpy3D, dst, offset, const_cast<void*>(src), bytes, true, nullptr);
}
RGPU_EXPORT CUresult cuMemcpyHtoA_v2_ptds(CUarray dst, size_t offset, const void* src, size_t bytes) {
  return copy_linear_array(CopyFunction::Memcpy3DPtds, dst, offset, const_cast<void*>(src), bytes, true, nullptr);
}
RGPU_EXPORT CUresult cuMemcpyHtoAAsync_v2(CUarray dst, size_t offset, const void* src, size_t bytes, CUstream stream) {
  return copy_linear_array(CopyFunction::Memcpy3DAsync, dst, offset, const_cast<void*>(src), bytes, true, stream);
}
RGPU_EXPORT CUresult cuMemcpyHtoAAsync_v2_ptsz(CUarray dst, size_t offset, const void* src, size_t bytes,
                                               CUstream stream) {
  return copy_linear_array(CopyFunction::Memcpy3DAsyncPtsz, dst, offset, const_cast<void*>(src), bytes, true, stream);
}
RGPU_EXPORT CUresult cuMemcpyAtoH_v2(void* dst, CUarray src, size_t offset, size_t bytes) {
  return copy_linear_array(CopyFunction::Memcpy3D, src, offset, dst, bytes, false, nullptr);
}
RGPU_EXPORT CUresult cuMemcpyAtoH_v2_ptds(void* dst, CUarray src, size_t offset, size_t bytes) {
  return copy_linear_array(CopyFunction::Memcpy3DPtds, src, offset, dst, bytes, false, nullptr);
}
RGPU_EXPORT CUresult cuMemcpyAtoHAsync_v2(void* dst, CUarray src, size_t offset, size_t bytes, CUstream stream) {
  return copy_linear_array(CopyFunction::Memcpy3DAsync, src, offset, dst, bytes, false, stream);
}
RGPU_EXPORT CUresult cuMemcpyAtoHAsync_v2_ptsz(void* dst, CUarray src, size_t offset, size_t bytes, CUstream stream) {
  return copy_linear_array(CopyFunction::Memcpy3DAsyncPtsz, src, offset, dst, bytes, false, stream);
}
// The pre-3.2 entry points with 32-bit sizes.
RGPU_EXPORT CUresult cuMemcpyHtoA(CUarray dst, unsigned int offset, const void* src, unsigned int bytes) {
  return cuMemcpyHtoA_v2(dst, offset, src, bytes);
}
RGPU_EXPORT CUresult cuMemcpyHtoAAsync(CUarray dst, unsigned int offset, const void* src, unsigned int bytes,
                                       CUstream stream) {
  return cuMemcpyHtoAAsync_v2(dst, offset, src, bytes, stream);
}
RGPU_EXPORT CUresult cuMemcpyAtoH(void* dst, CUarray src, unsigned int offset, unsigned int bytes) {
  return cuMemcpyAtoH_v2(dst, src, offset, bytes);
}
RGPU_EXPORT CUresult cuMemcpyAtoHAsync(void* dst, CUarray src, unsigned int offset, unsigned int bytes,
                                       CUstream stream) {
  return cuMemcpyAtoHAsync_v2(dst, src, offset, bytes, stream);
}
