#include "cuda_probe.hpp"

#include <cuda.h>
#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <mutex>
#include <optional>

namespace rgpu {

namespace {

constexpr const char* kDefaultCudaLibrary = "libcuda.so.1";

// The driver entry points discovery needs. The types come from cuda.h, where some names are macros
// for their versioned symbols (cuDeviceTotalMem is cuDeviceTotalMem_v2, cuDeviceGetUuid is
// cuDeviceGetUuid_v2): dlsym gets the versioned names spelled out.
struct CudaApi {
  decltype(&::cuInit) init = nullptr;
  decltype(&::cuDriverGetVersion) driver_get_version = nullptr;
  decltype(&::cuDeviceGetCount) device_get_count = nullptr;
  decltype(&::cuDeviceGet) device_get = nullptr;
  decltype(&::cuDeviceGetName) device_get_name = nullptr;
  decltype(&::cuDeviceTotalMem) device_total_mem = nullptr;
  decltype(&::cuDeviceGetAttribute) device_get_attribute = nullptr;
  // Optional: discovery works without them.
  decltype(&::cuGetErrorName) get_error_name = nullptr;
  decltype(&::cuDeviceGetUuid) device_get_uuid = nullptr;  // _v2 and the original share a signature
  decltype(&::cuDeviceGetPCIBusId) device_get_pci_bus_id = nullptr;
};

template <typename Fn>
void resolve(void* library, Fn& fn, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (void* symbol = ::dlsym(library, name)) {
      fn = reinterpret_cast<Fn>(symbol);
      return;
    }
  }
  fn = nullptr;
}

// Resolves every entry point; returns the name of the first required one the library lacks.
std::optional<std::string> load_api(void* library, CudaApi& api) {
  resolve(library, api.init, {"cuInit"});
  resolve(library, api.driver_get_version, {"cuDriverGetVersion"});
  resolve(library, api.device_get_count, {"cuDeviceGetCount"});
  resolve(library, api.device_get, {"cuDeviceGet"});
  resolve(library, api.device_get_name, {"cuDeviceGetName"});
  resolve(library, api.device_total_mem, {"cuDeviceTotalMem_v2"});
  resolve(library, api.device_get_attribute, {"cuDeviceGetAttribute"});
  resolve(library, api.get_error_name, {"cuGetErrorName"});
  resolve(library, api.device_get_uuid, {"cuDeviceGetUuid_v2", "cuDeviceGetUuid"});
  resolve(library, api.device_get_pci_bus_id, {"cuDeviceGetPCIBusId"});

  const std::pair<const void*, const char*> required[] = {
      {reinterpret_cast<const void*>(api.init), "cuInit"},
      {reinterpret_cast<const void*>(api.driver_get_version), "cuDriverGetVersion"},
      {reinterpret_cast<const void*>(api.device_get_count), "cuDeviceGetCount"},
      {reinterpret_cast<const void*>(api.device_get), "cuDeviceGet"},
      {reinterpret_cast<const void*>(api.device_get_name), "cuDeviceGetName"},
      {reinterpret_cast<const void*>(api.device_total_mem), "cuDeviceTotalMem_v2"},
      {reinterpret_cast<const void*>(api.device_get_attribute), "cuDeviceGetAttribute"},
  };
  for (const auto& [fn, name] : required)
    if (fn == nullptr) return std::string(name);
  return std::nullopt;
}

// "CUDA_ERROR_NO_DEVICE (100)", or "error 100" when the driver cannot name it.
std::string error_text(const CudaApi& api, CUresult result) {
  const char* name = nullptr;
  if (api.get_error_name != nullptr && api.get_error_name(result, &name) == CUDA_SUCCESS && name != nullptr)
    return std::string(name) + " (" + std::to_string(static_cast<int>(result)) + ")";
  return "error " + std::to_string(static_cast<int>(result));
}

// cuDriverGetVersion's 13000 is "CUDA driver 13.0", 12040 is "CUDA driver 12.4".
std::string driver_text(const CudaApi& api) {
  int version = 0;
  if (api.driver_get_version(&version) != CUDA_SUCCESS || version <= 0) return "CUDA driver";
  return "CUDA driver " + std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

uint32_t attribute(const CudaApi& api, CUdevice device, CUdevice_attribute which) {
  int value = 0;
  if (api.device_get_attribute(&value, which, device) != CUDA_SUCCESS || value < 0) return 0;
  return static_cast<uint32_t>(value);
}

// The driver writes "0000:3B:00.0"; the rest of RGPU (and Vulkan's PCI bus info) uses lower case.
std::string pci_bus_id(const CudaApi& api, CUdevice device) {
  if (api.device_get_pci_bus_id == nullptr) return {};
  char text[64] = {};
  if (api.device_get_pci_bus_id(text, static_cast<int>(sizeof text), device) != CUDA_SUCCESS) return {};
  std::string id(text);
  std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return id;
}

// One device, or a note saying why it was skipped.
std::optional<GpuInfo> describe_device(const CudaApi& api, int ordinal, const std::string& driver,
                                       std::vector<std::string>& notes) {
  CUdevice device = 0;
  CUresult result = api.device_get(&device, ordinal);
  if (result != CUDA_SUCCESS) {
    notes.push_back("CUDA: cuDeviceGet(" + std::to_string(ordinal) + ") failed: " + error_text(api, result));
    return std::nullopt;
  }
  GpuInfo gpu;
  gpu.cuda = true;
  gpu.cuda_ordinal = ordinal;
  gpu.driver = driver;

  char name[256] = {};
  result = api.device_get_name(name, static_cast<int>(sizeof name), device);
  gpu.name = result == CUDA_SUCCESS ? std::string(name) : "CUDA device " + std::to_string(ordinal);

  size_t total = 0;
  if (api.device_total_mem(&total, device) == CUDA_SUCCESS) gpu.vram_bytes = total;
  gpu.compute_major = attribute(api, device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  gpu.compute_minor = attribute(api, device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  gpu.type = attribute(api, device, CU_DEVICE_ATTRIBUTE_INTEGRATED) != 0 ? GpuType::IntegratedGpu
                                                                         : GpuType::DiscreteGpu;
  CUuuid uuid{};
  if (api.device_get_uuid != nullptr && api.device_get_uuid(&uuid, device) == CUDA_SUCCESS)
    std::copy(std::begin(uuid.bytes), std::end(uuid.bytes), gpu.uuid.begin());
  gpu.pci_bus_id = pci_bus_id(api, device);
  return gpu;
}

}  // namespace

std::string cuda_library_name() {
  const char* name = std::getenv("RGPU_CUDA_LIBRARY");
  return name != nullptr && *name != '\0' ? std::string(name) : std::string(kDefaultCudaLibrary);
}

CudaLibrary cuda_driver_library() {
  static std::mutex mutex;
  static std::map<std::string, void*> opened;  // never closed: the process keeps the driver loaded

  CudaLibrary library;
  library.name = cuda_library_name();
  std::lock_guard lock(mutex);
  if (auto it = opened.find(library.name); it != opened.end()) {
    library.handle = it->second;
    return library;
  }
  library.handle = ::dlopen(library.name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library.handle == nullptr) {
    const char* error = ::dlerror();
    library.error = error != nullptr ? error : "dlopen failed";
    return library;
  }
  if (::dlsym(library.handle, "rgpu_cuda_interpose_identity") != nullptr) {
    // Found through LD_LIBRARY_PATH or LD_PRELOAD: serving our own forwarding library would loop.
    library.error = "it is RGPU's own interpose library, not NVIDIA's driver (check LD_LIBRARY_PATH, LD_PRELOAD "
                    "and RGPU_CUDA_LIBRARY)";
    library.handle = nullptr;
    return library;
  }
  opened.emplace(library.name, library.handle);
  return library;
}

CudaProbeResult probe_cuda() {
  CudaProbeResult probe;
  const CudaLibrary library = cuda_driver_library();
  if (library.handle == nullptr) {
    probe.notes.push_back("CUDA: cannot load " + library.name + ": " + library.error);
    return probe;
  }
  CudaApi api;
  if (auto missing = load_api(library.handle, api)) {
    probe.notes.push_back("CUDA: " + library.name + " has no " + *missing + " (not a CUDA driver library?)");
    return probe;
  }
  if (CUresult result = api.init(0); result != CUDA_SUCCESS) {
    probe.notes.push_back("CUDA: cuInit failed: " + error_text(api, result));
    return probe;
  }
  int count = 0;
  if (CUresult result = api.device_get_count(&count); result != CUDA_SUCCESS) {
    probe.notes.push_back("CUDA: cuDeviceGetCount failed: " + error_text(api, result));
    return probe;
  }
  if (count <= 0) {
    probe.notes.push_back("CUDA: " + library.name + " reports no devices");
    return probe;
  }
  const std::string driver = driver_text(api);
  for (int ordinal = 0; ordinal < count; ++ordinal)
    if (auto gpu = describe_device(api, ordinal, driver, probe.notes)) probe.devices.push_back(std::move(*gpu));
  return probe;
}

}  // namespace rgpu
