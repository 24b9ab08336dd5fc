// The management library's (NVML's) view of the double's devices, as much as the server uses: the
// device memory this process holds on each, so that a worker can count module globals against
// its token's max_memory. The server loads these from the double through RGPU_NVML_LIBRARY.
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "nvml_abi.hpp"
#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
std::string uuid_text(CUdevice device) {
  CUuuid uuid{};
  if (cuDeviceGetUuid_v2(&uuid, device) != CUDA_SUCCESS) return {};
  std::string out = "GPU-";
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", static_cast<unsigned char>(uuid.bytes[i]));
    out += hex;
  }
  return out;
}
}  // namespace

DOUBLE_EXPORT nvml::Return nvmlInit_v2() { return nvml::kSuccess; }

DOUBLE_EXPORT nvml::Return nvmlDeviceGetHandleByUUID(const char* uuid, nvml::Device* device) {
  if (uuid == nullptr || device == nullptr) return nvml::kErrorInvalidArgument;
  for (CUdevice ordinal = 0; ordinal < kDeviceCount; ++ordinal)
    if (uuid_text(ordinal) == uuid) {
      *device = reinterpret_cast<nvml::Device>(static_cast<uintptr_t>(ordinal) + 1);
      return nvml::kSuccess;
    }
  return nvml::kErrorNotFound;
}

DOUBLE_EXPORT nvml::Return nvmlDeviceGetComputeRunningProcesses_v3(nvml::Device device, unsigned int* count,
                                                                    nvml::ProcessInfo* infos) {
  const auto ordinal = static_cast<CUdevice>(reinterpret_cast<uintptr_t>(device) - 1);
  if (count == nullptr || ordinal < 0 || ordinal >= kDeviceCount) return nvml::kErrorInvalidArgument;
  uint64_t used = 0;
  {
    auto lock = lock_driver();
    used = device_memory_in_use(ordinal);
  }
  if (used == 0) {
    *count = 0;
    return nvml::kSuccess;
  }
  if (*count < 1 || infos == nullptr) {
    *count = 1;
    return nvml::kErrorInsufficientSize;
  }
  *count = 1;
  infos[0] = nvml::ProcessInfo{static_cast<unsigned int>(::getpid()), used, ~0u, ~0u};
  return nvml::kSuccess;
}

}  // namespace rgpu::cuda_double
