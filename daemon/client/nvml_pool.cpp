#include "nvml_pool.hpp"

#include <algorithm>
#include <chrono>

#include "session.hpp"

namespace rgpu::client {

namespace {
// A server that does not answer within this holds up every NVML question of the daemon's users.
constexpr auto kNvmlTimeout = std::chrono::seconds(3);
}  // namespace

std::vector<ServerNvml> fetch_nvml(const std::vector<ServerTarget>& targets, const Pool& pool,
                                   const SessionOwners& owners) {
  std::vector<ServerNvml> answers;
  for (const PoolGpu& gpu : pool.gpus) {
    if (std::any_of(answers.begin(), answers.end(), [&](const ServerNvml& a) { return a.server == gpu.server; }))
      continue;
    ServerNvml answer;
    answer.server = gpu.server;
    std::vector<uint64_t> keys;
    for (const auto& [owner, pid] : owners)
      if (owner.first == gpu.server) keys.push_back(owner.second);
    try {
      SessionOptions options = targets[gpu.server].session_options("rgpu client (NVML)");
      options.timeout = kNvmlTimeout;
      answer.snapshot = Session::connect(options)->nvml_snapshot(std::move(keys));
      answer.answered = true;
    } catch (const std::exception& e) {
      answer.error = "server " + targets[gpu.server].address.to_string() + ": " + e.what();
    }
    answers.push_back(std::move(answer));
  }
  return answers;
}

NvmlSnapshotMsg pool_nvml_view(const Pool& pool, const std::vector<ServerNvml>& answers, const SessionOwners& owners) {
  NvmlSnapshotMsg view;
  bool system_taken = false;
  for (const ServerNvml& answer : answers) {
    if (!answer.answered || system_taken) continue;
    view.system = answer.snapshot.system;
    view.cuda_driver_version = answer.snapshot.cuda_driver_version;
    system_taken = true;
  }
  for (size_t position = 0; position < pool.gpus.size(); ++position) {
    const PoolGpu& pooled = pool.gpus[position];
    auto answer = std::find_if(answers.begin(), answers.end(),
                               [&](const ServerNvml& a) { return a.answered && a.server == pooled.server; });
    if (answer == answers.end()) continue;
    const auto& gpus = answer->snapshot.gpus;
    auto gpu = std::find_if(gpus.begin(), gpus.end(), [&](const NvmlGpu& g) { return g.gpu_index == pooled.info.index; });
    if (gpu == gpus.end()) continue;
    NvmlGpu shown = *gpu;
    shown.gpu_index = static_cast<uint32_t>(position);
    shown.processes.clear();
    for (const NvmlProcess& process : gpu->processes)
      if (auto owner = owners.find({pooled.server, process.owner}); owner != owners.end())
        shown.processes.push_back(NvmlProcess{owner->second, process.used_memory, process.graphics});
    view.gpus.push_back(std::move(shown));
  }
  return view;
}

}  // namespace rgpu::client
