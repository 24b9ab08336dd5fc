#include "kernel_arguments.hpp"

#include <algorithm>
#include <cstring>

namespace rgpu::cuda {

CUresult read_kernel_arguments(WireReader& args, const ParamLayout& layout, KernelArguments& out) {
  const uint32_t count = args.get<uint32_t>();
  if (count > kMaxKernelParams) return CUDA_ERROR_INVALID_VALUE;
  std::vector<uint32_t> offsets(count);
  for (auto& offset : offsets) offset = args.get<uint32_t>();
  auto blob = args.blob(kMaxKernelArgumentBytes);
  if (layout.size() != count) return CUDA_ERROR_INVALID_VALUE;
  out.bytes.assign(blob.begin(), blob.end());
  out.pointers.assign(count, nullptr);
  for (uint32_t i = 0; i < count; ++i) {
    if (offsets[i] > out.bytes.size() || layout[i].second > out.bytes.size() - offsets[i]) return CUDA_ERROR_INVALID_VALUE;
    out.pointers[i] = out.bytes.data() + offsets[i];
  }
  return CUDA_SUCCESS;
}

CUresult write_kernel_arguments(WireWriter& out, const ParamLayout& layout, void* const* params, void* const* extra) {
  size_t end = 0;
  for (auto [offset, size] : layout) end = std::max<size_t>(end, offset + size);
  if (end > kMaxKernelArgumentBytes) return CUDA_ERROR_INVALID_VALUE;
  std::vector<uint8_t> blob(end);
  if (params != nullptr) {
    for (size_t i = 0; i < layout.size(); ++i) {
      if (params[i] == nullptr) return CUDA_ERROR_INVALID_VALUE;
      std::memcpy(blob.data() + layout[i].first, params[i], layout[i].second);
    }
  } else if (extra != nullptr) {
    const void* buffer = nullptr;
    size_t size = 0;
    for (size_t i = 0; extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
      if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER) buffer = extra[i + 1];
      else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE) size = *static_cast<const size_t*>(extra[i + 1]);
    }
    if (buffer == nullptr || size < end) return CUDA_ERROR_INVALID_VALUE;
    std::memcpy(blob.data(), buffer, end);
  } else if (!layout.empty()) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  out.put<uint32_t>(static_cast<uint32_t>(layout.size()));
  for (auto [offset, size] : layout) out.put<uint32_t>(static_cast<uint32_t>(offset));
  out.blob(blob);
  return CUDA_SUCCESS;
}

}  // namespace rgpu::cuda
