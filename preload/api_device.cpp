// Initialisation and devices: answered locally from facts fetched once.
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>

#include "api_state.hpp"
#include "cuda_client.hpp"
#include "daemon_link.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
std::atomic<bool> g_initialized{false};
std::mutex g_facts_mutex;
std::map<CUdevice, std::unique_ptr<DeviceFacts>>& facts_cache() {
  static auto* value = new std::map<CUdevice, std::unique_ptr<DeviceFacts>>;  // never destroyed: see api_state.hpp
  return *value;
}
const std::vector<GpuInfo> kNoDevices;

std::once_flag g_logging_once;
void init_logging() {
  std::call_once(g_logging_once, [] {
    set_log_component("rgpu cuda");
    init_logging_from_env();
  });
}

bool valid(CUdevice device) { return device >= 0 && static_cast<size_t>(device) < devices().size(); }
}  // namespace

bool initialized() { return g_initialized.load(std::memory_order_acquire); }

const std::vector<GpuInfo>& devices() {
  if (!initialized()) return kNoDevices;
  return process_session().devices;
}

namespace {
// What the GPU can do with this machine's memory, which is not the server's: host and device copies
// of managed and mapped memory meet at synchronisations (shared_memory.hpp), as on a device without
// concurrent managed access; the GPU cannot reach pageable or registered memory here, nor make
// atomics on this host's memory atomic.
void describe_remote_host(DeviceFacts& facts) {
  const std::pair<CUdevice_attribute, int> kRemoteHost[] = {
      {CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY, 1},
      {CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS, 0},
      {CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS, 0},
      {CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES, 0},
      {CU_DEVICE_ATTRIBUTE_DIRECT_MANAGED_MEM_ACCESS_FROM_HOST, 0},
      {CU_DEVICE_ATTRIBUTE_HOST_NATIVE_ATOMIC_SUPPORTED, 0},
      {CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM, 0},
  };
  for (auto [attribute, value] : kRemoteHost) {
    const size_t index = static_cast<size_t>(attribute) - 1;
    if (index < facts.attributes.size() && facts.attributes[index].second == CUDA_SUCCESS)
      facts.attributes[index].first = value;
  }
}
}  // namespace

const DeviceFacts* device_facts(CUdevice device, CUresult* error) {
  if (!valid(device)) {
    if (error) *error = CUDA_ERROR_INVALID_DEVICE;
    return nullptr;
  }
  std::lock_guard lock(g_facts_mutex);
  auto& slot = facts_cache()[device];
  if (slot) return slot.get();
  auto facts = std::make_unique<DeviceFacts>();
  CallBuilder call(FN_rgpuDeviceInfo);
  call.in(static_cast<uint64_t>(device));
  CUresult r = exchange(call, [&](WireReader& reader) {
    facts->name = reader.str();
    facts->total_memory = reader.get<uint64_t>();
    auto uuid = reader.bytes(sizeof facts->uuid.bytes);
    std::memcpy(facts->uuid.bytes, uuid.data(), uuid.size());
    facts->pci_bus_id = reader.str();
    const uint32_t count = reader.get<uint32_t>();
    if (count > 4096) throw WireError("device info: too many attributes");
    for (uint32_t i = 0; i < count; ++i) {
      const int32_t value = reader.get<int32_t>();
      const auto result = static_cast<CUresult>(reader.get<int32_t>());
      facts->attributes.emplace_back(value, result);
    }
  }, nullptr);
  if (r != CUDA_SUCCESS) {
    if (error) *error = r;
    facts_cache().erase(device);
    return nullptr;
  }
  describe_remote_host(*facts);
  slot = std::move(facts);
  return slot.get();
}

int server_driver_version() {
  for (const auto& gpu : process_session().devices) {
    int major = 0, minor = 0;
    if (std::sscanf(gpu.driver.c_str(), "CUDA driver %d.%d", &major, &minor) == 2) return major * 1000 + minor * 10;
  }
  return CUDA_VERSION;
}

}  // namespace rgpu::cuda

using namespace rgpu::cuda;
using rgpu::WireReader;

RGPU_EXPORT CUresult cuInit(unsigned int flags) {
  init_logging();
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  const rgpu::cuda::ProcessSession& session = process_session();
  if (!session.connected) return CUDA_ERROR_NO_DEVICE;
  if (session.devices.empty()) {
    LOG_WARN("the RGPU client daemon offers no CUDA GPU to this process");
    return CUDA_ERROR_NO_DEVICE;
  }
  g_initialized.store(true, std::memory_order_release);
  LOG_DEBUG("%zu GPU(s) on %s", session.devices.size(), session.server.c_str());
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuDriverGetVersion(int* version) {
  init_logging();
  if (version == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const rgpu::cuda::ProcessSession& session = process_session();
  // Without a server, answer what this library was built for (the real driver answers too).
  *version = session.connected ? std::min(server_driver_version(), CUDA_VERSION) : CUDA_VERSION;
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuDeviceGetCount(int* count) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *count = static_cast<int>(devices().size());
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (ordinal < 0 || static_cast<size_t>(ordinal) >= devices().size()) return CUDA_ERROR_INVALID_DEVICE;
  *device = ordinal;
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuDeviceGetName(char* name, int length, CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (name == nullptr || length <= 0) return CUDA_ERROR_INVALID_VALUE;
  CUresult error = CUDA_SUCCESS;
  const DeviceFacts* facts = device_facts(device, &error);
  if (!facts) return error;
  std::snprintf(name, static_cast<size_t>(length), "%s", facts->name.c_str());
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUresult error = CUDA_SUCCESS;
  const DeviceFacts* facts = device_facts(device, &error);
  if (!facts) return error;
  *bytes = facts->total_memory;
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuDeviceTotalMem(unsigned int* bytes, CUdevice device) {
  size_t total = 0;
  CUresult r = cuDeviceTotalMem_v2(&total, device);
  if (r == CUDA_SUCCESS && bytes) *bytes = static_cast<unsigned int>(std::min<size_t>(total, 0xffffffffu));
  return r;
}

RGPU_EXPORT CUresult cuDeviceGetAttribute(int* value, CUdevice_attribute attribute, CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUresult error = CUDA_SUCCESS;
  const DeviceFacts* facts = device_facts(device, &error);
  if (!facts) return error;
  const int index = static_cast<int>(attribute) - 1;
  if (index < 0 || static_cast<size_t>(index) >= facts->attributes.size()) return CUDA_ERROR_INVALID_VALUE;
  const auto& [attr_value, result] = facts->attributes[static_cast<size_t>(index)];
  if (result == CUDA_SUCCESS) *value = attr_value;
  return result;
}

RGPU_EXPORT CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (uuid == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUresult error = CUDA_SUCCESS;
  const DeviceFacts* facts = device_facts(device, &error);
  if (!facts) return error;
  *uuid = facts->uuid;
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuDeviceGetUuid(CUuuid* uuid, CUdevice device) { return cuDeviceGetUuid_v2(uuid, device); }

RGPU_EXPORT CUresult cuDeviceGetPCIBusId(char* bus_id, int length, CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (bus_id == nullptr || length <= 0) return CUDA_ERROR_INVALID_VALUE;
  CUresult error = CUDA_SUCCESS;
  const DeviceFacts* facts = device_facts(device, &error);
  if (!facts) return error;
  std::snprintf(bus_id, static_cast<size_t>(length), "%s", facts->pci_bus_id.c_str());
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuDeviceGetByPCIBusId(CUdevice* device, const char* bus_id) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (device == nullptr || bus_id == nullptr) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < devices().size(); ++i) {
    const DeviceFacts* facts = device_facts(static_cast<CUdevice>(i));
    if (facts && strcasecmp(facts->pci_bus_id.c_str(), bus_id) == 0) {
      *device = static_cast<CUdevice>(i);
      return CUDA_SUCCESS;
    }
  }
  return CUDA_ERROR_INVALID_DEVICE;
}

RGPU_EXPORT CUresult cuDeviceComputeCapability(int* major, int* minor, CUdevice device) {
  if (major == nullptr || minor == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = cuDeviceGetAttribute(major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device); r != CUDA_SUCCESS)
    return r;
  return cuDeviceGetAttribute(minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device);
}

RGPU_EXPORT CUresult cuDeviceGetProperties(CUdevprop* prop, CUdevice device) {
  if (prop == nullptr) return CUDA_ERROR_INVALID_VALUE;
  struct {
    int* field;
    CUdevice_attribute attribute;
  } const map[] = {
      {&prop->maxThreadsPerBlock, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK},
      {&prop->maxThreadsDim[0], CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X},
      {&prop->maxThreadsDim[1], CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y},
      {&prop->maxThreadsDim[2], CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z},
      {&prop->maxGridSize[0], CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X},
      {&prop->maxGridSize[1], CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y},
      {&prop->maxGridSize[2], CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z},
      {&prop->sharedMemPerBlock, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK},
      {&prop->totalConstantMemory, CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY},
      {&prop->SIMDWidth, CU_DEVICE_ATTRIBUTE_WARP_SIZE},
      {&prop->memPitch, CU_DEVICE_ATTRIBUTE_MAX_PITCH},
      {&prop->regsPerBlock, CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK},
      {&prop->clockRate, CU_DEVICE_ATTRIBUTE_CLOCK_RATE},
      {&prop->textureAlign, CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT},
  };
  for (const auto& entry : map)
    if (CUresult r = cuDeviceGetAttribute(entry.field, entry.attribute, device); r != CUDA_SUCCESS) return r;
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuDeviceGetLuid(char*, unsigned int*, CUdevice) {
  return not_supported("cuDeviceGetLuid");  // a Windows adapter id; there is none on Linux either
}

// Lets a process that dlopens "libcuda.so.1" tell this library from NVIDIA's driver (rgpu server
// refuses to run on it).
RGPU_EXPORT const char rgpu_cuda_interpose_identity[] = "RGPU CUDA interpose library";
