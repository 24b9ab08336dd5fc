// Descriptor update templates: the ICD keeps each template's entries, and an update through a
// template becomes the vkUpdateDescriptorSets (or, recorded, the vkCmdPushDescriptorSetKHR) it
// stands for, built from the application's data. The template object itself is created on the
// server too, so that its handle is a real one.
#include "icd_calls.hpp"
#include "log.hpp"
#include "vk_icd.gen.hpp"

namespace rgpu::icd {

namespace {
using Template = Device::UpdateTemplate;

// The VkWriteDescriptorSet array a template update stands for, with what it points to.
class TemplateWrites {
 public:
  TemplateWrites(const std::vector<VkDescriptorUpdateTemplateEntry>& entries, VkDescriptorSet set, const void* data);
  const std::vector<VkWriteDescriptorSet>& writes() const { return writes_; }

 private:
  // Reserved up front: the writes point into them.
  std::vector<VkDescriptorImageInfo> images_;
  std::vector<VkDescriptorBufferInfo> buffers_;
  std::vector<VkBufferView> views_;
  std::vector<VkWriteDescriptorSetInlineUniformBlock> blocks_;
  std::vector<VkWriteDescriptorSet> writes_;
};

TemplateWrites::TemplateWrites(const std::vector<VkDescriptorUpdateTemplateEntry>& entries, VkDescriptorSet set,
                               const void* data) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  size_t total = 0;
  for (const auto& e : entries) total += e.descriptorCount;
  images_.reserve(total);
  buffers_.reserve(total);
  views_.reserve(total);
  blocks_.reserve(entries.size());
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
      blocks_.push_back({VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET_INLINE_UNIFORM_BLOCK, nullptr, e.descriptorCount, at});
      write.pNext = &blocks_.back();
    } else if (vk::writes_images(e.descriptorType)) {
      write.pImageInfo = images_.data() + images_.size();
      for (uint32_t i = 0; i < e.descriptorCount; ++i)
        images_.push_back(*reinterpret_cast<const VkDescriptorImageInfo*>(at + i * e.stride));
    } else if (vk::writes_buffers(e.descriptorType)) {
      write.pBufferInfo = buffers_.data() + buffers_.size();
      for (uint32_t i = 0; i < e.descriptorCount; ++i)
        buffers_.push_back(*reinterpret_cast<const VkDescriptorBufferInfo*>(at + i * e.stride));
    } else if (vk::writes_texel_buffers(e.descriptorType)) {
      write.pTexelBufferView = views_.data() + views_.size();
      for (uint32_t i = 0; i < e.descriptorCount; ++i)
        views_.push_back(*reinterpret_cast<const VkBufferView*>(at + i * e.stride));
    } else {
      LOG_ERROR("Vulkan: descriptor update template: descriptor type %d is not supported by RGPU",
                static_cast<int>(e.descriptorType));
      continue;
    }
    writes_.push_back(write);
  }
}

// A copy of the template's description; false (logged) for an unknown template.
bool find_template(Device* device, VkDescriptorUpdateTemplate handle, Template& out) {
  std::lock_guard lock(device->mutex);
  auto it = device->templates.find(vk::to_wire(handle));
  if (it == device->templates.end()) {
    LOG_ERROR("Vulkan: an update through an unknown descriptor update template");
    return false;
  }
  out = it->second;
  return true;
}
}  // namespace

VKAPI_ATTR VkResult VKAPI_CALL CreateDescriptorUpdateTemplate(VkDevice handle,
                                                              const VkDescriptorUpdateTemplateCreateInfo* info,
                                                              const VkAllocationCallbacks* allocator,
                                                              VkDescriptorUpdateTemplate* out) {
  *out = new_handle<VkDescriptorUpdateTemplate>();
  Device* device = from_handle(handle);
  {
    std::lock_guard lock(device->mutex);
    auto& stored = device->templates[vk::to_wire(*out)];
    stored.entries.assign(info->pDescriptorUpdateEntries,
                          info->pDescriptorUpdateEntries + info->descriptorUpdateEntryCount);
    stored.bind_point = info->pipelineBindPoint;
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
  Template found{};
  if (!find_template(from_handle(handle), update_template, found)) return;
  const TemplateWrites writes(found.entries, set, data);
  Call call(handle, vk::CMD_vkUpdateDescriptorSets, "vkUpdateDescriptorSetWithTemplate");
  encode_vkUpdateDescriptorSets(call.args(), handle, static_cast<uint32_t>(writes.writes().size()),
                                writes.writes().data(), 0, nullptr);
  call.send_pipelined();
}

// Recorded as the vkCmdPushDescriptorSetKHR it stands for.
VKAPI_ATTR void VKAPI_CALL CmdPushDescriptorSetWithTemplateKHR(VkCommandBuffer buffer,
                                                               VkDescriptorUpdateTemplate update_template,
                                                               VkPipelineLayout layout, uint32_t set, const void* data) {
  Template found{};
  if (!find_template(from_handle(buffer)->device, update_template, found)) return;
  const TemplateWrites writes(found.entries, VK_NULL_HANDLE, data);
  Recording rec(buffer, vk::CMD_vkCmdPushDescriptorSetKHR);
  encode_vkCmdPushDescriptorSetKHR(rec.args(), buffer, found.bind_point, layout, set,
                                   static_cast<uint32_t>(writes.writes().size()), writes.writes().data());
}

}  // namespace rgpu::icd
