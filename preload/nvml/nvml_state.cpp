#include "nvml_state.hpp"

#include <chrono>
#include <deque>
#include <mutex>
#include <set>

#include "log.hpp"
#include "nvml_link.hpp"

namespace rgpu::nvml_client {

namespace {
// The daemon keeps its view for a second; asking more often than this brings nothing new.
constexpr auto kRefresh = std::chrono::milliseconds(500);

struct State {
  unsigned init_count = 0;
  size_t device_count = 0;
  std::deque<PoolDevice> devices;  // never shrinks: a handle is a Device's address
  NvmlSnapshotMsg init_view;
  NvmlSnapshotMsg view;
  std::chrono::steady_clock::time_point taken;
  std::set<std::string> logged;
};
std::mutex g_mutex;
State& state() {
  static auto* value = new State;  // never destroyed: a library's exit handler may still call in
  return *value;
}

void log_once(State& s, const std::string& text) {
  if (s.logged.insert(text).second) LOG_WARN("%s", text.c_str());
}

std::once_flag g_logging;
void start_logging() {
  std::call_once(g_logging, [] {
    set_log_component("rgpu nvml");
    init_logging_from_env();
  });
}
}  // namespace

Return init(unsigned int flags) {
  start_logging();
  if ((flags & ~(nvml::kInitFlagNoGpus | nvml::kInitFlagNoAttach)) != 0) return nvml::kErrorInvalidArgument;
  std::lock_guard lock(g_mutex);
  State& s = state();
  if (s.init_count > 0) {
    ++s.init_count;
    return nvml::kSuccess;
  }
  std::string error;
  auto view = ask_daemon(error);
  if (!view) {
    LOG_ERROR("NVML cannot start: %s", error.c_str());
    return nvml::kErrorDriverNotLoaded;
  }
  s.device_count = view->gpus.size();
  for (size_t i = 0; i < view->gpus.size(); ++i) {
    if (i == s.devices.size()) s.devices.emplace_back();
    s.devices[i].index = static_cast<uint32_t>(i);
    s.devices[i].facts = view->gpus[i];
  }
  s.init_view = *view;
  s.view = std::move(*view);
  s.taken = std::chrono::steady_clock::now();
  s.init_count = 1;
  return nvml::kSuccess;
}

Return shutdown() {
  std::lock_guard lock(g_mutex);
  State& s = state();
  if (s.init_count == 0) return nvml::kErrorUninitialized;
  --s.init_count;
  return nvml::kSuccess;
}

Return device_count(unsigned int& count) {
  std::lock_guard lock(g_mutex);
  if (state().init_count == 0) return nvml::kErrorUninitialized;
  count = static_cast<unsigned>(state().device_count);
  return nvml::kSuccess;
}

Return device_by_index(unsigned int index, nvml::Device& handle) {
  std::lock_guard lock(g_mutex);
  State& s = state();
  if (s.init_count == 0) return nvml::kErrorUninitialized;
  if (index >= s.device_count) return nvml::kErrorInvalidArgument;
  handle = reinterpret_cast<nvml::Device>(&s.devices[index]);
  return nvml::kSuccess;
}

Return find_device(bool (*match)(const PoolDevice&, const void*), const void* context, nvml::Device& handle) {
  std::lock_guard lock(g_mutex);
  State& s = state();
  if (s.init_count == 0) return nvml::kErrorUninitialized;
  for (size_t i = 0; i < s.device_count; ++i)
    if (match(s.devices[i], context)) {
      handle = reinterpret_cast<nvml::Device>(&s.devices[i]);
      return nvml::kSuccess;
    }
  return nvml::kErrorNotFound;
}

Return device_of(nvml::Device handle, const PoolDevice*& device) {
  std::lock_guard lock(g_mutex);
  State& s = state();
  if (s.init_count == 0) return nvml::kErrorUninitialized;
  for (size_t i = 0; i < s.device_count; ++i)
    if (reinterpret_cast<nvml::Device>(&s.devices[i]) == handle) {
      device = &s.devices[i];
      return nvml::kSuccess;
    }
  return nvml::kErrorInvalidArgument;
}

Return live_state(const PoolDevice& device, NvmlGpu& now) {
  std::lock_guard lock(g_mutex);
  State& s = state();
  if (s.init_count == 0) return nvml::kErrorUninitialized;
  if (std::chrono::steady_clock::now() - s.taken >= kRefresh) {
    std::string error;
    auto view = ask_daemon(error);
    if (!view) {
      log_once(s, "NVML cannot read the GPUs' state: " + error);
      return nvml::kErrorUnknown;
    }
    s.view = std::move(*view);
    s.taken = std::chrono::steady_clock::now();
  }
  const std::string& uuid = device.facts[NvmlText::Uuid].text;
  for (const NvmlGpu& gpu : s.view.gpus)
    if (gpu[NvmlText::Uuid].text == uuid) {
      now = gpu;
      return nvml::kSuccess;
    }
  log_once(s, "NVML: GPU " + uuid + " is no longer reported by its server");
  return nvml::kErrorGpuIsLost;
}

Return list_processes(nvml::Device handle, bool graphics, unsigned int* count, bool have_room,
                      const std::function<void(unsigned, const NvmlProcess&)>& put) {
  if (count == nullptr) return nvml::kErrorInvalidArgument;
  const PoolDevice* device = nullptr;
  if (Return r = device_of(handle, device); r != nvml::kSuccess) return r;
  NvmlGpu now;
  if (Return r = live_state(*device, now); r != nvml::kSuccess) return r;
  unsigned n = 0;
  for (const NvmlProcess& p : now.processes) n += p.graphics == graphics ? 1 : 0;
  if (n > *count || (n > 0 && !have_room)) {
    *count = n;
    return nvml::kErrorInsufficientSize;
  }
  unsigned i = 0;
  for (const NvmlProcess& p : now.processes)
    if (p.graphics == graphics) put(i++, p);
  *count = n;
  return nvml::kSuccess;
}

Return system_view(NvmlSnapshotMsg& view) {
  std::lock_guard lock(g_mutex);
  State& s = state();
  if (s.init_count == 0) return nvml::kErrorUninitialized;
  view = s.init_view;
  return nvml::kSuccess;
}

Return not_supported(const char* name) {
  start_logging();
  std::lock_guard lock(g_mutex);
  log_once(state(), std::string(name) + " is not supported by RGPU; returning NVML_ERROR_NOT_SUPPORTED");
  return nvml::kErrorNotSupported;
}

}  // namespace rgpu::nvml_client
