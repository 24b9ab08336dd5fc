// The management library's (NVML's) view of the double's devices, as much as the server uses: a
// worker reads the device memory its own process holds (module globals count against its token's
// max_memory), the main process reads each device's facts, state and processes for the pool's
// libnvidia-ml.so.1. The server loads these from the double through RGPU_NVML_LIBRARY. The
// numbers follow from what the processes hold, so that tests can tell them from made-up ones.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "nvml_abi.hpp"
#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
constexpr uint64_t kReserved = 512ull << 20;  // what the driver keeps for itself on each device

std::string uuid_text(CUdevice device) {
  const CUuuid uuid = device_uuid(device);
  std::string out = "GPU-";
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", static_cast<unsigned char>(uuid.bytes[i]));
    out += hex;
  }
  return out;
}

nvml::Device handle_of(CUdevice ordinal) { return reinterpret_cast<nvml::Device>(static_cast<uintptr_t>(ordinal) + 1); }

// The device a handle names, or -1.
CUdevice ordinal_of(nvml::Device device) {
  const auto value = reinterpret_cast<uintptr_t>(device);
  return value >= 1 && value <= kDeviceCount ? static_cast<CUdevice>(value - 1) : -1;
}

nvml::Return put_text(const std::string& text, char* buffer, unsigned length) {
  if (buffer == nullptr) return nvml::kErrorInvalidArgument;
  if (text.size() + 1 > length) return nvml::kErrorInsufficientSize;
  std::memcpy(buffer, text.c_str(), text.size() + 1);
  return nvml::kSuccess;
}

uint64_t used_on(CUdevice device) {
  uint64_t used = 0;
  for (const ProcessMemory& p : processes_on(device)) used += p.bytes;
  return used;
}

// An unsigned number of a device: the result of checking the handle and the output.
template <typename T, typename Value>
nvml::Return answer(nvml::Device device, T* out, Value value) {
  const CUdevice ordinal = ordinal_of(device);
  if (ordinal < 0 || out == nullptr) return nvml::kErrorInvalidArgument;
  auto lock = lock_driver();
  *out = static_cast<T>(value(ordinal));
  return nvml::kSuccess;
}
}  // namespace

}  // namespace rgpu::cuda_double

using namespace rgpu;
using namespace rgpu::cuda_double;

DOUBLE_EXPORT nvml::Return nvmlInit_v2() { return nvml::kSuccess; }

DOUBLE_EXPORT nvml::Return nvmlSystemGetDriverVersion(char* version, unsigned length) {
  return put_text("580.00.00-test-double", version, length);
}
DOUBLE_EXPORT nvml::Return nvmlSystemGetNVMLVersion(char* version, unsigned length) {
  return put_text("13.580.00-test-double", version, length);
}
DOUBLE_EXPORT nvml::Return nvmlSystemGetCudaDriverVersion_v2(int* version) {
  if (version == nullptr) return nvml::kErrorInvalidArgument;
  *version = 13000;
  return nvml::kSuccess;
}

DOUBLE_EXPORT nvml::Return nvmlDeviceGetHandleByUUID(const char* uuid, nvml::Device* device) {
  if (uuid == nullptr || device == nullptr) return nvml::kErrorInvalidArgument;
  for (CUdevice ordinal = 0; ordinal < kDeviceCount; ++ordinal)
    if (uuid_text(ordinal) == uuid) {
      *device = handle_of(ordinal);
      return nvml::kSuccess;
    }
  return nvml::kErrorNotFound;
}

DOUBLE_EXPORT nvml::Return nvmlDeviceGetName(nvml::Device device, char* name, unsigned length) {
  const CUdevice ordinal = ordinal_of(device);
  if (ordinal < 0) return nvml::kErrorInvalidArgument;
  return put_text("RGPU CUDA test double " + std::to_string(ordinal), name, length);
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetUUID(nvml::Device device, char* uuid, unsigned length) {
  const CUdevice ordinal = ordinal_of(device);
  if (ordinal < 0) return nvml::kErrorInvalidArgument;
  return put_text(uuid_text(ordinal), uuid, length);
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetSerial(nvml::Device device, char* serial, unsigned length) {
  const CUdevice ordinal = ordinal_of(device);
  if (ordinal < 0) return nvml::kErrorInvalidArgument;
  return put_text("165322000000" + std::to_string(ordinal), serial, length);
}
// A board part number, like a fan, is something this double's boards lack: NVML says so.
DOUBLE_EXPORT nvml::Return nvmlDeviceGetBoardPartNumber(nvml::Device device, char*, unsigned) {
  return ordinal_of(device) < 0 ? nvml::kErrorInvalidArgument : nvml::kErrorNotSupported;
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetFanSpeed(nvml::Device device, unsigned*) {
  return ordinal_of(device) < 0 ? nvml::kErrorInvalidArgument : nvml::kErrorNotSupported;
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetBoardId(nvml::Device device, unsigned* id) {
  return answer(device, id, [](CUdevice d) { return 0x1b00u + static_cast<unsigned>(d); });
}

DOUBLE_EXPORT nvml::Return nvmlDeviceGetPciInfo_v3(nvml::Device device, nvml::PciInfo* pci) {
  const CUdevice ordinal = ordinal_of(device);
  if (ordinal < 0 || pci == nullptr) return nvml::kErrorInvalidArgument;
  *pci = nvml::PciInfo{};
  pci->domain = 0;
  pci->bus = static_cast<unsigned>(pci_bus(ordinal));
  pci->device = 0;
  pci->pci_device_id = 0x233010DE;
  pci->pci_subsystem_id = 0x16C110DE;
  std::snprintf(pci->bus_id, sizeof pci->bus_id, "00000000:%02X:00.0", pci->bus);
  std::snprintf(pci->bus_id_legacy, sizeof pci->bus_id_legacy, "0000:%02X:00.0", pci->bus);
  return nvml::kSuccess;
}

DOUBLE_EXPORT nvml::Return nvmlDeviceGetMemoryInfo_v2(nvml::Device device, nvml::MemoryV2* memory) {
  const CUdevice ordinal = ordinal_of(device);
  if (ordinal < 0 || memory == nullptr || memory->version != nvml::kMemoryV2Version) return nvml::kErrorInvalidArgument;
  auto lock = lock_driver();
  const uint64_t used = used_on(ordinal);
  memory->total = kDeviceMemory;
  memory->reserved = kReserved;
  memory->used = used;
  memory->free = kDeviceMemory - kReserved - used;
  return nvml::kSuccess;
}

// Busy in proportion to the processes on it (a quarter each); memory activity to what they hold.
DOUBLE_EXPORT nvml::Return nvmlDeviceGetUtilizationRates(nvml::Device device, nvml::Utilization* utilization) {
  const CUdevice ordinal = ordinal_of(device);
  if (ordinal < 0 || utilization == nullptr) return nvml::kErrorInvalidArgument;
  auto lock = lock_driver();
  const size_t processes = processes_on(ordinal).size();
  utilization->gpu = static_cast<unsigned>(std::min<size_t>(100, 25 * processes));
  utilization->memory = static_cast<unsigned>(used_on(ordinal) * 100 / kDeviceMemory);
  return nvml::kSuccess;
}

// Clocks in MHz: graphics, SM, memory, video; current ones are the maximum while anything runs.
DOUBLE_EXPORT nvml::Return nvmlDeviceGetMaxClockInfo(nvml::Device device, int type, unsigned* clock) {
  static constexpr unsigned kMax[nvml::kClockTypes] = {1980, 1980, 2619, 1755};
  if (type < 0 || type >= static_cast<int>(nvml::kClockTypes)) return nvml::kErrorInvalidArgument;
  return answer(device, clock, [&](CUdevice) { return kMax[type]; });
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetClockInfo(nvml::Device device, int type, unsigned* clock) {
  static constexpr unsigned kIdle[nvml::kClockTypes] = {345, 345, 2619, 765};
  static constexpr unsigned kBusy[nvml::kClockTypes] = {1980, 1980, 2619, 1755};
  if (type < 0 || type >= static_cast<int>(nvml::kClockTypes)) return nvml::kErrorInvalidArgument;
  return answer(device, clock, [&](CUdevice d) { return processes_on(d).empty() ? kIdle[type] : kBusy[type]; });
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetTemperature(nvml::Device device, int sensor, unsigned* temperature) {
  if (sensor != 0) return nvml::kErrorInvalidArgument;
  return answer(device, temperature, [](CUdevice d) { return 31u + static_cast<unsigned>(d); });
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetPowerUsage(nvml::Device device, unsigned* milliwatts) {
  return answer(device, milliwatts, [](CUdevice d) { return processes_on(d).empty() ? 72000u : 310000u; });
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetPowerManagementLimit(nvml::Device device, unsigned* milliwatts) {
  return answer(device, milliwatts, [](CUdevice) { return 700000u; });
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetEnforcedPowerLimit(nvml::Device device, unsigned* milliwatts) {
  return answer(device, milliwatts, [](CUdevice) { return 700000u; });
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetPerformanceState(nvml::Device device, int* state) {
  return answer(device, state, [](CUdevice d) { return processes_on(d).empty() ? 8 : 0; });  // P8 idle, P0 busy
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetComputeMode(nvml::Device device, int* mode) {
  return answer(device, mode, [](CUdevice) { return 0; });  // NVML_COMPUTEMODE_DEFAULT
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetPersistenceMode(nvml::Device device, int* mode) {
  return answer(device, mode, [](CUdevice) { return 1; });  // NVML_FEATURE_ENABLED
}
DOUBLE_EXPORT nvml::Return nvmlDeviceGetCudaComputeCapability(nvml::Device device, int* major, int* minor) {
  if (minor == nullptr) return nvml::kErrorInvalidArgument;
  *minor = 0;
  return answer(device, major, [](CUdevice) { return 9; });
}

DOUBLE_EXPORT nvml::Return nvmlDeviceGetComputeRunningProcesses_v3(nvml::Device device, unsigned int* count,
                                                                    nvml::ProcessInfo* infos) {
  const CUdevice ordinal = ordinal_of(device);
  if (count == nullptr || ordinal < 0) return nvml::kErrorInvalidArgument;
  std::vector<ProcessMemory> processes;
  {
    auto lock = lock_driver();
    processes = processes_on(ordinal);
  }
  if (processes.size() > *count || (!processes.empty() && infos == nullptr)) {
    *count = static_cast<unsigned>(processes.size());
    return nvml::kErrorInsufficientSize;
  }
  *count = static_cast<unsigned>(processes.size());
  for (size_t i = 0; i < processes.size(); ++i)
    infos[i] = nvml::ProcessInfo{processes[i].pid, processes[i].bytes, ~0u, ~0u};
  return nvml::kSuccess;
}
