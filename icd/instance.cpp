// vkCreateInstance and what belongs to the instance: it opens the Vulkan session through the
// client daemon and fetches every physical device's description once.
#include <algorithm>
#include <cstring>

#include "icd_objects.hpp"
#include "log.hpp"

namespace rgpu::icd {

namespace {
const VkExtensionProperties kInstanceExtensions[] = {
    {VK_KHR_GET_PHYSICAL_DEVICE_PROPERTIES_2_EXTENSION_NAME, VK_KHR_GET_PHYSICAL_DEVICE_PROPERTIES_2_SPEC_VERSION},
};

bool known_instance_extension(const char* name) {
  return std::any_of(std::begin(kInstanceExtensions), std::end(kInstanceExtensions),
                     [name](const VkExtensionProperties& e) { return std::strcmp(e.extensionName, name) == 0; });
}

void init_logging_once() {
  static const bool done = [] {
    set_log_component("rgpu vulkan");
    init_logging_from_env();
    return true;
  }();
  (void)done;
}

std::string version_text(uint32_t v) {
  return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) + "." +
         std::to_string(VK_API_VERSION_PATCH(v));
}
}  // namespace

VKAPI_ATTR VkResult VKAPI_CALL CreateInstance(const VkInstanceCreateInfo* info, const VkAllocationCallbacks*,
                                              VkInstance* out) {
  init_logging_once();
  for (uint32_t i = 0; i < info->enabledExtensionCount; ++i) {
    if (!known_instance_extension(info->ppEnabledExtensionNames[i])) {
      LOG_ERROR("Vulkan: instance extension %s is not supported by RGPU", info->ppEnabledExtensionNames[i]);
      return VK_ERROR_EXTENSION_NOT_PRESENT;
    }
  }
  std::string problem;
  auto instance = std::make_unique<Instance>();
  set_loader_magic_value(&instance->loader_data);
  instance->session = DaemonSession::open(problem);
  if (!instance->session) {
    LOG_ERROR("Vulkan: %s", problem.c_str());
    return VK_ERROR_INITIALIZATION_FAILED;
  }
  instance->session->set_memory_sink(
      [target = instance.get()](uint64_t memory, uint64_t offset, std::span<const uint8_t> bytes) {
        receive_memory(*target, memory, offset, bytes);
      });
  const AppWelcomeMsg& welcome = instance->session->welcome();
  for (const auto& note : welcome.notes) LOG_WARN("Vulkan: %s", note.c_str());
  std::vector<vk::PhysicalDeviceDescription> descriptions;
  if (!welcome.devices.empty()) {
    std::vector<uint8_t> outputs;
    VkResult result = instance->session->call(vk::CMD_DescribePhysicalDevices, {}, outputs, problem);
    if (result != VK_SUCCESS) {
      LOG_ERROR("Vulkan: describing the physical devices of server %s failed: %s %s", welcome.server.c_str(),
                vk::result_text(result).c_str(), problem.c_str());
      return VK_ERROR_INITIALIZATION_FAILED;
    }
    try {
      descriptions = vk::decode_physical_devices(outputs);
    } catch (const WireError& e) {
      LOG_ERROR("Vulkan: malformed device descriptions from server %s: %s", welcome.server.c_str(), e.what());
      return VK_ERROR_INITIALIZATION_FAILED;
    }
  }
  if (descriptions.empty()) LOG_INFO("Vulkan: the RGPU client daemon offers no Vulkan GPU");
  else LOG_INFO("Vulkan: %zu GPU(s) from server %s", descriptions.size(), welcome.server.c_str());
  for (size_t i = 0; i < descriptions.size(); ++i) {
    auto device = std::make_unique<PhysicalDevice>();
    set_loader_magic_value(&device->loader_data);
    device->instance = instance.get();
    device->session_index = static_cast<uint32_t>(i);
    device->description = std::move(descriptions[i]);
    device->extensions = forwardable_extensions(device->description.extensions);
    const VkPhysicalDeviceProperties& p = device->description.properties;
    LOG_INFO("  GPU %zu: %s (server GPU %u, Vulkan %s)", i, p.deviceName, device->description.gpu_index,
             version_text(p.apiVersion).c_str());
    instance->devices.push_back(std::move(device));
  }
  *out = reinterpret_cast<VkInstance>(instance.release());
  return VK_SUCCESS;
}

VKAPI_ATTR void VKAPI_CALL DestroyInstance(VkInstance handle, const VkAllocationCallbacks*) {
  delete from_handle(handle);  // closes the session: the server lets go of it
}

VKAPI_ATTR VkResult VKAPI_CALL EnumerateInstanceExtensionProperties(const char* layer, uint32_t* count,
                                                                    VkExtensionProperties* out) {
  if (layer != nullptr) return VK_ERROR_LAYER_NOT_PRESENT;
  return copy_out(std::vector<VkExtensionProperties>(std::begin(kInstanceExtensions), std::end(kInstanceExtensions)),
                  count, out);
}

VKAPI_ATTR VkResult VKAPI_CALL EnumerateInstanceVersion(uint32_t* version) {
  *version = VK_HEADER_VERSION_COMPLETE;
  return VK_SUCCESS;
}

VKAPI_ATTR VkResult VKAPI_CALL EnumeratePhysicalDevices(VkInstance handle, uint32_t* count, VkPhysicalDevice* out) {
  std::vector<VkPhysicalDevice> devices;
  for (const auto& device : from_handle(handle)->devices) devices.push_back(reinterpret_cast<VkPhysicalDevice>(device.get()));
  return copy_out(devices, count, out);
}

}  // namespace rgpu::icd
