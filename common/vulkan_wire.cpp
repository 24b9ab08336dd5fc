#include "vulkan_wire.hpp"

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <set>
#include <string>

#include "log.hpp"
#include "vk_codec_support.hpp"

namespace rgpu::vk {

namespace {
constexpr uint32_t kMaxDevices = 256;
constexpr uint32_t kMaxQueueFamilies = 256;
constexpr uint32_t kMaxFormats = 4096;
constexpr uint32_t kMaxExtensions = 4096;
constexpr uint32_t kMaxChained = 4096;
constexpr uint32_t kMaxStructSize = 64 * 1024;
// sType and pNext: what every chained struct starts with.
constexpr size_t kChainHeaderSize = offsetof(VkBaseOutStructure, pNext) + sizeof(void*);

template <typename T>
void put_struct(WireWriter& w, const T& value) {
  w.blob({reinterpret_cast<const uint8_t*>(&value), sizeof value});
}

template <typename T>
T get_struct(WireReader& r, const char* field) {
  auto bytes = r.blob(kMaxStructSize);
  if (bytes.size() != sizeof(T))
    throw WireError(std::string("PhysicalDeviceList: ") + field + " has " + std::to_string(bytes.size()) +
                    " bytes, this build's struct has " + std::to_string(sizeof(T)));
  T value;
  std::memcpy(&value, bytes.data(), sizeof value);
  return value;
}

uint32_t get_count(WireReader& r, uint32_t limit, const char* field) {
  const uint32_t count = r.get<uint32_t>();
  if (count > limit)
    throw WireError(std::string("PhysicalDeviceList: ") + std::to_string(count) + " " + field + " is over the limit");
  return count;
}

ChainedStruct get_chained(WireReader& r) {
  ChainedStruct s;
  s.type = static_cast<VkStructureType>(r.get<uint32_t>());
  auto bytes = r.blob(kMaxStructSize);
  if (bytes.size() < kChainHeaderSize)
    throw WireError("PhysicalDeviceList: chained struct " + std::to_string(s.type) + " is shorter than its header");
  VkBaseOutStructure header;
  std::memcpy(&header, bytes.data(), sizeof header);
  if (header.sType != s.type)
    throw WireError("PhysicalDeviceList: chained struct " + std::to_string(s.type) + " carries sType " +
                    std::to_string(header.sType));
  if (header.pNext != nullptr) throw WireError("PhysicalDeviceList: chained struct " + std::to_string(s.type) + " carries a pointer");
  s.bytes.assign(bytes.begin(), bytes.end());
  return s;
}
}  // namespace

const ChainedStruct* PhysicalDeviceDescription::find(VkStructureType type) const {
  auto it = std::find_if(chained.begin(), chained.end(), [type](const ChainedStruct& s) { return s.type == type; });
  return it == chained.end() ? nullptr : &*it;
}

std::vector<uint8_t> encode(const std::vector<PhysicalDeviceDescription>& devices) {
  WireWriter w;
  w.put<uint32_t>(static_cast<uint32_t>(devices.size()));
  for (const auto& d : devices) {
    w.put(d.gpu_index);
    put_struct(w, d.properties);
    put_struct(w, d.features);
    put_struct(w, d.memory);
    w.put<uint32_t>(static_cast<uint32_t>(d.queue_families.size()));
    for (const auto& family : d.queue_families) put_struct(w, family);
    w.put<uint32_t>(static_cast<uint32_t>(d.formats.size()));
    for (const auto& f : d.formats) {
      w.put<int32_t>(f.format);
      put_struct(w, f.properties);
      w.put<uint8_t>(f.has_properties3 ? 1 : 0);
      w.put(f.linear_tiling_features2).put(f.optimal_tiling_features2).put(f.buffer_features2);
    }
    w.put<uint32_t>(static_cast<uint32_t>(d.extensions.size()));
    for (const auto& e : d.extensions) put_struct(w, e);
    w.put<uint32_t>(static_cast<uint32_t>(d.chained.size()));
    for (const auto& s : d.chained) {
      w.put<uint32_t>(static_cast<uint32_t>(s.type));
      w.blob(s.bytes);
    }
  }
  return w.take();
}

std::vector<PhysicalDeviceDescription> decode_physical_devices(std::span<const uint8_t> data) {
  WireReader r(data, "PhysicalDeviceList");
  std::vector<PhysicalDeviceDescription> devices(get_count(r, kMaxDevices, "devices"));
  for (auto& d : devices) {
    d.gpu_index = r.get<uint32_t>();
    d.properties = get_struct<VkPhysicalDeviceProperties>(r, "VkPhysicalDeviceProperties");
    d.features = get_struct<VkPhysicalDeviceFeatures>(r, "VkPhysicalDeviceFeatures");
    d.memory = get_struct<VkPhysicalDeviceMemoryProperties>(r, "VkPhysicalDeviceMemoryProperties");
    d.queue_families.resize(get_count(r, kMaxQueueFamilies, "queue families"));
    for (auto& family : d.queue_families) family = get_struct<VkQueueFamilyProperties>(r, "VkQueueFamilyProperties");
    d.formats.resize(get_count(r, kMaxFormats, "formats"));
    for (auto& f : d.formats) {
      f.format = static_cast<VkFormat>(r.get<int32_t>());
      f.properties = get_struct<VkFormatProperties>(r, "VkFormatProperties");
      const uint8_t has3 = r.get<uint8_t>();
      if (has3 > 1) throw WireError("PhysicalDeviceList: boolean field holds " + std::to_string(has3));
      f.has_properties3 = has3 == 1;
      f.linear_tiling_features2 = r.get<VkFormatFeatureFlags2>();
      f.optimal_tiling_features2 = r.get<VkFormatFeatureFlags2>();
      f.buffer_features2 = r.get<VkFormatFeatureFlags2>();
    }
    d.extensions.resize(get_count(r, kMaxExtensions, "extensions"));
    for (auto& e : d.extensions) e = get_struct<VkExtensionProperties>(r, "VkExtensionProperties");
    const uint32_t chained = get_count(r, kMaxChained, "chained structs");
    for (uint32_t i = 0; i < chained; ++i) {
      ChainedStruct s = get_chained(r);
      if (d.find(s.type) != nullptr)
        throw WireError("PhysicalDeviceList: chained struct " + std::to_string(s.type) + " comes twice");
      d.chained.push_back(std::move(s));
    }
  }
  r.expect_end();
  return devices;
}

std::string result_text(VkResult result) {
  const char* name = "VkResult";
  switch (result) {
    case VK_SUCCESS: name = "VK_SUCCESS"; break;
    case VK_INCOMPLETE: name = "VK_INCOMPLETE"; break;
    case VK_ERROR_OUT_OF_HOST_MEMORY: name = "VK_ERROR_OUT_OF_HOST_MEMORY"; break;
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: name = "VK_ERROR_OUT_OF_DEVICE_MEMORY"; break;
    case VK_ERROR_INITIALIZATION_FAILED: name = "VK_ERROR_INITIALIZATION_FAILED"; break;
    case VK_ERROR_DEVICE_LOST: name = "VK_ERROR_DEVICE_LOST"; break;
    case VK_ERROR_LAYER_NOT_PRESENT: name = "VK_ERROR_LAYER_NOT_PRESENT"; break;
    case VK_ERROR_EXTENSION_NOT_PRESENT: name = "VK_ERROR_EXTENSION_NOT_PRESENT"; break;
    case VK_ERROR_FEATURE_NOT_PRESENT: name = "VK_ERROR_FEATURE_NOT_PRESENT"; break;
    case VK_ERROR_INCOMPATIBLE_DRIVER: name = "VK_ERROR_INCOMPATIBLE_DRIVER"; break;
    default: break;
  }
  return std::string(name) + " (" + std::to_string(static_cast<int>(result)) + ")";
}

}  // namespace rgpu::vk

namespace rgpu::vk {

void skipped_chain_struct(VkStructureType type) {
  // The loader's own structs (layer links) mean nothing beyond this process.
  if (type == VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO || type == VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO) return;
  static std::mutex mutex;
  static std::set<VkStructureType> logged;
  std::lock_guard lock(mutex);
  if (logged.insert(type).second)
    LOG_WARN("Vulkan: a pNext struct of sType %d is not supported by RGPU and was left out", static_cast<int>(type));
}

}  // namespace rgpu::vk
