// The NVML entry points RGPU's libnvidia-ml.so.1 answers, from the pool's NVML view (the servers'
// real NVML, through the client daemon). NVML ignores CUDA_VISIBLE_DEVICES, and so does this: the
// devices are the pool's GPUs that their servers' NVML knows, in pool order.
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>

#include "nvml_state.hpp"

#define NVML_EXPORT extern "C" __attribute__((visibility("default")))

using namespace rgpu;
using namespace rgpu::nvml_client;
using Handle = nvml::Device;

namespace {

constexpr Return kArgumentVersionMismatch = 25;  // NVML_ERROR_ARGUMENT_VERSION_MISMATCH
constexpr unsigned kNoInstance = 0xFFFFFFFFu;    // a process's GPU and compute instance without MIG

Return put_text(const std::string& text, char* buffer, unsigned int length) {
  if (buffer == nullptr) return nvml::kErrorInvalidArgument;
  if (text.size() + 1 > length) return nvml::kErrorInsufficientSize;
  std::memcpy(buffer, text.c_str(), text.size() + 1);
  return nvml::kSuccess;
}

Return put_text(const NvmlString& field, char* buffer, unsigned int length) {
  if (field.result != nvml::kSuccess) return field.result;
  return put_text(field.text, buffer, length);
}

template <typename T>
Return put_number(const NvmlNumber& field, T* out) {
  if (out == nullptr) return nvml::kErrorInvalidArgument;
  if (field.result != nvml::kSuccess) return field.result;
  *out = static_cast<T>(field.value);
  return nvml::kSuccess;
}

// What never changes (name, UUID, PCI and board ids), as nvmlInit found it.
template <typename Body>
Return with_facts(Handle handle, Body body) {
  const PoolDevice* device = nullptr;
  if (Return r = device_of(handle, device); r != nvml::kSuccess) return r;
  return body(device->facts);
}

// What changes, from a view at most half a second old.
template <typename Body>
Return with_live(Handle handle, Body body) {
  const PoolDevice* device = nullptr;
  if (Return r = device_of(handle, device); r != nvml::kSuccess) return r;
  NvmlGpu now;
  if (Return r = live_state(*device, now); r != nvml::kSuccess) return r;
  return body(now);
}

Return live_number(Handle handle, NvmlValue value, unsigned int* out) {
  return with_live(handle, [&](const NvmlGpu& gpu) { return put_number(gpu[value], out); });
}

Return live_enum(Handle handle, NvmlValue value, int* out) {
  return with_live(handle, [&](const NvmlGpu& gpu) { return put_number(gpu[value], out); });
}

// nvmlDeviceGet*RunningProcesses: the caller's array holds *count entries of `Entry`.
template <typename Entry>
Return processes(Handle handle, bool graphics, unsigned int* count, Entry* infos) {
  return list_processes(handle, graphics, count, infos != nullptr, [&](unsigned i, const NvmlProcess& p) {
    Entry entry{};
    entry.pid = static_cast<unsigned>(p.owner);
    entry.used_gpu_memory = p.used_memory;
    if constexpr (requires { entry.gpu_instance_id; }) {
      entry.gpu_instance_id = kNoInstance;
      entry.compute_instance_id = kNoInstance;
    }
    infos[i] = entry;
  });
}

// "0000:3b:00.0", "00000000:3B:00.0" or "3b:00.0": NVML takes any of them.
bool parse_bus_id(const char* text, unsigned& domain, unsigned& bus, unsigned& device) {
  unsigned function = 0;
  int used = 0;
  if (std::sscanf(text, "%x:%x:%x.%x%n", &domain, &bus, &device, &function, &used) == 4 && text[used] == '\0')
    return true;
  domain = 0;
  return std::sscanf(text, "%x:%x.%x%n", &bus, &device, &function, &used) == 3 && text[used] == '\0';
}

// nvmlPciInfo_t of either layout: the numbers and the bus id (the legacy form in the older layout).
template <typename Pci>
Return pci_info(Handle handle, Pci* pci) {
  if (pci == nullptr) return nvml::kErrorInvalidArgument;
  return with_facts(handle, [&](const NvmlGpu& gpu) {
    if (gpu[NvmlValue::PciBus].result != nvml::kSuccess) return gpu[NvmlValue::PciBus].result;
    Pci out{};
    if constexpr (std::is_same_v<Pci, nvml::PciInfo>) {
      std::snprintf(out.bus_id_legacy, sizeof out.bus_id_legacy, "%s", gpu[NvmlText::PciBusIdLegacy].text.c_str());
      std::snprintf(out.bus_id, sizeof out.bus_id, "%s", gpu[NvmlText::PciBusId].text.c_str());
    } else {
      std::snprintf(out.bus_id, sizeof out.bus_id, "%s", gpu[NvmlText::PciBusIdLegacy].text.c_str());
    }
    out.domain = static_cast<unsigned>(gpu[NvmlValue::PciDomain].value);
    out.bus = static_cast<unsigned>(gpu[NvmlValue::PciBus].value);
    out.device = static_cast<unsigned>(gpu[NvmlValue::PciDevice].value);
    out.pci_device_id = static_cast<unsigned>(gpu[NvmlValue::PciDeviceId].value);
    out.pci_subsystem_id = static_cast<unsigned>(gpu[NvmlValue::PciSubsystemId].value);
    *pci = out;
    return nvml::kSuccess;
  });
}

Return handle_by_bus_id(const char* text, Handle* handle) {
  unsigned domain = 0, bus = 0, device = 0;
  if (text == nullptr || handle == nullptr || !parse_bus_id(text, domain, bus, device))
    return nvml::kErrorInvalidArgument;
  return device_where(
      [&](const PoolDevice& d) {
        const NvmlGpu& g = d.facts;
        return g[NvmlValue::PciBus].result == nvml::kSuccess && g[NvmlValue::PciDomain].value == domain &&
               g[NvmlValue::PciBus].value == bus && g[NvmlValue::PciDevice].value == device;
      },
      *handle);
}

Return handle_by_text(NvmlText field, const char* text, Handle* handle) {
  if (text == nullptr || handle == nullptr) return nvml::kErrorInvalidArgument;
  return device_where(
      [&](const PoolDevice& d) {
        return d.facts[field].result == nvml::kSuccess && d.facts[field].text == text;
      },
      *handle);
}

Return system_text(NvmlSystemText field, char* buffer, unsigned int length) {
  NvmlSnapshotMsg view;
  if (Return r = system_view(view); r != nvml::kSuccess) return r;
  return put_text(view[field], buffer, length);
}

Return cuda_driver_version(int* version) {
  NvmlSnapshotMsg view;
  if (Return r = system_view(view); r != nvml::kSuccess) return r;
  return put_number(view.cuda_driver_version, version);
}

}  // namespace

// ---- starting and stopping -----------------------------------------------------------------

NVML_EXPORT Return nvmlInit_v2() { return init(0); }
NVML_EXPORT Return nvmlInit() { return init(0); }
NVML_EXPORT Return nvmlInitWithFlags(unsigned int flags) { return init(flags); }
NVML_EXPORT Return nvmlShutdown() { return shutdown(); }

NVML_EXPORT const char* nvmlErrorString(Return result) {
  switch (result) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 5: return "Already Initialized";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 8: return "Insufficient External Power";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 11: return "Interrupt request issue";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 14: return "Corrupted infoROM";
    case 15: return "GPU is lost";
    case 16: return "GPU requires restart";
    case 17: return "The operating system has blocked the request.";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    case 19: return "In use by another client";
    case 20: return "Insufficient Memory";
    case 21: return "No data";
    case 22: return "Requested vgpu operation is not available on target device, because ECC is enabled";
    case 23: return "Insufficient Resources";
    case 24: return "Requested frequency is not supported";
    case 25: return "Argument version mismatch";
    case 26: return "Deprecated";
    case 27: return "Not Ready";
    case 28: return "GPU not found";
    case 29: return "Invalid state";
    default: return "Unknown Error";
  }
}

// ---- the machine ---------------------------------------------------------------------------

NVML_EXPORT Return nvmlSystemGetDriverVersion(char* version, unsigned int length) {
  return system_text(NvmlSystemText::DriverVersion, version, length);
}
NVML_EXPORT Return nvmlSystemGetNVMLVersion(char* version, unsigned int length) {
  return system_text(NvmlSystemText::NvmlVersion, version, length);
}
NVML_EXPORT Return nvmlSystemGetCudaDriverVersion(int* version) { return cuda_driver_version(version); }
NVML_EXPORT Return nvmlSystemGetCudaDriverVersion_v2(int* version) { return cuda_driver_version(version); }

// ---- finding devices -----------------------------------------------------------------------

NVML_EXPORT Return nvmlDeviceGetCount_v2(unsigned int* count) {
  return count == nullptr ? nvml::kErrorInvalidArgument : device_count(*count);
}
NVML_EXPORT Return nvmlDeviceGetCount(unsigned int* count) { return nvmlDeviceGetCount_v2(count); }
NVML_EXPORT Return nvmlDeviceGetHandleByIndex_v2(unsigned int index, Handle* handle) {
  return handle == nullptr ? nvml::kErrorInvalidArgument : device_by_index(index, *handle);
}
NVML_EXPORT Return nvmlDeviceGetHandleByIndex(unsigned int index, Handle* handle) {
  return nvmlDeviceGetHandleByIndex_v2(index, handle);
}
NVML_EXPORT Return nvmlDeviceGetHandleByUUID(const char* uuid, Handle* handle) {
  return handle_by_text(NvmlText::Uuid, uuid, handle);
}
NVML_EXPORT Return nvmlDeviceGetHandleBySerial(const char* serial, Handle* handle) {
  return handle_by_text(NvmlText::Serial, serial, handle);
}
NVML_EXPORT Return nvmlDeviceGetHandleByPciBusId_v2(const char* bus_id, Handle* handle) {
  return handle_by_bus_id(bus_id, handle);
}
NVML_EXPORT Return nvmlDeviceGetHandleByPciBusId(const char* bus_id, Handle* handle) {
  return handle_by_bus_id(bus_id, handle);
}
NVML_EXPORT Return nvmlDeviceGetIndex(Handle handle, unsigned int* index) {
  if (index == nullptr) return nvml::kErrorInvalidArgument;
  const PoolDevice* device = nullptr;
  if (Return r = device_of(handle, device); r != nvml::kSuccess) return r;
  *index = device->index;
  return nvml::kSuccess;
}

// ---- identity ------------------------------------------------------------------------------

NVML_EXPORT Return nvmlDeviceGetName(Handle handle, char* name, unsigned int length) {
  return with_facts(handle, [&](const NvmlGpu& gpu) { return put_text(gpu[NvmlText::Name], name, length); });
}
NVML_EXPORT Return nvmlDeviceGetUUID(Handle handle, char* uuid, unsigned int length) {
  return with_facts(handle, [&](const NvmlGpu& gpu) { return put_text(gpu[NvmlText::Uuid], uuid, length); });
}
NVML_EXPORT Return nvmlDeviceGetSerial(Handle handle, char* serial, unsigned int length) {
  return with_facts(handle, [&](const NvmlGpu& gpu) { return put_text(gpu[NvmlText::Serial], serial, length); });
}
NVML_EXPORT Return nvmlDeviceGetBoardPartNumber(Handle handle, char* part, unsigned int length) {
  return with_facts(handle, [&](const NvmlGpu& gpu) { return put_text(gpu[NvmlText::BoardPartNumber], part, length); });
}
NVML_EXPORT Return nvmlDeviceGetBoardId(Handle handle, unsigned int* id) {
  return with_facts(handle, [&](const NvmlGpu& gpu) { return put_number(gpu[NvmlValue::BoardId], id); });
}
NVML_EXPORT Return nvmlDeviceGetPciInfo_v3(Handle handle, nvml::PciInfo* pci) { return pci_info(handle, pci); }
NVML_EXPORT Return nvmlDeviceGetPciInfo_v2(Handle handle, nvml::PciInfoV1* pci) { return pci_info(handle, pci); }
NVML_EXPORT Return nvmlDeviceGetPciInfo(Handle handle, nvml::PciInfoV1* pci) { return pci_info(handle, pci); }
NVML_EXPORT Return nvmlDeviceGetCudaComputeCapability(Handle handle, int* major, int* minor) {
  if (major == nullptr || minor == nullptr) return nvml::kErrorInvalidArgument;
  return with_facts(handle, [&](const NvmlGpu& gpu) {
    if (Return r = put_number(gpu[NvmlValue::ComputeCapabilityMajor], major); r != nvml::kSuccess) return r;
    return put_number(gpu[NvmlValue::ComputeCapabilityMinor], minor);
  });
}

// ---- memory, utilization, processes ---------------------------------------------------------

NVML_EXPORT Return nvmlDeviceGetMemoryInfo(Handle handle, nvml::Memory* memory) {
  if (memory == nullptr) return nvml::kErrorInvalidArgument;
  return with_live(handle, [&](const NvmlGpu& gpu) {
    for (NvmlValue v : {NvmlValue::MemoryTotal, NvmlValue::MemoryFree, NvmlValue::MemoryUsed})
      if (gpu[v].result != nvml::kSuccess) return gpu[v].result;
    // The first version's "used" includes what the driver reserves.
    const uint64_t reserved = gpu[NvmlValue::MemoryReserved].result == nvml::kSuccess ? gpu[NvmlValue::MemoryReserved].value : 0;
    *memory = nvml::Memory{gpu[NvmlValue::MemoryTotal].value, gpu[NvmlValue::MemoryFree].value,
                           gpu[NvmlValue::MemoryUsed].value + reserved};
    return nvml::kSuccess;
  });
}
NVML_EXPORT Return nvmlDeviceGetMemoryInfo_v2(Handle handle, nvml::MemoryV2* memory) {
  if (memory == nullptr) return nvml::kErrorInvalidArgument;
  if (memory->version != nvml::kMemoryV2Version) return kArgumentVersionMismatch;
  return with_live(handle, [&](const NvmlGpu& gpu) {
    for (NvmlValue v : {NvmlValue::MemoryTotal, NvmlValue::MemoryReserved, NvmlValue::MemoryFree, NvmlValue::MemoryUsed})
      if (gpu[v].result != nvml::kSuccess) return gpu[v].result;
    memory->total = gpu[NvmlValue::MemoryTotal].value;
    memory->reserved = gpu[NvmlValue::MemoryReserved].value;
    memory->free = gpu[NvmlValue::MemoryFree].value;
    memory->used = gpu[NvmlValue::MemoryUsed].value;
    return nvml::kSuccess;
  });
}
NVML_EXPORT Return nvmlDeviceGetUtilizationRates(Handle handle, nvml::Utilization* utilization) {
  if (utilization == nullptr) return nvml::kErrorInvalidArgument;
  return with_live(handle, [&](const NvmlGpu& gpu) {
    unsigned busy = 0, memory = 0;
    if (Return r = put_number(gpu[NvmlValue::UtilizationGpu], &busy); r != nvml::kSuccess) return r;
    if (Return r = put_number(gpu[NvmlValue::UtilizationMemory], &memory); r != nvml::kSuccess) return r;
    *utilization = nvml::Utilization{busy, memory};
    return nvml::kSuccess;
  });
}
NVML_EXPORT Return nvmlDeviceGetComputeRunningProcesses_v3(Handle handle, unsigned int* count, nvml::ProcessInfo* infos) {
  return processes(handle, false, count, infos);
}
NVML_EXPORT Return nvmlDeviceGetComputeRunningProcesses_v2(Handle handle, unsigned int* count, nvml::ProcessInfo* infos) {
  return processes(handle, false, count, infos);
}
NVML_EXPORT Return nvmlDeviceGetComputeRunningProcesses(Handle handle, unsigned int* count, nvml::ProcessInfoV1* infos) {
  return processes(handle, false, count, infos);
}
NVML_EXPORT Return nvmlDeviceGetGraphicsRunningProcesses_v3(Handle handle, unsigned int* count, nvml::ProcessInfo* infos) {
  return processes(handle, true, count, infos);
}
NVML_EXPORT Return nvmlDeviceGetGraphicsRunningProcesses_v2(Handle handle, unsigned int* count, nvml::ProcessInfo* infos) {
  return processes(handle, true, count, infos);
}
NVML_EXPORT Return nvmlDeviceGetGraphicsRunningProcesses(Handle handle, unsigned int* count, nvml::ProcessInfoV1* infos) {
  return processes(handle, true, count, infos);
}

// ---- clocks, sensors, modes ----------------------------------------------------------------

NVML_EXPORT Return nvmlDeviceGetClockInfo(Handle handle, int type, unsigned int* clock) {
  if (type < 0 || static_cast<unsigned>(type) >= nvml::kClockTypes) return nvml::kErrorInvalidArgument;
  return live_number(handle, static_cast<NvmlValue>(static_cast<unsigned>(NvmlValue::ClockGraphics) + type), clock);
}
NVML_EXPORT Return nvmlDeviceGetMaxClockInfo(Handle handle, int type, unsigned int* clock) {
  if (type < 0 || static_cast<unsigned>(type) >= nvml::kClockTypes) return nvml::kErrorInvalidArgument;
  return live_number(handle, static_cast<NvmlValue>(static_cast<unsigned>(NvmlValue::MaxClockGraphics) + type), clock);
}
NVML_EXPORT Return nvmlDeviceGetTemperature(Handle handle, int sensor, unsigned int* temperature) {
  if (sensor != 0) return nvml::kErrorInvalidArgument;  // NVML_TEMPERATURE_GPU is the only sensor
  return live_number(handle, NvmlValue::Temperature, temperature);
}
NVML_EXPORT Return nvmlDeviceGetPowerUsage(Handle handle, unsigned int* milliwatts) {
  return live_number(handle, NvmlValue::PowerUsage, milliwatts);
}
NVML_EXPORT Return nvmlDeviceGetPowerManagementLimit(Handle handle, unsigned int* milliwatts) {
  return live_number(handle, NvmlValue::PowerLimit, milliwatts);
}
NVML_EXPORT Return nvmlDeviceGetEnforcedPowerLimit(Handle handle, unsigned int* milliwatts) {
  return live_number(handle, NvmlValue::EnforcedPowerLimit, milliwatts);
}
NVML_EXPORT Return nvmlDeviceGetFanSpeed(Handle handle, unsigned int* percent) {
  return live_number(handle, NvmlValue::FanSpeed, percent);
}
NVML_EXPORT Return nvmlDeviceGetPerformanceState(Handle handle, int* state) {
  return live_enum(handle, NvmlValue::PerformanceState, state);
}
NVML_EXPORT Return nvmlDeviceGetPowerState(Handle handle, int* state) {  // the deprecated name of the above
  return live_enum(handle, NvmlValue::PerformanceState, state);
}
NVML_EXPORT Return nvmlDeviceGetComputeMode(Handle handle, int* mode) {
  return live_enum(handle, NvmlValue::ComputeMode, mode);
}
NVML_EXPORT Return nvmlDeviceGetPersistenceMode(Handle handle, int* mode) {
  return live_enum(handle, NvmlValue::PersistenceMode, mode);
}
NVML_EXPORT Return nvmlDeviceGetDisplayActive(Handle handle, int* active) {
  return live_enum(handle, NvmlValue::DisplayActive, active);
}
NVML_EXPORT Return nvmlDeviceGetDisplayMode(Handle handle, int* mode) {
  return live_enum(handle, NvmlValue::DisplayMode, mode);
}
NVML_EXPORT Return nvmlDeviceGetMigMode(Handle handle, unsigned int* current, unsigned int* pending) {
  if (current == nullptr || pending == nullptr) return nvml::kErrorInvalidArgument;
  return with_live(handle, [&](const NvmlGpu& gpu) {
    if (Return r = put_number(gpu[NvmlValue::MigModeCurrent], current); r != nvml::kSuccess) return r;
    return put_number(gpu[NvmlValue::MigModePending], pending);
  });
}
