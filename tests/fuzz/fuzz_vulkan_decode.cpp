// libFuzzer target: the server's decoders of Vulkan structs (generated from vk.xml) on arbitrary
// bytes. Input: byte 0 picks the struct, the rest is its wire form. Only WireError may come out;
// a crash, a sanitizer report or another exception is a bug. A decoded struct is encoded again,
// which walks every pointer the decoder made.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "vk_codec.gen.hpp"

namespace {

using namespace rgpu::vk;

// Ids up to 4096 are live objects of any type; others are refused, as the server refuses them.
class AnyHandle : public HandleResolver {
 public:
  uint64_t resolve(uint64_t id, VkObjectType) override {
    if (id > 4096) throw rgpu::WireError("unknown handle");
    return id;
  }
};

template <typename Struct>
void decode(std::span<const uint8_t> bytes) {
  Arena arena;
  AnyHandle handles;
  DecodeContext ctx{arena, handles};
  rgpu::WireReader reader(bytes, "fuzz");
  try {
    Struct s{};
    get(reader, s, ctx);
    rgpu::WireWriter again;
    put(again, s);
  } catch (const rgpu::WireError&) {
  }
}

using Decoder = void (*)(std::span<const uint8_t>);
const Decoder kDecoders[] = {
    decode<VkDeviceCreateInfo>,           decode<VkGraphicsPipelineCreateInfo>,
    decode<VkComputePipelineCreateInfo>,  decode<VkWriteDescriptorSet>,
    decode<VkSubmitInfo>,                 decode<VkSubmitInfo2>,
    decode<VkRenderingInfo>,              decode<VkRenderPassCreateInfo2>,
    decode<VkDescriptorSetLayoutCreateInfo>, decode<VkImageCreateInfo>,
    decode<VkBufferCreateInfo>,           decode<VkDependencyInfo>,
    decode<VkBindSparseInfo>,             decode<VkShaderModuleCreateInfo>,
    decode<VkPipelineLayoutCreateInfo>,   decode<VkFramebufferCreateInfo>,
    decode<VkRenderPassBeginInfo>,        decode<VkCopyBufferToImageInfo2>,
    decode<VkPhysicalDeviceImageFormatInfo2>, decode<VkSemaphoreWaitInfo>,
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t count = sizeof kDecoders / sizeof kDecoders[0];
  kDecoders[data[0] % count]({data + 1, size - 1});
  return 0;
}
