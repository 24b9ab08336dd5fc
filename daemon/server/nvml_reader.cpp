#include "nvml_reader.hpp"

#include <algorithm>

#include "device_memory_meter.hpp"
#include "nvml_library.hpp"

namespace rgpu {

namespace {

using nvml::Device;
using nvml::Return;

NvmlString text_of(const nvml::Library& lib, const char* function, Device device, unsigned size) {
  NvmlString out;
  auto fn = lib.symbol<nvml::TextFn>(function);
  if (fn == nullptr) {
    out.result = nvml::kErrorNotSupported;
    return out;
  }
  std::string buffer(size, '\0');
  out.result = fn(device, buffer.data(), size);
  if (out.result == nvml::kSuccess) out.text = buffer.c_str();
  return out;
}

// A driver's NVML that lacks a function cannot answer it: to the application, that is "not supported".
template <typename Fn, typename... Args>
Return call(const nvml::Library& lib, const char* function, Args... args) {
  auto fn = lib.symbol<Fn>(function);
  return fn == nullptr ? nvml::kErrorNotSupported : fn(args...);
}

NvmlNumber uint_of(const nvml::Library& lib, const char* function, Device device) {
  unsigned value = 0;
  const Return r = call<nvml::UintFn>(lib, function, device, &value);
  return {r, value};
}

NvmlNumber uint_of(const nvml::Library& lib, const char* function, Device device, int kind) {
  unsigned value = 0;
  const Return r = call<nvml::UintOfFn>(lib, function, device, kind, &value);
  return {r, value};
}

NvmlNumber int_of(const nvml::Library& lib, const char* function, Device device) {
  int value = 0;
  const Return r = call<nvml::IntFn>(lib, function, device, &value);
  return {r, static_cast<uint64_t>(static_cast<uint32_t>(value))};
}

void read_memory(const nvml::Library& lib, Device device, NvmlGpu& gpu) {
  nvml::MemoryV2 v2{};
  v2.version = nvml::kMemoryV2Version;
  Return r = call<nvml::MemoryV2Fn>(lib, "nvmlDeviceGetMemoryInfo_v2", device, &v2);
  if (r == nvml::kSuccess) {
    gpu[NvmlValue::MemoryTotal] = {r, v2.total};
    gpu[NvmlValue::MemoryReserved] = {r, v2.reserved};
    gpu[NvmlValue::MemoryFree] = {r, v2.free};
    gpu[NvmlValue::MemoryUsed] = {r, v2.used};
    return;
  }
  nvml::Memory v1{};  // an older driver: no reserved share
  r = call<nvml::MemoryFn>(lib, "nvmlDeviceGetMemoryInfo", device, &v1);
  gpu[NvmlValue::MemoryTotal] = {r, v1.total};
  gpu[NvmlValue::MemoryFree] = {r, v1.free};
  gpu[NvmlValue::MemoryUsed] = {r, v1.used};
  gpu[NvmlValue::MemoryReserved] = {r == nvml::kSuccess ? nvml::kErrorNotSupported : r, 0};
}

void read_processes(const nvml::Library& lib, Device device, const char* function, bool graphics, NvmlGpu& gpu) {
  auto fn = lib.symbol<nvml::GetComputeRunningProcessesFn>(function);
  if (fn == nullptr) return;
  std::vector<nvml::ProcessInfo> infos(64);
  for (int tries = 0; tries < 4; ++tries) {  // processes may come and go between the two calls
    auto count = static_cast<unsigned>(infos.size());
    const Return r = fn(device, &count, infos.data());
    if (r == nvml::kErrorInsufficientSize && count > infos.size() && count <= kMaxNvmlProcesses) {
      infos.resize(count + 16);
      continue;
    }
    if (r != nvml::kSuccess) return;
    infos.resize(std::min<size_t>(count, infos.size()));
    for (const auto& info : infos) gpu.processes.push_back(NvmlProcess{info.pid, info.used_gpu_memory, graphics});
    return;
  }
}

NvmlGpu read_gpu(const nvml::Library& lib, Device device, uint32_t index) {
  NvmlGpu gpu;
  gpu.gpu_index = index;
  gpu[NvmlText::Name] = text_of(lib, "nvmlDeviceGetName", device, nvml::kDeviceNameBufferSize);
  gpu[NvmlText::Uuid] = text_of(lib, "nvmlDeviceGetUUID", device, nvml::kDeviceUuidBufferSize);
  gpu[NvmlText::Serial] = text_of(lib, "nvmlDeviceGetSerial", device, 64);
  gpu[NvmlText::BoardPartNumber] = text_of(lib, "nvmlDeviceGetBoardPartNumber", device, 80);
  gpu[NvmlValue::BoardId] = uint_of(lib, "nvmlDeviceGetBoardId", device);

  nvml::PciInfo pci{};
  const Return pci_result = call<nvml::PciInfoFn>(lib, "nvmlDeviceGetPciInfo_v3", device, &pci);
  pci.bus_id[sizeof pci.bus_id - 1] = pci.bus_id_legacy[sizeof pci.bus_id_legacy - 1] = '\0';
  gpu[NvmlText::PciBusId] = {pci_result, pci_result == nvml::kSuccess ? pci.bus_id : ""};
  gpu[NvmlText::PciBusIdLegacy] = {pci_result, pci_result == nvml::kSuccess ? pci.bus_id_legacy : ""};
  gpu[NvmlValue::PciDomain] = {pci_result, pci.domain};
  gpu[NvmlValue::PciBus] = {pci_result, pci.bus};
  gpu[NvmlValue::PciDevice] = {pci_result, pci.device};
  gpu[NvmlValue::PciDeviceId] = {pci_result, pci.pci_device_id};
  gpu[NvmlValue::PciSubsystemId] = {pci_result, pci.pci_subsystem_id};

  read_memory(lib, device, gpu);
  nvml::Utilization utilization{};
  const Return u = call<nvml::UtilizationFn>(lib, "nvmlDeviceGetUtilizationRates", device, &utilization);
  gpu[NvmlValue::UtilizationGpu] = {u, utilization.gpu};
  gpu[NvmlValue::UtilizationMemory] = {u, utilization.memory};

  for (unsigned type = 0; type < nvml::kClockTypes; ++type) {
    gpu.values[static_cast<size_t>(NvmlValue::ClockGraphics) + type] =
        uint_of(lib, "nvmlDeviceGetClockInfo", device, static_cast<int>(type));
    gpu.values[static_cast<size_t>(NvmlValue::MaxClockGraphics) + type] =
        uint_of(lib, "nvmlDeviceGetMaxClockInfo", device, static_cast<int>(type));
  }
  gpu[NvmlValue::Temperature] = uint_of(lib, "nvmlDeviceGetTemperature", device, 0 /* NVML_TEMPERATURE_GPU */);
  gpu[NvmlValue::PowerUsage] = uint_of(lib, "nvmlDeviceGetPowerUsage", device);
  gpu[NvmlValue::PowerLimit] = uint_of(lib, "nvmlDeviceGetPowerManagementLimit", device);
  gpu[NvmlValue::EnforcedPowerLimit] = uint_of(lib, "nvmlDeviceGetEnforcedPowerLimit", device);
  gpu[NvmlValue::FanSpeed] = uint_of(lib, "nvmlDeviceGetFanSpeed", device);
  gpu[NvmlValue::PerformanceState] = int_of(lib, "nvmlDeviceGetPerformanceState", device);
  gpu[NvmlValue::ComputeMode] = int_of(lib, "nvmlDeviceGetComputeMode", device);
  gpu[NvmlValue::PersistenceMode] = int_of(lib, "nvmlDeviceGetPersistenceMode", device);
  gpu[NvmlValue::DisplayActive] = int_of(lib, "nvmlDeviceGetDisplayActive", device);
  gpu[NvmlValue::DisplayMode] = int_of(lib, "nvmlDeviceGetDisplayMode", device);
  int major = 0, minor = 0;
  const Return cc = call<nvml::IntPairFn>(lib, "nvmlDeviceGetCudaComputeCapability", device, &major, &minor);
  gpu[NvmlValue::ComputeCapabilityMajor] = {cc, static_cast<uint64_t>(major)};
  gpu[NvmlValue::ComputeCapabilityMinor] = {cc, static_cast<uint64_t>(minor)};
  unsigned current = 0, pending = 0;
  const Return mig = call<nvml::UintPairFn>(lib, "nvmlDeviceGetMigMode", device, &current, &pending);
  gpu[NvmlValue::MigModeCurrent] = {mig, current};
  gpu[NvmlValue::MigModePending] = {mig, pending};

  read_processes(lib, device, "nvmlDeviceGetComputeRunningProcesses_v3", false, gpu);
  read_processes(lib, device, "nvmlDeviceGetGraphicsRunningProcesses_v3", true, gpu);
  return gpu;
}

NvmlString system_text(const nvml::Library& lib, const char* function) {
  NvmlString out;
  char buffer[nvml::kSystemDriverVersionBufferSize] = {};
  out.result = call<nvml::SystemTextFn>(lib, function, buffer, static_cast<unsigned>(sizeof buffer));
  buffer[sizeof buffer - 1] = '\0';
  if (out.result == nvml::kSuccess) out.text = buffer;
  return out;
}

}  // namespace

NvmlReading read_nvml(const std::vector<GpuInfo>& gpus) {
  NvmlReading reading;
  const nvml::Library& lib = nvml::Library::get();
  if (!lib.problem().empty()) {
    reading.problem = lib.problem();
    return reading;
  }
  reading.pids_are_ours = in_initial_pid_namespace();
  reading.snapshot[NvmlSystemText::DriverVersion] = system_text(lib, "nvmlSystemGetDriverVersion");
  reading.snapshot[NvmlSystemText::NvmlVersion] = system_text(lib, "nvmlSystemGetNVMLVersion");
  int cuda_version = 0;
  const char* version_function = lib.symbol<nvml::SystemIntFn>("nvmlSystemGetCudaDriverVersion_v2")
                                     ? "nvmlSystemGetCudaDriverVersion_v2"
                                     : "nvmlSystemGetCudaDriverVersion";
  const Return r = call<nvml::SystemIntFn>(lib, version_function, &cuda_version);
  reading.snapshot.cuda_driver_version = {r, static_cast<uint64_t>(cuda_version)};

  auto by_uuid = lib.symbol<nvml::DeviceGetHandleByUuidFn>("nvmlDeviceGetHandleByUUID");
  for (const GpuInfo& gpu : gpus) {
    Device device = nullptr;
    const Return found = by_uuid ? by_uuid(gpu_uuid_text(gpu.uuid).c_str(), &device) : nvml::kErrorNotSupported;
    if (found != nvml::kSuccess) {  // not an NVIDIA GPU (a Vulkan-only device), or NVML lost it
      reading.problem = "NVML does not know GPU " + std::to_string(gpu.index) + " (" + gpu.name + "): NVML error " +
                        std::to_string(found);
      continue;
    }
    reading.snapshot.gpus.push_back(read_gpu(lib, device, gpu.index));
    if (!reading.pids_are_ours) reading.snapshot.gpus.back().processes.clear();
  }
  return reading;
}

}  // namespace rgpu
