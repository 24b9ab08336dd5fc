// What the Vulkan loader calls first (loader/ICD interface version 5) and the name -> function
// tables behind vkGetInstanceProcAddr. A command not listed here is not implemented: its lookup
// returns NULL, so the loader and the application know it is missing.
#include <cstring>

#include "icd_objects.hpp"
#include "vk_icd.gen.hpp"

namespace rgpu::icd {

namespace {
constexpr uint32_t kLoaderInterfaceVersion = 5;

struct Command {
  const char* name;
  PFN_vkVoidFunction function;
};

template <typename Fn>
PFN_vkVoidFunction as_void(Fn fn) {
  return reinterpret_cast<PFN_vkVoidFunction>(fn);
}

// Commands that need no instance.
const Command kGlobalCommands[] = {
    {"vkCreateInstance", as_void(&CreateInstance)},
    {"vkEnumerateInstanceExtensionProperties", as_void(&EnumerateInstanceExtensionProperties)},
    {"vkEnumerateInstanceVersion", as_void(&EnumerateInstanceVersion)},
};

const Command kInstanceCommands[] = {
    {"vkDestroyInstance", as_void(&DestroyInstance)},
    {"vkEnumeratePhysicalDevices", as_void(&EnumeratePhysicalDevices)},
    {"vkGetDeviceProcAddr", as_void(&GetDeviceProcAddr)},
};

// Commands whose first parameter is a VkPhysicalDevice (also what vk_icdGetPhysicalDeviceProcAddr answers).
const Command kPhysicalDeviceCommands[] = {
    {"vkGetPhysicalDeviceProperties", as_void(&GetPhysicalDeviceProperties)},
    {"vkGetPhysicalDeviceProperties2", as_void(&GetPhysicalDeviceProperties2)},
    {"vkGetPhysicalDeviceProperties2KHR", as_void(&GetPhysicalDeviceProperties2)},
    {"vkGetPhysicalDeviceFeatures", as_void(&GetPhysicalDeviceFeatures)},
    {"vkGetPhysicalDeviceFeatures2", as_void(&GetPhysicalDeviceFeatures2)},
    {"vkGetPhysicalDeviceFeatures2KHR", as_void(&GetPhysicalDeviceFeatures2)},
    {"vkGetPhysicalDeviceMemoryProperties", as_void(&GetPhysicalDeviceMemoryProperties)},
    {"vkGetPhysicalDeviceMemoryProperties2", as_void(&GetPhysicalDeviceMemoryProperties2)},
    {"vkGetPhysicalDeviceMemoryProperties2KHR", as_void(&GetPhysicalDeviceMemoryProperties2)},
    {"vkGetPhysicalDeviceQueueFamilyProperties", as_void(&GetPhysicalDeviceQueueFamilyProperties)},
    {"vkGetPhysicalDeviceQueueFamilyProperties2", as_void(&GetPhysicalDeviceQueueFamilyProperties2)},
    {"vkGetPhysicalDeviceQueueFamilyProperties2KHR", as_void(&GetPhysicalDeviceQueueFamilyProperties2)},
    {"vkGetPhysicalDeviceFormatProperties", as_void(&GetPhysicalDeviceFormatProperties)},
    {"vkGetPhysicalDeviceFormatProperties2", as_void(&GetPhysicalDeviceFormatProperties2)},
    {"vkGetPhysicalDeviceFormatProperties2KHR", as_void(&GetPhysicalDeviceFormatProperties2)},
    {"vkEnumerateDeviceExtensionProperties", as_void(&EnumerateDeviceExtensionProperties)},
    {"vkGetPhysicalDeviceToolProperties", as_void(&GetPhysicalDeviceToolProperties)},
    {"vkGetPhysicalDeviceToolPropertiesEXT", as_void(&GetPhysicalDeviceToolProperties)},
    {"vkGetPhysicalDeviceImageFormatProperties", as_void(&GetPhysicalDeviceImageFormatProperties)},
    {"vkGetPhysicalDeviceSparseImageFormatProperties", as_void(&GetPhysicalDeviceSparseImageFormatProperties)},
    {"vkCreateDevice", as_void(&CreateDevice)},
};

template <size_t N>
PFN_vkVoidFunction find(const Command (&table)[N], const char* name) {
  for (const Command& command : table)
    if (std::strcmp(command.name, name) == 0) return command.function;
  return nullptr;
}

// Physical-device commands: answered here, or forwarded (generated).
PFN_vkVoidFunction find_physical_device_command(const char* name) {
  if (auto fn = find(kPhysicalDeviceCommands, name)) return fn;
  for (size_t i = 0; i < kForwardedPhysicalDeviceCommandCount; ++i)
    if (std::strcmp(kForwardedPhysicalDeviceCommands[i].name, name) == 0) return kForwardedPhysicalDeviceCommands[i].function;
  return nullptr;
}
}  // namespace

}  // namespace rgpu::icd

using namespace rgpu::icd;

// The library is built with hidden visibility; these three are what the loader looks up.
#define RGPU_ICD_EXPORT __attribute__((visibility("default")))

extern "C" {

RGPU_ICD_EXPORT VKAPI_ATTR VkResult VKAPI_CALL vk_icdNegotiateLoaderICDInterfaceVersion(uint32_t* version) {
  if (*version < kLoaderInterfaceVersion) return VK_ERROR_INCOMPATIBLE_DRIVER;
  *version = kLoaderInterfaceVersion;
  return VK_SUCCESS;
}

RGPU_ICD_EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vk_icdGetInstanceProcAddr(VkInstance instance, const char* name) {
  if (name == nullptr) return nullptr;
  if (auto fn = find(kGlobalCommands, name)) return fn;
  if (instance == VK_NULL_HANDLE) return nullptr;
  if (auto fn = find(kInstanceCommands, name)) return fn;
  if (auto fn = find_physical_device_command(name)) return fn;
  return GetDeviceProcAddr(VK_NULL_HANDLE, name);
}

RGPU_ICD_EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vk_icdGetPhysicalDeviceProcAddr(VkInstance, const char* name) {
  return name != nullptr ? find_physical_device_command(name) : nullptr;
}

}  // extern "C"
