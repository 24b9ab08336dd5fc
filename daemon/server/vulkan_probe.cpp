#include "vulkan_probe.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "vulkan_loader.hpp"
#include "vulkan_wire.hpp"

namespace rgpu {

namespace {

// Text from a fixed-size, normally NUL-terminated array in a Vulkan struct.
template <size_t N>
std::string fixed_string(const char (&text)[N]) {
  return std::string(text, ::strnlen(text, N));
}

GpuType gpu_type(VkPhysicalDeviceType type) {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return GpuType::IntegratedGpu;
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return GpuType::DiscreteGpu;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return GpuType::VirtualGpu;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return GpuType::Cpu;
    default: return GpuType::Other;
  }
}

// Instance-level entry points, resolved through vkGetInstanceProcAddr once the instance exists.
struct InstanceApi {
  PFN_vkDestroyInstance destroy_instance = nullptr;
  PFN_vkEnumeratePhysicalDevices enumerate_physical_devices = nullptr;
  PFN_vkGetPhysicalDeviceProperties get_properties = nullptr;
  PFN_vkGetPhysicalDeviceProperties2 get_properties2 = nullptr;  // null below Vulkan 1.1
  PFN_vkGetPhysicalDeviceMemoryProperties get_memory_properties = nullptr;
  PFN_vkEnumerateDeviceExtensionProperties enumerate_device_extensions = nullptr;
};

template <typename Fn>
void resolve(PFN_vkGetInstanceProcAddr gipa, VkInstance instance, Fn& fn, const char* name) {
  fn = reinterpret_cast<Fn>(gipa(instance, name));
}

// Destroys the instance when discovery is done with it.
class InstanceGuard {
 public:
  InstanceGuard(VkInstance instance, PFN_vkDestroyInstance destroy) : instance_(instance), destroy_(destroy) {}
  ~InstanceGuard() {
    if (destroy_ != nullptr) destroy_(instance_, nullptr);
  }
  InstanceGuard(const InstanceGuard&) = delete;
  InstanceGuard& operator=(const InstanceGuard&) = delete;

 private:
  VkInstance instance_;
  PFN_vkDestroyInstance destroy_;
};

bool has_device_extension(const InstanceApi& api, VkPhysicalDevice device, const char* name) {
  uint32_t count = 0;
  if (api.enumerate_device_extensions(device, nullptr, &count, nullptr) != VK_SUCCESS) return false;
  std::vector<VkExtensionProperties> extensions(count);
  if (api.enumerate_device_extensions(device, nullptr, &count, extensions.data()) < VK_SUCCESS) return false;
  extensions.resize(count);
  return std::any_of(extensions.begin(), extensions.end(),
                     [name](const VkExtensionProperties& e) { return std::strcmp(e.extensionName, name) == 0; });
}

uint64_t device_local_bytes(const InstanceApi& api, VkPhysicalDevice device) {
  VkPhysicalDeviceMemoryProperties memory{};
  api.get_memory_properties(device, &memory);
  uint64_t total = 0;
  for (uint32_t i = 0; i < memory.memoryHeapCount; ++i)
    if (memory.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) total += memory.memoryHeaps[i].size;
  return total;
}

std::string pci_bus_id(const VkPhysicalDevicePCIBusInfoPropertiesEXT& pci) {
  char text[32];
  std::snprintf(text, sizeof text, "%04x:%02x:%02x.%x", pci.pciDomain, pci.pciBus, pci.pciDevice, pci.pciFunction);
  return text;
}

// Fills what vkGetPhysicalDeviceProperties2 adds: UUID (1.1), driver name and info (1.2), PCI
// address (VK_EXT_pci_bus_info). usable_version is the lower of the instance's and the device's.
void describe_extended(const InstanceApi& api, VkPhysicalDevice device, uint32_t usable_version, GpuInfo& gpu) {
  if (api.get_properties2 == nullptr || usable_version < VK_API_VERSION_1_1) return;
  VkPhysicalDeviceProperties2 properties{};
  properties.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
  VkPhysicalDeviceIDProperties id{};
  id.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES;
  VkPhysicalDeviceDriverProperties driver{};
  driver.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
  VkPhysicalDevicePCIBusInfoPropertiesEXT pci{};
  pci.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PCI_BUS_INFO_PROPERTIES_EXT;

  void** tail = &properties.pNext;
  auto chain = [&tail](auto& link) {
    *tail = &link;
    tail = &link.pNext;
  };
  chain(id);
  const bool with_driver = usable_version >= VK_API_VERSION_1_2;
  if (with_driver) chain(driver);
  const bool with_pci = has_device_extension(api, device, VK_EXT_PCI_BUS_INFO_EXTENSION_NAME);
  if (with_pci) chain(pci);
  api.get_properties2(device, &properties);

  std::copy(std::begin(id.deviceUUID), std::end(id.deviceUUID), gpu.uuid.begin());
  if (with_driver) {
    std::string info = fixed_string(driver.driverInfo);
    gpu.driver = fixed_string(driver.driverName) + (info.empty() ? "" : " " + info);
  }
  if (with_pci) gpu.pci_bus_id = pci_bus_id(pci);
}

GpuInfo describe_device(const InstanceApi& api, VkPhysicalDevice device, uint32_t ordinal, uint32_t instance_version) {
  VkPhysicalDeviceProperties properties{};
  api.get_properties(device, &properties);
  GpuInfo gpu;
  gpu.vulkan = true;
  gpu.vulkan_ordinal = static_cast<int32_t>(ordinal);
  gpu.name = fixed_string(properties.deviceName);
  gpu.type = gpu_type(properties.deviceType);
  gpu.vulkan_api_version = properties.apiVersion;
  gpu.vendor_id = properties.vendorID;
  gpu.device_id = properties.deviceID;
  gpu.vram_bytes = device_local_bytes(api, device);
  // Replaced by the driver's own name and version where Vulkan 1.2 offers them.
  gpu.driver = "Vulkan driver version " + std::to_string(properties.driverVersion);
  describe_extended(api, device, std::min(instance_version, properties.apiVersion), gpu);
  return gpu;
}

// Every physical device of the instance, or a note saying why there are none.
void enumerate_devices(PFN_vkGetInstanceProcAddr gipa, VkInstance instance, uint32_t instance_version,
                       VulkanProbeResult& probe) {
  InstanceApi api;
  resolve(gipa, instance, api.destroy_instance, "vkDestroyInstance");
  InstanceGuard guard(instance, api.destroy_instance);
  resolve(gipa, instance, api.enumerate_physical_devices, "vkEnumeratePhysicalDevices");
  resolve(gipa, instance, api.get_properties, "vkGetPhysicalDeviceProperties");
  resolve(gipa, instance, api.get_properties2, "vkGetPhysicalDeviceProperties2");
  resolve(gipa, instance, api.get_memory_properties, "vkGetPhysicalDeviceMemoryProperties");
  resolve(gipa, instance, api.enumerate_device_extensions, "vkEnumerateDeviceExtensionProperties");
  if (api.enumerate_physical_devices == nullptr || api.get_properties == nullptr ||
      api.get_memory_properties == nullptr || api.enumerate_device_extensions == nullptr) {
    probe.notes.emplace_back("Vulkan: the loader lacks core Vulkan 1.0 instance functions");
    return;
  }

  uint32_t count = 0;
  VkResult result = api.enumerate_physical_devices(instance, &count, nullptr);
  std::vector<VkPhysicalDevice> devices(count);
  if (result == VK_SUCCESS && count > 0) result = api.enumerate_physical_devices(instance, &count, devices.data());
  if (result < VK_SUCCESS) {
    probe.notes.push_back("Vulkan: vkEnumeratePhysicalDevices failed: " + vk::result_text(result));
    return;
  }
  devices.resize(count);
  if (devices.empty()) {
    probe.notes.emplace_back("Vulkan: no physical devices (no Vulkan driver installed?)");
    return;
  }
  for (uint32_t i = 0; i < devices.size(); ++i)
    probe.devices.push_back(describe_device(api, devices[i], i, instance_version));
}

}  // namespace

VulkanProbeResult probe_vulkan() {
  VulkanProbeResult probe;
  std::string problem;
  PFN_vkGetInstanceProcAddr gipa = open_vulkan_loader(problem);
  if (gipa == nullptr) {
    probe.notes.push_back("Vulkan: " + problem);
    return probe;
  }
  const uint32_t instance_version = instance_api_version(gipa);
  VkInstance instance = create_vulkan_instance(gipa, instance_version, "rgpu-discovery", problem);
  if (instance == VK_NULL_HANDLE) {
    probe.notes.push_back("Vulkan: " + problem);
    return probe;
  }
  enumerate_devices(gipa, instance, instance_version, probe);
  return probe;
}

}  // namespace rgpu
