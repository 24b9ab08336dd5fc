// The state of RGPU's libnvidia-ml.so.1: whether nvmlInit has run (and how often), the devices it
// found (handles stay valid for the process's life), and the pool's NVML view, asked of the client
// daemon again once it is older than half a second.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "nvml_abi.hpp"
#include "nvml_snapshot.hpp"

namespace rgpu::nvml_client {

using nvml::Return;

struct PoolDevice {
  uint32_t index = 0;  // NVML's index: the place among the pool's GPUs NVML knows
  NvmlGpu facts;       // as nvmlInit found it: name, UUID, PCI and board ids never change
};

Return init(unsigned int flags);
Return shutdown();
Return device_count(unsigned int& count);
Return device_by_index(unsigned int index, nvml::Device& handle);
// The first device for which `match` holds (INVALID_ARGUMENT when `match` never does: NOT_FOUND).
template <typename Match>
Return device_where(Match match, nvml::Device& handle);
// The device behind a handle: UNINITIALIZED before nvmlInit, INVALID_ARGUMENT for a handle that
// is not one of ours.
Return device_of(nvml::Device handle, const PoolDevice*& device);
// The device's state now (memory, utilization, sensors, processes): GPU_IS_LOST when its server no
// longer reports it, UNKNOWN when the daemon cannot be asked (logged once).
Return live_state(const PoolDevice& device, NvmlGpu& now);
// The device's compute (or graphics) processes now into the caller's room: `count` holds the room
// and comes back as the number of processes; `put(index, process)` fills each. INSUFFICIENT_SIZE
// (with the number in `count`, nothing put) when they do not fit or there is no room to put them.
Return list_processes(nvml::Device handle, bool graphics, unsigned int* count, bool have_room,
                      const std::function<void(unsigned index, const NvmlProcess& process)>& put);
// The machine-wide view nvmlInit found (driver and NVML versions, CUDA driver version).
Return system_view(NvmlSnapshotMsg& view);
// Logs `name` once: an entry point RGPU does not answer.
Return not_supported(const char* name);

// For device_where.
Return find_device(bool (*match)(const PoolDevice&, const void*), const void* context, nvml::Device& handle);
template <typename Match>
Return device_where(Match match, nvml::Device& handle) {
  return find_device([](const PoolDevice& d, const void* m) { return (*static_cast<const Match*>(m))(d); }, &match, handle);
}

}  // namespace rgpu::nvml_client
