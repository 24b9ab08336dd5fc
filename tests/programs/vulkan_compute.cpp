// A compute workload through the system loader: storage buffers written by the host, a descriptor
// set, push constants, a specialization constant, a fill, two dependent dispatches and a copy.
// It runs four times with different data and parameters: twice in host-coherent memory that stays
// mapped, twice with explicit flushes and invalidations (in non-coherent memory where the device
// has some). Prints each run's checksum and a few values, nothing about the device, so that every
// correct driver prints the same; exits 0 only when every value is the CPU's.
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

#include "vulkan_compute.comp.h"
#include "vulkan_program.hpp"

namespace {

using namespace vulkan_program;

constexpr uint32_t kElements = 1 << 16;
constexpr VkDeviceSize kBytes = kElements * sizeof(uint32_t);
constexpr uint32_t kGroupSize = 64;          // the shader's local_size_x
constexpr uint32_t kSalt = 0x9e3779b9;       // the shader's specialization constant 0
constexpr uint32_t kUnwritten = 0xdeadbeef;  // what the fill leaves from `count` on

struct PushConstants {
  uint32_t scale;
  uint32_t add;
  uint32_t count;
  uint32_t stage;
};

struct Run {
  uint32_t seed;
  PushConstants parameters;
};

std::vector<uint32_t> host_data(uint32_t seed) {
  std::vector<uint32_t> out(kElements);
  uint32_t x = seed;
  for (auto& value : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    value = x;
  }
  return out;
}

std::vector<uint32_t> expected_results(const std::vector<uint32_t>& input, const PushConstants& p) {
  std::vector<uint32_t> out(kElements, kUnwritten);
  for (uint32_t i = 0; i < p.count; ++i) out[i] = ((input[i] * p.scale + p.add) ^ (input[p.count - 1 - i] >> 3)) + kSalt;
  return out;
}

struct ComputePipeline {
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkPipeline pipeline = VK_NULL_HANDLE;
  VkDescriptorPool pool = VK_NULL_HANDLE;
  VkDescriptorSet set = VK_NULL_HANDLE;
};

VkDescriptorSetLayout create_set_layout(VkDevice device, VkDescriptorSetLayoutCreateFlags flags = 0) {
  VkDescriptorSetLayoutBinding bindings[2]{};
  for (uint32_t i = 0; i < 2; ++i) {
    bindings[i].binding = i;
    bindings[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    bindings[i].descriptorCount = 1;
    bindings[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
  info.flags = flags;
  info.bindingCount = 2;
  info.pBindings = bindings;
  return VK_CREATE(vkCreateDescriptorSetLayout, device, info);
}

// A pipeline cache's data starts with a header naming its version and the device's vendor.
void report_cache(VkDevice device, VkPipelineCache cache) {
  size_t size = 0;
  VK_CHECK(vkGetPipelineCacheData, device, cache, &size, nullptr);
  std::vector<uint8_t> data(size);
  VK_CHECK(vkGetPipelineCacheData, device, cache, &size, data.data());
  VkPipelineCacheHeaderVersionOne header{};
  if (size >= sizeof header) std::memcpy(&header, data.data(), sizeof header);
  std::printf("pipeline cache: %s, header version %u\n", size >= sizeof header ? "has data" : "too short",
              static_cast<unsigned>(header.headerVersion));
}

VkPipeline create_compute_pipeline(VkDevice device, VkPipelineLayout layout) {
  VkShaderModule shader = create_shader(device, vulkan_compute_comp_spv);
  VkSpecializationMapEntry entry{0, 0, sizeof kSalt};
  VkSpecializationInfo specialization{1, &entry, sizeof kSalt, &kSalt};
  VkComputePipelineCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
  info.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  info.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  info.stage.module = shader;
  info.stage.pName = "main";
  info.stage.pSpecializationInfo = &specialization;
  info.layout = layout;
  // Through a pipeline cache, whose data (the two-call idiom) is checked afterwards.
  const VkPipelineCacheCreateInfo cache_info{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO, nullptr, 0, 0, nullptr};
  const VkPipelineCache cache = VK_CREATE(vkCreatePipelineCache, device, cache_info);
  VkPipeline pipeline = VK_NULL_HANDLE;
  VK_CHECK(vkCreateComputePipelines, device, cache, 1, &info, nullptr, &pipeline);
  vkDestroyShaderModule(device, shader, nullptr);
  report_cache(device, cache);
  vkDestroyPipelineCache(device, cache, nullptr);
  return pipeline;
}

VkDescriptorPool create_descriptor_pool(VkDevice device) {
  VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 2};
  VkDescriptorPoolCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
  info.flags = VK_DESCRIPTOR_POOL_CREATE_FREE_DESCRIPTOR_SET_BIT;
  info.maxSets = 1;
  info.poolSizeCount = 1;
  info.pPoolSizes = &size;
  return VK_CREATE(vkCreateDescriptorPool, device, info);
}

ComputePipeline create_pipeline(VkDevice device) {
  ComputePipeline out;
  out.set_layout = create_set_layout(device);
  const VkPushConstantRange push_constants{VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(PushConstants)};
  out.layout = create_pipeline_layout(device, &out.set_layout, &push_constants);
  out.pipeline = create_compute_pipeline(device, out.layout);
  out.pool = create_descriptor_pool(device);
  VkDescriptorSetAllocateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
  info.descriptorPool = out.pool;
  info.descriptorSetCount = 1;
  info.pSetLayouts = &out.set_layout;
  VK_CHECK(vkAllocateDescriptorSets, device, &info, &out.set);
  return out;
}

void destroy_pipeline(VkDevice device, const ComputePipeline& p) {
  VK_CHECK(vkFreeDescriptorSets, device, p.pool, 1, &p.set);
  vkDestroyDescriptorPool(device, p.pool, nullptr);
  vkDestroyPipeline(device, p.pipeline, nullptr);
  vkDestroyPipelineLayout(device, p.layout, nullptr);
  vkDestroyDescriptorSetLayout(device, p.set_layout, nullptr);
}

void bind_buffers(VkDevice device, VkDescriptorSet set, VkBuffer input, VkBuffer output) {
  VkDescriptorBufferInfo buffers[2] = {{input, 0, VK_WHOLE_SIZE}, {output, 0, VK_WHOLE_SIZE}};
  VkWriteDescriptorSet write{};
  write.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
  write.dstSet = set;
  write.dstBinding = 0;
  write.descriptorCount = 2;  // runs on into binding 1
  write.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
  write.pBufferInfo = buffers;
  vkUpdateDescriptorSets(device, 1, &write, 0, nullptr);
}

// The same through a descriptor update template (Vulkan 1.1), which reads the buffer infos from
// a struct of the program's own layout. Devices without it are bound as above.
void bind_buffers_with_template(VkDevice device, VkDescriptorSetLayout layout, VkDescriptorSet set, VkBuffer input,
                                VkBuffer output) {
  auto create = reinterpret_cast<PFN_vkCreateDescriptorUpdateTemplate>(
      vkGetDeviceProcAddr(device, "vkCreateDescriptorUpdateTemplate"));
  auto update = reinterpret_cast<PFN_vkUpdateDescriptorSetWithTemplate>(
      vkGetDeviceProcAddr(device, "vkUpdateDescriptorSetWithTemplate"));
  auto destroy = reinterpret_cast<PFN_vkDestroyDescriptorUpdateTemplate>(
      vkGetDeviceProcAddr(device, "vkDestroyDescriptorUpdateTemplate"));
  static bool told = false;  // said once, as the output is compared between drivers
  const bool available = create && update && destroy;
  if (!told) std::printf("binding with %s\n", available ? "a descriptor update template" : "vkUpdateDescriptorSets");
  told = true;
  if (!available) return bind_buffers(device, set, input, output);
  struct Bindings {
    uint64_t unrelated;  // the entries point past it
    VkDescriptorBufferInfo output;
    VkDescriptorBufferInfo input;
  } data{0, {output, 0, VK_WHOLE_SIZE}, {input, 0, VK_WHOLE_SIZE}};
  const VkDescriptorUpdateTemplateEntry entries[2] = {
      {0, 0, 1, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, offsetof(Bindings, input), sizeof(VkDescriptorBufferInfo)},
      {1, 0, 1, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, offsetof(Bindings, output), sizeof(VkDescriptorBufferInfo)},
  };
  VkDescriptorUpdateTemplateCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_UPDATE_TEMPLATE_CREATE_INFO;
  info.descriptorUpdateEntryCount = 2;
  info.pDescriptorUpdateEntries = entries;
  info.templateType = VK_DESCRIPTOR_UPDATE_TEMPLATE_TYPE_DESCRIPTOR_SET;
  info.descriptorSetLayout = layout;
  VkDescriptorUpdateTemplate update_template = VK_NULL_HANDLE;
  VK_CHECK(create, device, &info, nullptr, &update_template);
  update(device, set, update_template, &data);
  destroy(device, update_template, nullptr);
}

// Push descriptors (VK_KHR_push_descriptor): the buffers are pushed while recording, directly or
// through a push descriptor update template, instead of living in a descriptor set.
struct PushDescriptors {
  PFN_vkCmdPushDescriptorSetKHR push = nullptr;
  PFN_vkCmdPushDescriptorSetWithTemplateKHR push_with_template = nullptr;
  VkDescriptorUpdateTemplate update_template = VK_NULL_HANDLE;  // pushes through it when set
};

struct Context {
  VkDevice device;
  VkQueue queue;
  const Gpu& gpu;
  const ComputePipeline& pipeline;
  const Commands& commands;
  VkFence fence;
  const PushDescriptors* push = nullptr;  // null: the pipeline's descriptor set
};

// Buffers of one pass: the input and the read-back buffer in the pass's host-visible memory, the
// output wherever the device likes it best.
struct PassBuffers {
  Buffer input;
  Buffer output;
  Buffer readback;
};

void push_buffers(VkCommandBuffer cb, const Context& c, const PassBuffers& b) {
  const VkDescriptorBufferInfo buffers[2] = {{b.input.buffer, 0, VK_WHOLE_SIZE}, {b.output.buffer, 0, VK_WHOLE_SIZE}};
  if (c.push->update_template != VK_NULL_HANDLE) {
    c.push->push_with_template(cb, c.push->update_template, c.pipeline.layout, 0, buffers);
    return;
  }
  VkWriteDescriptorSet write{};
  write.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
  write.dstBinding = 0;
  write.descriptorCount = 2;
  write.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
  write.pBufferInfo = buffers;
  c.push->push(cb, VK_PIPELINE_BIND_POINT_COMPUTE, c.pipeline.layout, 0, 1, &write);
}

void record(const Context& c, const PassBuffers& b, const PushConstants& parameters) {
  VkCommandBuffer cb = c.commands.buffer;
  begin(c.device, c.commands);
  vkCmdFillBuffer(cb, b.output.buffer, 0, VK_WHOLE_SIZE, kUnwritten);
  buffer_barrier(cb, b.output.buffer, {VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT},
                 {VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT});
  vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, c.pipeline.pipeline);
  if (c.push)
    push_buffers(cb, c, b);
  else
    vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, c.pipeline.layout, 0, 1, &c.pipeline.set, 0, nullptr);
  PushConstants first = parameters;
  first.stage = 0;
  vkCmdPushConstants(cb, c.pipeline.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof first, &first);
  const uint32_t groups = (parameters.count + kGroupSize - 1) / kGroupSize;
  vkCmdDispatch(cb, groups, 1, 1);
  VkMemoryBarrier between{};
  between.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
  between.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
  between.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
  vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &between,
                       0, nullptr, 0, nullptr);
  // Only the stage changes: the other push constants stay as they were.
  const uint32_t second_stage = 1;
  vkCmdPushConstants(cb, c.pipeline.layout, VK_SHADER_STAGE_COMPUTE_BIT, offsetof(PushConstants, stage),
                     sizeof second_stage, &second_stage);
  vkCmdDispatch(cb, groups, 1, 1);
  buffer_barrier(cb, b.output.buffer, {VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT},
                 {VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT});
  VkBufferCopy region{0, 0, kBytes};
  vkCmdCopyBuffer(cb, b.output.buffer, b.readback.buffer, 1, &region);
  buffer_barrier(cb, b.readback.buffer, {VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT},
                 {VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT});
  VK_CHECK(vkEndCommandBuffer, cb);
}

// Compares and prints one run's results; true when all are right.
bool report(int number, const Run& run, const std::vector<uint32_t>& results, const std::vector<uint32_t>& expected) {
  uint32_t mismatches = 0;
  for (uint32_t i = 0; i < kElements; ++i) mismatches += results[i] != expected[i];
  const PushConstants& p = run.parameters;
  std::printf("compute run %d: %u elements, count %u, scale %u, add %u, checksum 0x%016" PRIx64 ", mismatches %u\n",
              number, kElements, p.count, p.scale, p.add, fnv1a(results.data(), kBytes), mismatches);
  std::printf("  samples");
  for (uint32_t i : std::set<uint32_t>{0, 1, kElements / 2, p.count - 1, kElements - 1})
    std::printf(" [%u]=0x%08x", i, results[i]);
  std::printf("\n");
  return mismatches == 0;
}

// Runs each of `runs` in buffers made for the pass. With `explicit_sync`, memory is mapped for each
// access, flushed after writing and invalidated before reading; otherwise it stays mapped throughout.
bool run_pass(const Context& c, MemoryChoice host, bool explicit_sync, const std::vector<Run>& runs, int& number) {
  PassBuffers b;
  b.input = create_buffer(c.device, c.gpu, kBytes, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, host);
  b.output = create_buffer(c.device, c.gpu, kBytes,
                           VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                               VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                           {0, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0});
  b.readback = create_buffer(c.device, c.gpu, kBytes, VK_BUFFER_USAGE_TRANSFER_DST_BIT, host);
  // The second pass binds through a descriptor update template; push passes bind while recording.
  if (!c.push && explicit_sync)
    bind_buffers_with_template(c.device, c.pipeline.set_layout, c.pipeline.set, b.input.buffer, b.output.buffer);
  else if (!c.push)
    bind_buffers(c.device, c.pipeline.set, b.input.buffer, b.output.buffer);
  void* input = explicit_sync ? nullptr : map(c.device, b.input.memory.memory);
  void* readback = explicit_sync ? nullptr : map(c.device, b.readback.memory.memory);

  bool ok = true;
  for (const Run& run : runs) {
    const std::vector<uint32_t> data = host_data(run.seed);
    if (explicit_sync) {
      input = map(c.device, b.input.memory.memory);
      std::memcpy(input, data.data(), kBytes);
      const VkMappedMemoryRange range = whole_range(b.input.memory.memory);
      VK_CHECK(vkFlushMappedMemoryRanges, c.device, 1, &range);
      vkUnmapMemory(c.device, b.input.memory.memory);
    } else {
      std::memcpy(input, data.data(), kBytes);
    }
    record(c, b, run.parameters);
    submit_and_wait(c.device, c.queue, c.commands.buffer, c.fence);
    std::vector<uint32_t> results(kElements);
    if (explicit_sync) {
      readback = map(c.device, b.readback.memory.memory);
      const VkMappedMemoryRange range = whole_range(b.readback.memory.memory);
      VK_CHECK(vkInvalidateMappedMemoryRanges, c.device, 1, &range);
    }
    std::memcpy(results.data(), readback, kBytes);
    if (explicit_sync) vkUnmapMemory(c.device, b.readback.memory.memory);
    ok &= report(++number, run, results, expected_results(data, run.parameters));
  }

  if (!explicit_sync) {
    vkUnmapMemory(c.device, b.input.memory.memory);
    vkUnmapMemory(c.device, b.readback.memory.memory);
  }
  destroy_buffer(c.device, b.readback);
  destroy_buffer(c.device, b.output);
  destroy_buffer(c.device, b.input);
  return ok;
}

ComputePipeline create_push_pipeline(VkDevice device) {
  ComputePipeline out;
  out.set_layout = create_set_layout(device, VK_DESCRIPTOR_SET_LAYOUT_CREATE_PUSH_DESCRIPTOR_BIT_KHR);
  const VkPushConstantRange push_constants{VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(PushConstants)};
  out.layout = create_pipeline_layout(device, &out.set_layout, &push_constants);
  out.pipeline = create_compute_pipeline(device, out.layout);
  return out;
}

// Runs 5 and 6 bind their buffers with push descriptors: pushed directly, then through a template
// (whose data is the two VkDescriptorBufferInfo, back to back).
bool run_push_passes(const Context& base, MemoryChoice host, int& number) {
  VkDevice device = base.device;
  const ComputePipeline pipeline = create_push_pipeline(device);
  PushDescriptors push;
  push.push = reinterpret_cast<PFN_vkCmdPushDescriptorSetKHR>(vkGetDeviceProcAddr(device, "vkCmdPushDescriptorSetKHR"));
  push.push_with_template = reinterpret_cast<PFN_vkCmdPushDescriptorSetWithTemplateKHR>(
      vkGetDeviceProcAddr(device, "vkCmdPushDescriptorSetWithTemplateKHR"));
  if (!push.push || !push.push_with_template) fail("vkGetDeviceProcAddr returned no push descriptor command");
  const Context with_pipeline{base.device, base.queue, base.gpu, pipeline, base.commands, base.fence, &push};
  bool ok = run_pass(with_pipeline, host, false, {{5, {9, 17, kElements - 3, 0}}}, number);

  const VkDescriptorUpdateTemplateEntry entry{0, 0, 2, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 0,
                                              sizeof(VkDescriptorBufferInfo)};
  VkDescriptorUpdateTemplateCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_UPDATE_TEMPLATE_CREATE_INFO;
  info.descriptorUpdateEntryCount = 1;
  info.pDescriptorUpdateEntries = &entry;
  info.templateType = VK_DESCRIPTOR_UPDATE_TEMPLATE_TYPE_PUSH_DESCRIPTORS_KHR;
  info.pipelineBindPoint = VK_PIPELINE_BIND_POINT_COMPUTE;
  info.pipelineLayout = pipeline.layout;
  info.set = 0;
  VK_CHECK(vkCreateDescriptorUpdateTemplate, device, &info, nullptr, &push.update_template);
  ok &= run_pass(with_pipeline, host, false, {{6, {11, 19, kElements / 2, 0}}}, number);
  vkDestroyDescriptorUpdateTemplate(device, push.update_template, nullptr);
  vkDestroyPipeline(device, pipeline.pipeline, nullptr);
  vkDestroyPipelineLayout(device, pipeline.layout, nullptr);
  vkDestroyDescriptorSetLayout(device, pipeline.set_layout, nullptr);
  return ok;
}

}  // namespace

// --exit-without-cleanup: leaves the device and its objects behind, as a crashing program would.
int main(int argc, char** argv) {
  const bool leave_objects = argc > 1 && std::strcmp(argv[1], "--exit-without-cleanup") == 0;
  VkInstance instance = create_instance("vulkan_compute", VK_API_VERSION_1_1);
  const Gpu gpu = pick_gpu(instance, VK_QUEUE_COMPUTE_BIT);
  const bool push_descriptors = has_extension(gpu.physical, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME);
  VkDevice device = create_device(gpu, nullptr,
                                  push_descriptors ? std::vector<const char*>{VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME}
                                                   : std::vector<const char*>{});
  VkQueue queue = VK_NULL_HANDLE;
  vkGetDeviceQueue(device, gpu.queue_family, 0, &queue);
  const ComputePipeline pipeline = create_pipeline(device);
  const Commands commands = create_commands(device, gpu.queue_family);
  VkFence fence = create_fence(device);

  const Context context{device, queue, gpu, pipeline, commands, fence};
  const VkMemoryPropertyFlags visible = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT;
  const VkMemoryPropertyFlags coherent = VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  int number = 0;
  bool ok = run_pass(context, {visible | coherent, 0, 0}, false,
                     {{1, {3, 7, kElements, 0}}, {2, {5, 11, kElements - 37, 0}}}, number);
  // Flushing and invalidating coherent memory is allowed, so the pass runs on every device.
  ok &= run_pass(context, {visible, 0, coherent}, true,
                 {{3, {7, 13, kElements - 1000, 0}}, {4, {0xfffffffb, 0x80000001, 1, 0}}}, number);
  std::printf("push descriptors: %s\n", push_descriptors ? "available" : "not supported");
  if (push_descriptors) ok &= run_push_passes(context, {visible | coherent, 0, 0}, number);

  VK_CHECK(vkDeviceWaitIdle, device);
  if (leave_objects) {
    std::printf("%s (exiting without cleanup)\n", ok ? "PASS" : "FAIL");
    std::fflush(stdout);
    std::_Exit(ok ? 0 : 1);
  }
  vkDestroyFence(device, fence, nullptr);
  destroy_commands(device, commands);
  destroy_pipeline(device, pipeline);
  vkDestroyDevice(device, nullptr);
  vkDestroyInstance(instance, nullptr);
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
