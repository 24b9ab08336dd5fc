// Descriptor update templates: the ICD keeps each template's entries, and an update through a
// template becomes the vkUpdateDescriptorSets it stands for, built from the application's data.
// The template object itself is created on the server too, so that its handle is a real one.
#include "icd_calls.hpp"
#include "log.hpp"
#include "vk_icd.gen.hpp"

namespace rgpu::icd {

VKAPI_ATTR VkResult VKAPI_CALL CreateDescriptorUpdateTemplate(VkDevice handle,
                                                              const VkDescriptorUpdateTemplateCreateInfo* info,
                                                              const VkAllocationCallbacks* allocator,
                                                              VkDescriptorUpdateTemplate* out) {
  if (info->templateType != VK_DESCRIPTOR_UPDATE_TEMPLATE_TYPE_DESCRIPTOR_SET) {
    // Push descriptors are not offered.
    LOG_ERROR("Vulkan: vkCreateDescriptorUpdateTemplate: template type %d is not supported by RGPU",
              static_cast<int>(info->templateType));
    return VK_ERROR_FEATURE_NOT_PRESENT;
  }
  *out = new_handle<VkDescriptorUpdateTemplate>();
  Device* device = from_handle(handle);
  {
    std::lock_guard lock(device->mutex);
    device->templates[vk::to_wire(*out)].assign(info->pDescriptorUpdateEntries,
                                                info->pDescriptorUpdateEntries + info->descriptorUpdateEntryCount);
  }
  Call call(handle, vk::CMD_vkCreateDescriptorUpdateTemplate, "vkCreateDescriptorUpdateTemplate");
  encode_vkCreateDescriptorUpdateTemplate(call.args(), handle, info, allocator, out);
  return call.send_pipelined();
}

VKAPI_ATTR void VKAPI_CALL DestroyDescriptorUpdateTemplate(VkDevice handle, VkDescriptorUpdateTemplate update_template,
                                                           const VkAllocationCallbacks* allocator) {
  if (update_template == VK_NULL_HANDLE) return;
  Device* device = from_handle(handle);
  {
    std::lock_guard lock(device->mutex);
    device->templates.erase(vk::to_wire(update_template));
  }
  Call call(handle, vk::CMD_vkDestroyDescriptorUpdateTemplate, "vkDestroyDescriptorUpdateTemplate");
  encode_vkDestroyDescriptorUpdateTemplate(call.args(), handle, update_template, allocator);
  call.send_pipelined();
}

VKAPI_ATTR void VKAPI_CALL UpdateDescriptorSetWithTemplate(VkDevice handle, VkDescriptorSet set,
                                                           VkDescriptorUpdateTemplate update_template,
                                                           const void* data) {
  Device* device = from_handle(handle);
  std::vector<VkDescriptorUpdateTemplateEntry> entries;
  {
    std::lock_guard lock(device->mutex);
    auto it = device->templates.find(vk::to_wire(update_template));
    if (it == device->templates.end()) {
      LOG_ERROR("Vulkan: vkUpdateDescriptorSetWithTemplate: unknown template");
      return;
    }
    entries = it->second;
  }
  const auto* bytes = static_cast<const uint8_t*>(data);
  // Storage for what the writes point to; reserved up front so that the pointers stay valid.
  size_t total = 0;
  for (const auto& e : entries) total += e.descriptorCount;
  std::vector<VkDescriptorImageInfo> images;
  std::vector<VkDescriptorBufferInfo> buffers;
  std::vector<VkBufferView> views;
  std::vector<VkWriteDescriptorSetInlineUniformBlock> blocks;
  images.reserve(total);
  buffers.reserve(total);
  views.reserve(total);
  blocks.reserve(entries.size());
  std::vector<VkWriteDescriptorSet> writes;
  for (const auto& e : entries) {
    VkWriteDescriptorSet write{};
    write.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
    write.dstSet = set;
    write.dstBinding = e.dstBinding;
    write.dstArrayElement = e.dstArrayElement;
    write.descriptorCount = e.descriptorCount;
    write.descriptorType = e.descriptorType;
    const uint8_t* at = bytes + e.offset;
    if (e.descriptorType == VK_DESCRIPTOR_TYPE_INLINE_UNIFORM_BLOCK) {
      // descriptorCount is a byte count here, and the bytes are the data itself.
      blocks.push_back({VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET_INLINE_UNIFORM_BLOCK, nullptr, e.descriptorCount, at});
      write.pNext = &blocks.back();
    } else if (vk::writes_images(e.descriptorType)) {
      write.pImageInfo = images.data() + images.size();
      for (uint32_t i = 0; i < e.descriptorCount; ++i)
        images.push_back(*reinterpret_cast<const VkDescriptorImageInfo*>(at + i * e.stride));
    } else if (vk::writes_buffers(e.descriptorType)) {
      write.pBufferInfo = buffers.data() + buffers.size();
      for (uint32_t i = 0; i < e.descriptorCount; ++i)
        buffers.push_back(*reinterpret_cast<const VkDescriptorBufferInfo*>(at + i * e.stride));
    } else if (vk::writes_texel_buffers(e.descriptorType)) {
      write.pTexelBufferView = views.data() + views.size();
      for (uint32_t i = 0; i < e.descriptorCount; ++i)
        views.push_back(*reinterpret_cast<const VkBufferView*>(at + i * e.stride));
    } else {
      LOG_ERROR("Vulkan: vkUpdateDescriptorSetWithTemplate: descriptor type %d is not supported by RGPU",
                static_cast<int>(e.descriptorType));
      continue;
    }
    writes.push_back(write);
  }
  Call call(handle, vk::CMD_vkUpdateDescriptorSets, "vkUpdateDescriptorSetWithTemplate");
  encode_vkUpdateDescriptorSets(call.args(), handle, static_cast<uint32_t>(writes.size()), writes.data(), 0, nullptr);
  call.send_pipelined();
}

}  // namespace rgpu::icd
