// The JIT linker (cuLink*): the link state lives on the server, inputs travel as bytes (a file is
// read here), and the linked image comes back to a buffer that lives until cuLinkDestroy. JIT
// options (log buffers, tuning) are not forwarded: the server's driver links with its defaults.
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "api_state.hpp"
#include "cuda_client.hpp"

namespace rgpu::cuda {

namespace {
std::mutex g_mutex;
// The linked image of each state (what cuLinkComplete hands out).
auto* g_outputs = new std::map<CUlinkState, std::vector<uint8_t>>;  // never destroyed: see api_state.hpp

CUresult add_bytes(CUlinkState state, CUjitInputType type, std::span<const uint8_t> bytes, const char* name) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (state == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (bytes.size() > kMaxImageSize) return CUDA_ERROR_INVALID_IMAGE;
  while (bytes.size() > kImagePartSize) {  // a large input goes ahead in parts
    CallBuilder part(FN_rgpuImagePart);
    part.writer().bytes(bytes.data(), kImagePartSize);
    if (CUresult r = call_pipelined(part); r != CUDA_SUCCESS) return r;
    bytes = bytes.subspan(kImagePartSize);
  }
  CallBuilder call(FN_rgpuLinkAdd);
  call.writer().put<uint64_t>(reinterpret_cast<uint64_t>(state)).put<uint32_t>(type).str(name ? name : "");
  call.writer().bytes(bytes.data(), bytes.size());
  return call_sync(call, nullptr);
}
}  // namespace

}  // namespace rgpu::cuda

using namespace rgpu::cuda;

RGPU_EXPORT CUresult cuLinkCreate_v2(unsigned int, CUjit_option*, void**, CUlinkState* state) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (state == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_rgpuLinkCreate);
  uint64_t handle = 0;
  CUresult r = call_sync(call, [&](rgpu::WireReader& reader) { handle = reader.get<uint64_t>(); });
  if (r == CUDA_SUCCESS) *state = reinterpret_cast<CUlinkState>(handle);
  return r;
}

RGPU_EXPORT CUresult cuLinkAddData_v2(CUlinkState state, CUjitInputType type, void* data, size_t size, const char* name,
                                      unsigned int, CUjit_option*, void**) {
  if (data == nullptr || size == 0) return CUDA_ERROR_INVALID_VALUE;
  return add_bytes(state, type, {static_cast<const uint8_t*>(data), size}, name);
}

RGPU_EXPORT CUresult cuLinkAddFile_v2(CUlinkState state, CUjitInputType type, const char* path, unsigned int,
                                      CUjit_option*, void**) {
  if (path == nullptr) return CUDA_ERROR_INVALID_VALUE;
  FILE* file = std::fopen(path, "rb");
  if (file == nullptr) return CUDA_ERROR_FILE_NOT_FOUND;
  std::vector<uint8_t> bytes;
  uint8_t buffer[65536];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) bytes.insert(bytes.end(), buffer, buffer + n);
  std::fclose(file);
  if (bytes.empty()) return CUDA_ERROR_INVALID_IMAGE;
  return add_bytes(state, type, bytes, path);
}

RGPU_EXPORT CUresult cuLinkComplete(CUlinkState state, void** image, size_t* size) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (state == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (image == nullptr || size == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CallBuilder call(FN_rgpuLinkComplete);
  call.writer().put<uint64_t>(reinterpret_cast<uint64_t>(state));
  std::vector<uint8_t> linked;
  CUresult r = call_sync(call, [&](rgpu::WireReader& reader) {
    auto bytes = reader.rest();
    linked.assign(bytes.begin(), bytes.end());
  });
  if (r != CUDA_SUCCESS) return r;
  std::lock_guard lock(g_mutex);
  std::vector<uint8_t>& kept = (*g_outputs)[state];
  kept = std::move(linked);
  *image = kept.data();
  *size = kept.size();
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuLinkDestroy(CUlinkState state) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (state == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  {
    std::lock_guard lock(g_mutex);
    g_outputs->erase(state);
  }
  CallBuilder call(FN_rgpuLinkDestroy);
  call.writer().put<uint64_t>(reinterpret_cast<uint64_t>(state));
  return call_sync(call, nullptr);
}

// The names of the first linker API (same parameters; `cuda.h` maps them to the _v2 ones).
RGPU_EXPORT CUresult cuLinkCreate(unsigned int count, CUjit_option* options, void** values, CUlinkState* state) {
  return cuLinkCreate_v2(count, options, values, state);
}
RGPU_EXPORT CUresult cuLinkAddData(CUlinkState state, CUjitInputType type, void* data, size_t size, const char* name,
                                   unsigned int count, CUjit_option* options, void** values) {
  return cuLinkAddData_v2(state, type, data, size, name, count, options, values);
}
RGPU_EXPORT CUresult cuLinkAddFile(CUlinkState state, CUjitInputType type, const char* path, unsigned int count,
                                   CUjit_option* options, void** values) {
  return cuLinkAddFile_v2(state, type, path, count, options, values);
}
