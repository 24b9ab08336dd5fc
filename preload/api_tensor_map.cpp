// Tensor maps (TMA descriptors): 128 opaque bytes that only the driver knows how to fill. The
// arguments travel to the server, whose driver encodes the map; the bytes come back here, where
// the application passes them to kernels as parameters.
#include <map>
#include <mutex>
#include <string>

#include "api_state.hpp"
#include "cuda_client.hpp"

namespace rgpu::cuda {

namespace {
constexpr cuuint32_t kMaxTensorRank = 5;

template <typename T>
void put_array(WireWriter& w, const T* values, size_t count) {
  for (size_t i = 0; i < count; ++i) w.put(values[i]);
}

// The tensor's shape as every encoding takes it.
bool put_tensor(WireWriter& w, CUtensorMapDataType type, cuuint32_t rank, void* address, const cuuint64_t* dims,
                const cuuint64_t* strides, cuuint32_t min_rank) {
  if (rank < min_rank || rank > kMaxTensorRank || dims == nullptr || (rank > 1 && strides == nullptr)) return false;
  w.put<uint32_t>(type).put<uint32_t>(rank).put<uint64_t>(reinterpret_cast<uint64_t>(address));
  put_array(w, dims, rank);
  put_array(w, strides, rank - 1);
  return true;
}

// A map is a function of its arguments (and the context it is made in): libraries that encode
// the same maps on every call get them from here after the first time.
constexpr size_t kMaxCachedMaps = 4096;
std::mutex g_cache_mutex;
auto* g_cache = new std::map<std::string, CUtensorMap>;  // never destroyed: see api_state.hpp

CUresult encode(CallBuilder& call, CUtensorMap* map) {
  const auto& payload = call.payload();
  std::string key(reinterpret_cast<const char*>(payload.data()) + sizeof(CallHeader), payload.size() - sizeof(CallHeader));
  const CUcontext context = current_context();
  key.append(reinterpret_cast<const char*>(&context), sizeof context);
  {
    std::lock_guard lock(g_cache_mutex);
    if (auto it = g_cache->find(key); it != g_cache->end()) {
      *map = it->second;
      return CUDA_SUCCESS;
    }
  }
  CUtensorMap encoded;
  CUresult r = call_sync(call, [&encoded](WireReader& reader) {
    auto bytes = reader.bytes(sizeof(CUtensorMap));
    std::memcpy(&encoded, bytes.data(), sizeof(CUtensorMap));
  });
  if (r != CUDA_SUCCESS) return r;
  *map = encoded;
  std::lock_guard lock(g_cache_mutex);
  if (g_cache->size() >= kMaxCachedMaps) g_cache->clear();
  g_cache->emplace(std::move(key), encoded);
  return CUDA_SUCCESS;
}
}  // namespace

}  // namespace rgpu::cuda

using namespace rgpu::cuda;
using rgpu::WireWriter;

RGPU_EXPORT CUresult cuTensorMapEncodeTiled(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank, void* address,
                                            const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                                            const cuuint32_t* element_strides, CUtensorMapInterleave interleave,
                                            CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2,
                                            CUtensorMapFloatOOBfill oob) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CallBuilder call(FN_rgpuTensorMap);
  WireWriter& w = call.writer();
  w.put(FN_cuTensorMapEncodeTiled);
  if (map == nullptr || box == nullptr || element_strides == nullptr || !put_tensor(w, type, rank, address, dims, strides, 1))
    return CUDA_ERROR_INVALID_VALUE;
  put_array(w, box, rank);
  put_array(w, element_strides, rank);
  w.put<uint32_t>(interleave).put<uint32_t>(swizzle).put<uint32_t>(l2).put<uint32_t>(oob);
  return encode(call, map);
}

RGPU_EXPORT CUresult cuTensorMapEncodeIm2col(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank,
                                             void* address, const cuuint64_t* dims, const cuuint64_t* strides,
                                             const int* lower, const int* upper, cuuint32_t channels,
                                             cuuint32_t pixels, const cuuint32_t* element_strides,
                                             CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
                                             CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill oob) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CallBuilder call(FN_rgpuTensorMap);
  WireWriter& w = call.writer();
  w.put(FN_cuTensorMapEncodeIm2col);
  if (map == nullptr || lower == nullptr || upper == nullptr || element_strides == nullptr ||
      !put_tensor(w, type, rank, address, dims, strides, 3))
    return CUDA_ERROR_INVALID_VALUE;
  put_array(w, lower, rank - 2);
  put_array(w, upper, rank - 2);
  w.put<uint32_t>(channels).put<uint32_t>(pixels);
  put_array(w, element_strides, rank);
  w.put<uint32_t>(interleave).put<uint32_t>(swizzle).put<uint32_t>(l2).put<uint32_t>(oob);
  return encode(call, map);
}

RGPU_EXPORT CUresult cuTensorMapEncodeIm2colWide(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank,
                                                 void* address, const cuuint64_t* dims, const cuuint64_t* strides,
                                                 int lower, int upper, cuuint32_t channels, cuuint32_t pixels,
                                                 const cuuint32_t* element_strides, CUtensorMapInterleave interleave,
                                                 CUtensorMapIm2ColWideMode mode, CUtensorMapSwizzle swizzle,
                                                 CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill oob) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  CallBuilder call(FN_rgpuTensorMap);
  WireWriter& w = call.writer();
  w.put(FN_cuTensorMapEncodeIm2colWide);
  if (map == nullptr || element_strides == nullptr || !put_tensor(w, type, rank, address, dims, strides, 3))
    return CUDA_ERROR_INVALID_VALUE;
  w.put<int32_t>(lower).put<int32_t>(upper).put<uint32_t>(channels).put<uint32_t>(pixels);
  put_array(w, element_strides, rank);
  w.put<uint32_t>(interleave).put<uint32_t>(mode).put<uint32_t>(swizzle).put<uint32_t>(l2).put<uint32_t>(oob);
  return encode(call, map);
}

RGPU_EXPORT CUresult cuTensorMapReplaceAddress(CUtensorMap* map, void* address) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (map == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_rgpuTensorMap);
  call.writer().put(FN_cuTensorMapReplaceAddress).bytes(map, sizeof *map).put<uint64_t>(reinterpret_cast<uint64_t>(address));
  return encode(call, map);
}
