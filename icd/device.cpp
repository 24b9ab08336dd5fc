// The device level is the next step of the Vulkan path. The loader only accepts an ICD that
// offers vkCreateDevice and vkGetDeviceProcAddr, so both exist, and both say plainly that there
// is no device yet: device creation fails, and no device command is offered.
#include "icd_objects.hpp"
#include "log.hpp"

namespace rgpu::icd {

VKAPI_ATTR VkResult VKAPI_CALL CreateDevice(VkPhysicalDevice physical, const VkDeviceCreateInfo*,
                                            const VkAllocationCallbacks*, VkDevice*) {
  LOG_ERROR("Vulkan: vkCreateDevice on %s: creating devices is not implemented in this RGPU version",
            from_handle(physical)->description.properties.deviceName);
  return VK_ERROR_FEATURE_NOT_PRESENT;
}

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL GetDeviceProcAddr(VkDevice, const char*) { return nullptr; }

}  // namespace rgpu::icd
