// cuMemcpy2D/3D: copies of rectangles and boxes. Between device memory and arrays the server
// copies alone; where the application's host memory takes part, its rows travel packed (without
// the pitch gaps) in chunks of whole rows, and the server copies them with its own pitch.
#include <algorithm>
#include <cstring>
#include <vector>

#include "api_state.hpp"
#include "cuda_client.hpp"

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
  auto src_row = [&](size_t y) {
    return static_cast<const uint8_t*>(copy.srcHost) + (copy.srcY + y) * copy.srcPitch + copy.srcXInBytes;
  };
  auto dst_row = [&](size_t y) {
    return static_cast<uint8_t*>(copy.dstHost) + (copy.dstY + y) * copy.dstPitch + copy.dstXInBytes;
  };
  if (src == Side::Host && dst == Side::Host) {
    for (size_t y = 0; y < copy.Height; ++y) std::memmove(dst_row(y), src_row(y), width);
    return CUDA_SUCCESS;
  }
  if (src != Side::Host && dst != Side::Host) return send_copy(function, stream, kCopyOnServer, &copy, sizeof copy, {}, nullptr, 0);
  if (width > kRowChunkBytes) return copy_wide_rows(copy, src, dst, stream);

  const size_t rows_per_chunk = std::max<size_t>(1, kRowChunkBytes / width);
  std::vector<uint8_t> packed;
  for (size_t y0 = 0; y0 < copy.Height; y0 += rows_per_chunk) {
    const size_t rows = std::min(rows_per_chunk, copy.Height - y0);
    CUDA_MEMCPY2D part = copy;
    part.Height = rows;
    packed.resize(rows * width);
    CUresult r;
    if (src == Side::Host) {
      for (size_t y = 0; y < rows; ++y) std::memcpy(packed.data() + y * width, src_row(y0 + y), width);
      part.srcHost = nullptr;  // the server points it at the packed rows
      part.srcXInBytes = part.srcY = 0;
      part.srcPitch = width;
      part.dstY = copy.dstY + y0;
      r = send_copy(function, stream, kCopyFromHost, &part, sizeof part, packed, nullptr, 0);
    } else {
      part.dstHost = nullptr;  // the server packs the rows into its answer
      part.dstXInBytes = part.dstY = 0;
      part.dstPitch = width;
      part.srcY = copy.srcY + y0;
      r = send_copy(function, stream, kCopyToHost, &part, sizeof part, {}, packed.data(), packed.size());
      if (r == CUDA_SUCCESS)
        for (size_t y = 0; y < rows; ++y) std::memcpy(dst_row(y0 + y), packed.data() + y * width, width);
    }
    if (r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}

// A box: on the server when no host memory takes part, else slice by slice as rectangles (the
// host side's slices are srcPitch * srcHeight bytes apart; 3D arrays cannot be sliced that way).
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
  if (src == Side::Array || dst == Side::Array) return not_supported("cuMemcpy3D between host memory and an array");
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
