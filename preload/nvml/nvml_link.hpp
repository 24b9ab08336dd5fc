// RGPU's libnvidia-ml.so.1 asks the client daemon for the pool's NVML view: one unix connection
// per process, one NvmlQuery -> NvmlSnapshot exchange per question.
#pragma once

#include <optional>
#include <string>

#include "nvml_snapshot.hpp"

namespace rgpu::nvml_client {

// The pool as NVML sees it now, or nullopt with `error` saying why not (daemon unreachable, no
// server answered, a malformed answer). Thread-safe; reconnects once when the connection broke.
std::optional<NvmlSnapshotMsg> ask_daemon(std::string& error);

}  // namespace rgpu::nvml_client
