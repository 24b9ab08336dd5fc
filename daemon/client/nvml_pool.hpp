// The client daemon's NVML view of its pool: each server's NVML reading (asked with this daemon's
// own session keys, so that a server shows only their processes), put in pool order with each
// process named by its application's local pid.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nvml_snapshot.hpp"
#include "pool.hpp"

namespace rgpu::client {

struct ServerNvml {
  size_t server = 0;  // index into the targets
  bool answered = false;
  NvmlSnapshotMsg snapshot;  // processes named by session key
  std::string error;         // when not answered
};

// (server, session key) -> the application's pid.
using SessionOwners = std::map<std::pair<size_t, uint64_t>, uint32_t>;

// Asks each server that holds GPUs of the pool, one after another (blocking; each within
// `options.timeout`), with the keys of this daemon's sessions on it.
std::vector<ServerNvml> fetch_nvml(const std::vector<ServerTarget>& targets, const Pool& pool,
                                   const SessionOwners& owners);

// The pool's GPUs that their server's NVML knows, in pool order (gpu_index: the GPU's place in the
// pool), processes named by pid (those of unknown sessions left out); the machine-wide texts
// from the first server that answered.
NvmlSnapshotMsg pool_nvml_view(const Pool& pool, const std::vector<ServerNvml>& answers, const SessionOwners& owners);

}  // namespace rgpu::client
