// Reads what NVML says about this server's GPUs now, for the pool's libnvidia-ml.so.1 on client
// machines: facts, memory, utilization, clocks, sensors, and every process's memory on each GPU
// (owner = the pid NVML reports; the caller decides whom to show which). Blocking: tens of
// milliseconds per GPU, off the event loop.
#pragma once

#include <string>
#include <vector>

#include "messages.hpp"
#include "nvml_snapshot.hpp"

namespace rgpu {

struct NvmlReading {
  NvmlSnapshotMsg snapshot;  // GPUs NVML knows, by their server index; others left out
  std::string problem;       // why NVML could not be read at all, or why a GPU is missing (for the log)
  // NVML's process ids are this process's own (false inside a PID namespace of its own: then no
  // process is reported, since none could be matched to a worker safely).
  bool pids_are_ours = true;
};

NvmlReading read_nvml(const std::vector<GpuInfo>& gpus);

}  // namespace rgpu
