#include "vulkan_instance.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "vk_tables.gen.hpp"

namespace rgpu::vk {

namespace {
template <typename Fn>
void resolve(PFN_vkGetInstanceProcAddr gipa, VkInstance instance, Fn& fn, const char* name) {
  fn = reinterpret_cast<Fn>(gipa(instance, name));
}

bool has_extension(const std::vector<VkExtensionProperties>& extensions, const char* name) {
  return std::any_of(extensions.begin(), extensions.end(),
                     [name](const VkExtensionProperties& e) { return std::strcmp(e.extensionName, name) == 0; });
}

// The device offers the struct: through its core version or one of the struct's extensions.
bool offers(const QueryStruct& s, uint32_t usable_version, const std::vector<VkExtensionProperties>& extensions) {
  if (s.core_version != 0 && usable_version >= s.core_version) return true;
  for (const char* const* name = s.extensions; *name != nullptr; ++name)
    if (has_extension(extensions, *name)) return true;
  return false;
}

// Links zeroed structs of the given sizes and types behind `head`; the driver fills them.
void* build_chain(std::vector<ChainedStruct>& structs) {
  void* next = nullptr;
  for (auto it = structs.rbegin(); it != structs.rend(); ++it) {
    auto* base = reinterpret_cast<VkBaseOutStructure*>(it->bytes.data());
    base->sType = it->type;
    base->pNext = static_cast<VkBaseOutStructure*>(next);
    next = base;
  }
  return next;
}

void unlink(std::vector<ChainedStruct>& structs) {
  for (auto& s : structs) reinterpret_cast<VkBaseOutStructure*>(s.bytes.data())->pNext = nullptr;
}
}  // namespace

Instance& Instance::get() {
  static Instance* instance = new Instance;  // kept: drivers do not all survive instance teardown at exit
  return *instance;
}

Instance::Instance() {
  PFN_vkGetInstanceProcAddr gipa = open_vulkan_loader(problem_);
  if (gipa == nullptr) return;
  api_version_ = instance_api_version(gipa);
  instance_ = create_vulkan_instance(gipa, api_version_, "rgpu-server", problem_);
  if (instance_ == VK_NULL_HANDLE) return;
  PFN_vkEnumeratePhysicalDevices enumerate = nullptr;
  gipa_ = gipa;
  resolve(gipa, instance_, enumerate, "vkEnumeratePhysicalDevices");
  resolve(gipa, instance_, get_properties_, "vkGetPhysicalDeviceProperties");
  resolve(gipa, instance_, get_properties2_, "vkGetPhysicalDeviceProperties2");
  resolve(gipa, instance_, get_features_, "vkGetPhysicalDeviceFeatures");
  resolve(gipa, instance_, get_features2_, "vkGetPhysicalDeviceFeatures2");
  resolve(gipa, instance_, get_memory_properties_, "vkGetPhysicalDeviceMemoryProperties");
  resolve(gipa, instance_, get_queue_families_, "vkGetPhysicalDeviceQueueFamilyProperties");
  resolve(gipa, instance_, get_format_properties_, "vkGetPhysicalDeviceFormatProperties");
  resolve(gipa, instance_, get_format_properties2_, "vkGetPhysicalDeviceFormatProperties2");
  resolve(gipa, instance_, enumerate_extensions_, "vkEnumerateDeviceExtensionProperties");
  resolve(gipa, instance_, get_image_format_properties_, "vkGetPhysicalDeviceImageFormatProperties");
  resolve(gipa, instance_, get_sparse_image_format_properties_, "vkGetPhysicalDeviceSparseImageFormatProperties");
  if (!enumerate || !get_properties_ || !get_features_ || !get_memory_properties_ || !get_queue_families_ ||
      !get_format_properties_ || !enumerate_extensions_ || !get_image_format_properties_ ||
      !get_sparse_image_format_properties_) {
    problem_ = "the Vulkan loader lacks core Vulkan 1.0 instance functions";
    return;
  }
  uint32_t count = 0;
  VkResult result = enumerate(instance_, &count, nullptr);
  devices_.resize(count);
  if (result == VK_SUCCESS && count > 0) result = enumerate(instance_, &count, devices_.data());
  if (result < VK_SUCCESS) {
    problem_ = "vkEnumeratePhysicalDevices failed: " + result_text(result);
    devices_.clear();
    return;
  }
  devices_.resize(count);
  ready_ = true;
}

VkPhysicalDevice Instance::device(uint32_t ordinal) const {
  if (!ready_ || ordinal >= devices_.size())
    throw std::runtime_error("no Vulkan physical device " + std::to_string(ordinal) + " on this server");
  return devices_[ordinal];
}

VkResult Instance::image_format_properties(uint32_t ordinal, const ImageFormatQuery& q,
                                           VkImageFormatProperties& out) const {
  return get_image_format_properties_(device(ordinal), q.format, q.type, q.tiling, q.usage, q.flags, &out);
}

std::vector<VkSparseImageFormatProperties> Instance::sparse_image_format_properties(
    uint32_t ordinal, const SparseImageFormatQuery& q) const {
  VkPhysicalDevice physical = device(ordinal);
  uint32_t count = 0;
  get_sparse_image_format_properties_(physical, q.format, q.type, q.samples, q.usage, q.tiling, &count, nullptr);
  std::vector<VkSparseImageFormatProperties> out(count);
  get_sparse_image_format_properties_(physical, q.format, q.type, q.samples, q.usage, q.tiling, &count, out.data());
  out.resize(count);
  return out;
}

VkResult Instance::create_device(uint32_t ordinal, const VkDeviceCreateInfo& info, VkDevice& device,
                                 PFN_vkGetDeviceProcAddr& get_device_proc_addr) const {
  VkPhysicalDevice physical = this->device(ordinal);
  PFN_vkCreateDevice create = nullptr;
  resolve(gipa_, instance_, create, "vkCreateDevice");
  resolve(gipa_, instance_, get_device_proc_addr, "vkGetDeviceProcAddr");
  if (create == nullptr || get_device_proc_addr == nullptr) return VK_ERROR_INITIALIZATION_FAILED;
  return create(physical, &info, nullptr, &device);
}

VkPhysicalDeviceMemoryProperties Instance::memory_properties(uint32_t ordinal) const {
  VkPhysicalDeviceMemoryProperties out{};
  get_memory_properties_(device(ordinal), &out);
  return out;
}

PhysicalDeviceDescription Instance::describe(uint32_t ordinal) const {
  VkPhysicalDevice device = this->device(ordinal);
  PhysicalDeviceDescription out;
  get_properties_(device, &out.properties);
  get_features_(device, &out.features);
  get_memory_properties_(device, &out.memory);
  uint32_t families = 0;
  get_queue_families_(device, &families, nullptr);
  out.queue_families.resize(families);
  get_queue_families_(device, &families, out.queue_families.data());
  out.queue_families.resize(families);
  uint32_t extensions = 0;
  VkResult result = enumerate_extensions_(device, nullptr, &extensions, nullptr);
  out.extensions.resize(extensions);
  if (result == VK_SUCCESS && extensions > 0)
    result = enumerate_extensions_(device, nullptr, &extensions, out.extensions.data());
  if (result < VK_SUCCESS) throw std::runtime_error("vkEnumerateDeviceExtensionProperties failed: " + result_text(result));
  out.extensions.resize(extensions);
  const uint32_t usable_version = std::min(api_version_, out.properties.apiVersion);
  chain_queries(device, usable_version, out);
  describe_formats(device, usable_version, out);
  return out;
}

// Every struct the device offers that extends VkPhysicalDeviceProperties2 / Features2, filled in
// one call each.
void Instance::chain_queries(VkPhysicalDevice device, uint32_t usable_version, PhysicalDeviceDescription& out) const {
  if (usable_version < VK_API_VERSION_1_1 || !get_properties2_ || !get_features2_) return;
  std::vector<ChainedStruct> properties, features;
  for (size_t i = 0; i < kQueryStructCount; ++i) {
    const QueryStruct& s = kQueryStructs[i];
    if (!offers(s, usable_version, out.extensions)) continue;
    auto& list = s.extends == Query::Properties2 ? properties : features;
    list.push_back(ChainedStruct{s.type, std::vector<uint8_t>(s.size, 0)});
  }
  VkPhysicalDeviceProperties2 properties2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, build_chain(properties), {}};
  get_properties2_(device, &properties2);
  VkPhysicalDeviceFeatures2 features2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, build_chain(features), {}};
  get_features2_(device, &features2);
  unlink(properties);
  unlink(features);
  out.chained = std::move(properties);
  out.chained.insert(out.chained.end(), std::make_move_iterator(features.begin()),
                     std::make_move_iterator(features.end()));
}

void Instance::describe_formats(VkPhysicalDevice device, uint32_t usable_version, PhysicalDeviceDescription& out) const {
  const bool with_flags2 = get_format_properties2_ != nullptr && usable_version >= VK_API_VERSION_1_1 &&
                           (usable_version >= VK_API_VERSION_1_3 ||
                            has_extension(out.extensions, VK_KHR_FORMAT_FEATURE_FLAGS_2_EXTENSION_NAME));
  for (size_t i = 0; i < kCoreFormatCount; ++i) {
    if (kCoreFormats[i].version > usable_version) continue;
    FormatDescription format;
    format.format = kCoreFormats[i].format;
    if (with_flags2) {
      VkFormatProperties3 properties3{VK_STRUCTURE_TYPE_FORMAT_PROPERTIES_3, nullptr, 0, 0, 0};
      VkFormatProperties2 properties2{VK_STRUCTURE_TYPE_FORMAT_PROPERTIES_2, &properties3, {}};
      get_format_properties2_(device, format.format, &properties2);
      format.properties = properties2.formatProperties;
      format.has_properties3 = true;
      format.linear_tiling_features2 = properties3.linearTilingFeatures;
      format.optimal_tiling_features2 = properties3.optimalTilingFeatures;
      format.buffer_features2 = properties3.bufferFeatures;
    } else {
      get_format_properties_(device, format.format, &format.properties);
    }
    out.formats.push_back(format);
  }
}

}  // namespace rgpu::vk
