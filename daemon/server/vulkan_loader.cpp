#include "vulkan_loader.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>

#include "vulkan_wire.hpp"

namespace rgpu {

namespace {
constexpr const char* kDefaultVulkanLibrary = "libvulkan.so.1";
constexpr uint32_t kRequestedApiVersion = VK_API_VERSION_1_3;
}  // namespace

std::string vulkan_library_name() {
  const char* name = std::getenv("RGPU_VULKAN_LIBRARY");
  return name != nullptr && *name != '\0' ? std::string(name) : std::string(kDefaultVulkanLibrary);
}

PFN_vkGetInstanceProcAddr open_vulkan_loader(std::string& problem) {
  const std::string library_name = vulkan_library_name();
  // Never closed: drivers the loader pulled in (lavapipe's LLVM, NVIDIA's) do not all survive being
  // unloaded, and a second dlopen of a loaded library only counts a reference.
  void* library = ::dlopen(library_name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* error = ::dlerror();
    problem = "cannot load " + library_name + ": " + (error != nullptr ? error : "dlopen failed");
    return nullptr;
  }
  auto gipa = reinterpret_cast<PFN_vkGetInstanceProcAddr>(::dlsym(library, "vkGetInstanceProcAddr"));
  if (gipa == nullptr) problem = library_name + " has no vkGetInstanceProcAddr (not a Vulkan loader?)";
  return gipa;
}

uint32_t instance_api_version(PFN_vkGetInstanceProcAddr gipa) {
  // A loader that predates vkEnumerateInstanceVersion speaks 1.0.
  auto enumerate_version =
      reinterpret_cast<PFN_vkEnumerateInstanceVersion>(gipa(VK_NULL_HANDLE, "vkEnumerateInstanceVersion"));
  uint32_t version = VK_API_VERSION_1_0;
  if (enumerate_version == nullptr || enumerate_version(&version) != VK_SUCCESS) version = VK_API_VERSION_1_0;
  return std::min(version, kRequestedApiVersion);
}

VkInstance create_vulkan_instance(PFN_vkGetInstanceProcAddr gipa, uint32_t api_version, const char* application,
                                  std::string& problem) {
  auto create = reinterpret_cast<PFN_vkCreateInstance>(gipa(VK_NULL_HANDLE, "vkCreateInstance"));
  VkResult result = VK_ERROR_INITIALIZATION_FAILED;
  VkInstance instance = VK_NULL_HANDLE;
  if (create != nullptr) {
    VkApplicationInfo app{};
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = application;
    app.pEngineName = "rgpu";
    app.apiVersion = api_version;
    VkInstanceCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    info.pApplicationInfo = &app;
    result = create(&info, nullptr, &instance);
  }
  if (result == VK_SUCCESS) return instance;
  problem = "vkCreateInstance (API " + vulkan_version_text(api_version) + ") failed: " + vk::result_text(result) +
            (result == VK_ERROR_INCOMPATIBLE_DRIVER ? " (no Vulkan driver installed?)" : "");
  return VK_NULL_HANDLE;
}

std::string vulkan_version_text(uint32_t version) {
  return std::to_string(VK_API_VERSION_MAJOR(version)) + "." + std::to_string(VK_API_VERSION_MINOR(version)) + "." +
         std::to_string(VK_API_VERSION_PATCH(version));
}

}  // namespace rgpu
