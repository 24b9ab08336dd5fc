// What NVIDIA's management library (NVML) says about GPUs, as it crosses the wire: a server reads
// it for its GPUs (NvmlQuery -> NvmlSnapshot, on a control connection), the client daemon passes
// the pool's GPUs on to RGPU's libnvidia-ml.so.1 (the same message on the application socket).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace rgpu {

// Server control connection: u32 n, n × u64 session key (the asker's own sessions, whose
// processes it may see) -> NvmlSnapshot, processes named by those keys.
inline constexpr uint16_t kMsgNvmlQuery = 0x0F8;
inline constexpr uint16_t kMsgNvmlSnapshot = 0x0F9;
// Application socket: the first (and every later) frame of an NVML connection, empty -> the
// pool's NvmlSnapshot, processes named by their local pid.
inline constexpr uint16_t kMsgAppNvmlQuery = 0x35;
inline constexpr uint16_t kMsgAppNvmlSnapshot = 0x36;

// Numbers NVML answers per GPU, each with NVML's own result (nvmlReturn_t) for it.
enum class NvmlValue : uint32_t {
  BoardId, PciDomain, PciBus, PciDevice, PciDeviceId, PciSubsystemId,
  MemoryTotal, MemoryReserved, MemoryFree, MemoryUsed,
  UtilizationGpu, UtilizationMemory,
  ClockGraphics, ClockSm, ClockMemory, ClockVideo,
  MaxClockGraphics, MaxClockSm, MaxClockMemory, MaxClockVideo,
  Temperature, PowerUsage, PowerLimit, EnforcedPowerLimit, FanSpeed, PerformanceState, ComputeMode,
  ComputeCapabilityMajor, ComputeCapabilityMinor, PersistenceMode, DisplayActive, DisplayMode,
  MigModeCurrent, MigModePending,
  Count
};
// Texts NVML answers per GPU.
enum class NvmlText : uint32_t { Name, Uuid, Serial, BoardPartNumber, PciBusId, PciBusIdLegacy, Count };
// What NVML answers about the whole machine.
enum class NvmlSystemText : uint32_t { DriverVersion, NvmlVersion, Count };

struct NvmlNumber {
  int32_t result = 3;  // NVML_ERROR_NOT_SUPPORTED until read
  uint64_t value = 0;
};
struct NvmlString {
  int32_t result = 3;
  std::string text;
};

struct NvmlProcess {
  // Server -> daemon: the session key of the worker holding the memory. Daemon -> application:
  // the application's pid.
  uint64_t owner = 0;
  uint64_t used_memory = ~0ull;  // ~0: NVML cannot tell
  bool graphics = false;         // from NVML's graphics process list, else its compute list
};

struct NvmlGpu {
  uint32_t gpu_index = 0;  // the server's index (GpuInfo::index); daemon -> application: the pool's
  std::array<NvmlNumber, static_cast<size_t>(NvmlValue::Count)> values{};
  std::array<NvmlString, static_cast<size_t>(NvmlText::Count)> texts{};
  std::vector<NvmlProcess> processes;

  NvmlNumber& operator[](NvmlValue v) { return values[static_cast<size_t>(v)]; }
  const NvmlNumber& operator[](NvmlValue v) const { return values[static_cast<size_t>(v)]; }
  NvmlString& operator[](NvmlText t) { return texts[static_cast<size_t>(t)]; }
  const NvmlString& operator[](NvmlText t) const { return texts[static_cast<size_t>(t)]; }
};

struct NvmlSnapshotMsg {
  std::array<NvmlString, static_cast<size_t>(NvmlSystemText::Count)> system{};
  NvmlNumber cuda_driver_version;  // nvmlSystemGetCudaDriverVersion_v2
  std::vector<NvmlGpu> gpus;

  NvmlString& operator[](NvmlSystemText t) { return system[static_cast<size_t>(t)]; }
  const NvmlString& operator[](NvmlSystemText t) const { return system[static_cast<size_t>(t)]; }
};

struct NvmlQueryMsg {
  std::vector<uint64_t> session_keys;
};

inline constexpr uint32_t kMaxNvmlGpus = 1024;
inline constexpr uint32_t kMaxNvmlProcesses = 4096;  // per GPU
inline constexpr uint32_t kMaxNvmlQueryKeys = 4096;

std::vector<uint8_t> encode(const NvmlSnapshotMsg&);
std::vector<uint8_t> encode(const NvmlQueryMsg&);
// Each throws WireError naming the field that did not fit. Values and texts the sender knows
// beyond this build's are skipped; ones it does not send stay NVML_ERROR_NOT_SUPPORTED.
NvmlSnapshotMsg decode_nvml_snapshot(std::span<const uint8_t>);
NvmlQueryMsg decode_nvml_query(std::span<const uint8_t>);

}  // namespace rgpu
