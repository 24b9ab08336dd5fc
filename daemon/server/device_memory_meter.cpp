#include "device_memory_meter.hpp"

#include <unistd.h>

#include <fstream>
#include <sstream>

namespace rgpu {

std::string gpu_uuid_text(const std::array<uint8_t, 16>& uuid) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "GPU-";
  for (size_t i = 0; i < uuid.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[uuid[i] >> 4];
    out += kHex[uuid[i] & 15];
  }
  return out;
}

void DeviceMemoryMeter::prepare() { nvml::Library::get(); }

bool in_initial_pid_namespace() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("NSpid:", 0) != 0) continue;
    std::istringstream ids(line.substr(6));
    size_t count = 0;
    for (long id = 0; ids >> id;) ++count;
    return count <= 1;  // one id per namespace level this process is in
  }
  return true;  // no NSpid line: a kernel without PID namespaces
}

DeviceMemoryMeter::DeviceMemoryMeter(const std::vector<std::array<uint8_t, 16>>& gpu_uuids) {
  if (!in_initial_pid_namespace()) {
    problem_ = "the server runs in a PID namespace of its own, so NVML's process ids are not its own";
    return;
  }
  const nvml::Library& nvml = nvml::Library::get();
  if (!nvml.problem().empty()) {
    problem_ = nvml.problem();
    return;
  }
  auto by_uuid = nvml.symbol<nvml::DeviceGetHandleByUuidFn>("nvmlDeviceGetHandleByUUID");
  processes_ = nvml.symbol<nvml::GetComputeRunningProcessesFn>("nvmlDeviceGetComputeRunningProcesses_v3");
  if (by_uuid == nullptr || processes_ == nullptr) {
    problem_ = "the NVML library lacks nvmlDeviceGetHandleByUUID or nvmlDeviceGetComputeRunningProcesses_v3";
    return;
  }
  for (const auto& uuid : gpu_uuids) {
    nvml::Device device = nullptr;
    if (nvml::Return r = by_uuid(gpu_uuid_text(uuid).c_str(), &device); r != nvml::kSuccess) {
      problem_ = "NVML does not know GPU " + gpu_uuid_text(uuid) + " (NVML error " + std::to_string(r) + ")";
      return;
    }
    devices_.push_back(device);
  }
  available_ = true;
}

std::optional<uint64_t> DeviceMemoryMeter::process_bytes() const {
  if (!available_) return std::nullopt;
  const auto pid = static_cast<unsigned int>(::getpid());
  uint64_t total = 0;
  for (nvml::Device device : devices_) {
    std::vector<nvml::ProcessInfo> infos(64);
    for (;;) {
      auto count = static_cast<unsigned int>(infos.size());
      const nvml::Return r = processes_(device, &count, infos.data());
      if (r == nvml::kErrorInsufficientSize && count > infos.size()) {
        infos.resize(count + 16);
        continue;
      }
      if (r != nvml::kSuccess) return std::nullopt;
      infos.resize(count);
      break;
    }
    for (const auto& info : infos)
      if (info.pid == pid) {
        if (info.used_gpu_memory == ~0ull) return std::nullopt;
        total += info.used_gpu_memory;
      }
  }
  return total;
}

}  // namespace rgpu
