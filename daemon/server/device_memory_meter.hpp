// How much device memory this worker process holds on its session's GPUs, as the driver's
// management library (NVML: libnvidia-ml.so.1, or $RGPU_NVML_LIBRARY) reports it. It covers what
// no allocation call names: module code and globals, lazily loaded kernels, local memory.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nvml_library.hpp"

namespace rgpu {

class DeviceMemoryMeter {
 public:
  // Loads and starts the library now (it takes tens of milliseconds): a spare worker does it
  // before any session waits. Safe to call more than once.
  static void prepare();
  // Loads the library; a meter that could not be made reads nothing and says why.
  explicit DeviceMemoryMeter(const std::vector<std::array<uint8_t, 16>>& gpu_uuids);
  bool available() const { return available_; }
  const std::string& problem() const { return problem_; }
  // Bytes this process holds on all the GPUs together; nullopt when the library cannot tell.
  std::optional<uint64_t> process_bytes() const;

 private:
  bool available_ = false;
  std::string problem_;
  nvml::GetComputeRunningProcessesFn processes_ = nullptr;
  std::vector<nvml::Device> devices_;
};

// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as CUDA_VISIBLE_DEVICES and NVML write a UUID.
std::string gpu_uuid_text(const std::array<uint8_t, 16>& uuid);

// NVML names processes by their ids in the initial PID namespace; inside another (a container)
// this process's ids are not the ones NVML reports.
bool in_initial_pid_namespace();

}  // namespace rgpu
