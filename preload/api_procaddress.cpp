// cuGetProcAddress: the driver entry point that matches a base name, the caller's CUDA version
// and its default-stream mode; cuGetExportTable: the private tables libcudart asks for.
#include <cstring>
#include <string>

#include "api_state.hpp"
#include "cuda_client.hpp"
#include "export_tables.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
void* lookup(const std::string& name) {
  for (size_t i = 0; i < kExportedFunctionCount; ++i)
    if (name == kExportedFunctions[i].name) return kExportedFunctions[i].address;
  return nullptr;
}

// Where a newer version of an entry point changed its signature, the caller's CUDA version picks
// the one it was compiled for (first match wins; versions as in CUDA_VERSION).
struct VersionedName {
  const char* base;
  int since;
  const char* name;
};
constexpr VersionedName kVersioned[] = {
    {"cuCtxCreate", 12050, "cuCtxCreate_v4"},
    {"cuCtxCreate", 11040, "cuCtxCreate_v3"},
    {"cuCtxCreate", 3020, "cuCtxCreate_v2"},
    {"cuStreamGetCaptureInfo", 12030, "cuStreamGetCaptureInfo_v3"},
    {"cuStreamGetCaptureInfo", 11030, "cuStreamGetCaptureInfo_v2"},
    {"cuGraphExecUpdate", 12000, "cuGraphExecUpdate_v2"},
    {"cuGraphInstantiate", 12000, "cuGraphInstantiateWithFlags"},
    {"cuGraphKernelNodeGetParams", 12000, "cuGraphKernelNodeGetParams_v2"},
    {"cuGraphKernelNodeSetParams", 12000, "cuGraphKernelNodeSetParams_v2"},
    {"cuGraphExecKernelNodeSetParams", 12000, "cuGraphExecKernelNodeSetParams_v2"},
    {"cuGraphAddKernelNode", 12000, "cuGraphAddKernelNode_v2"},
    {"cuGraphGetEdges", 12030, "cuGraphGetEdges_v2"},
    {"cuGraphNodeGetDependencies", 12030, "cuGraphNodeGetDependencies_v2"},
    {"cuGraphNodeGetDependentNodes", 12030, "cuGraphNodeGetDependentNodes_v2"},
    {"cuGraphAddDependencies", 12030, "cuGraphAddDependencies_v2"},
    {"cuGraphRemoveDependencies", 12030, "cuGraphRemoveDependencies_v2"},
    {"cuGraphAddNode", 12030, "cuGraphAddNode_v2"},
    {"cuStreamUpdateCaptureDependencies", 12030, "cuStreamUpdateCaptureDependencies_v2"},
    {"cuMemAdvise", 12020, "cuMemAdvise_v2"},
    {"cuMemPrefetchAsync", 12020, "cuMemPrefetchAsync_v2"},
    {"cuMemcpyBatchAsync", 13000, "cuMemcpyBatchAsync_v2"},
    {"cuMemcpy3DBatchAsync", 13000, "cuMemcpy3DBatchAsync_v2"},
    {"cuStreamGetCtx", 12050, "cuStreamGetCtx_v2"},
    {"cuEventElapsedTime", 12080, "cuEventElapsedTime_v2"},
    {"cuCtxSynchronize", 13000, "cuCtxSynchronize"},
};

// The name a base name resolves to for this caller: the newest _vN this library exports,
// unless kVersioned pins an older one for the caller's version.
std::string resolve(const char* base, int version, bool per_thread) {
  std::string name;
  bool pinned = false;
  for (const auto& v : kVersioned) {
    if (std::strcmp(v.base, base) != 0) continue;
    pinned = true;
    if (version >= v.since) {
      name = v.name;
      break;
    }
  }
  if (name.empty()) {
    name = base;
    if (!pinned) {
      for (int n = 9; n >= 2; --n) {
        std::string candidate = std::string(base) + "_v" + std::to_string(n);
        if (lookup(candidate)) {
          name = candidate;
          break;
        }
      }
    }
  }
  if (per_thread) {
    for (const char* suffix : {"_ptds", "_ptsz"})
      if (lookup(name + suffix)) return name + suffix;
  }
  return name;
}

CUresult get_proc_address(const char* symbol, void** pfn, int version, cuuint64_t flags,
                          CUdriverProcAddressQueryResult* status) {
  if (symbol == nullptr || pfn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const bool per_thread = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
  const std::string name = resolve(symbol, version, per_thread);
  *pfn = lookup(name);
  if (status) *status = *pfn ? CU_GET_PROC_ADDRESS_SUCCESS : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  if (*pfn == nullptr) {
    LOG_DEBUG("cuGetProcAddress(%s, %d): not found", symbol, version);
    return CUDA_ERROR_NOT_FOUND;
  }
  return CUDA_SUCCESS;
}
}  // namespace

}  // namespace rgpu::cuda

using namespace rgpu::cuda;

RGPU_EXPORT CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int version, cuuint64_t flags,
                                         CUdriverProcAddressQueryResult* status) {
  return get_proc_address(symbol, pfn, version, flags, status);
}

RGPU_EXPORT CUresult cuGetProcAddress(const char* symbol, void** pfn, int version, cuuint64_t flags) {
  return get_proc_address(symbol, pfn, version, flags, nullptr);
}

RGPU_EXPORT CUresult cuGetExportTable(const void** table, const CUuuid* id) { return get_export_table(table, id, __builtin_return_address(0)); }
