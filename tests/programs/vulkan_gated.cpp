// A Vulkan program that a test can hold at a point of its run (a "gate": until a file exists),
// so that something can happen to it, or beside it, meanwhile.
//
//   vulkan_gated compute [--gate FILE]
//     Three rounds of a compute dispatch, each checked and printed, then "at the gate"; until FILE
//     exists it goes on dispatching (checked, not printed), then three more printed rounds and
//     PASS. What it prints does not depend on how long it waited.
//   vulkan_gated allocate MIB... [--gate FILE]
//     Allocates each size in turn (keeping what it got) and prints what vkAllocateMemory returned,
//     then "holding"; once FILE exists it exits without freeing anything, as a crashing program
//     would. Exits 0 unless something other than an allocation failed.
//   vulkan_gated wait MS|forever [--gate FILE]
//     One round as above, then "at the gate"; once FILE exists, submits another and waits for its
//     fence at most MS milliseconds (forever: UINT64_MAX), prints "vkWaitForFences: RESULT after
//     N ms" and exits 0 without cleaning up, whatever the wait returned.
//   vulkan_gated idle-wait MS
//     One round, a wait of MS milliseconds for a fence nothing signals ("idle wait: RESULT"), one
//     more round, then PASS.
//
// Without --gate the gate is open.
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "vulkan_compute.comp.h"
#include "vulkan_program.hpp"

namespace {

using namespace vulkan_program;

constexpr uint32_t kElements = 1 << 16;
constexpr VkDeviceSize kBytes = kElements * sizeof(uint32_t);
constexpr uint32_t kGroupSize = 64;  // the shader's local_size_x

struct PushConstants {  // the shader's; stage 0: out = in * scale + add
  uint32_t scale;
  uint32_t add;
  uint32_t count;
  uint32_t stage;
};

bool gate_open(const char* gate) { return gate == nullptr || ::access(gate, F_OK) == 0; }

void wait_for_gate(const char* gate) {
  while (!gate_open(gate)) ::usleep(1000);
}

class Compute {
 public:
  Compute() {
    instance_ = create_instance("vulkan_gated", VK_API_VERSION_1_1);
    gpu_ = pick_gpu(instance_, VK_QUEUE_COMPUTE_BIT);
    device_ = create_device(gpu_, nullptr);
    vkGetDeviceQueue(device_, gpu_.queue_family, 0, &queue_);
    const MemoryChoice host{VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, 0, 0};
    input_ = create_buffer(device_, gpu_, kBytes, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, host);
    output_ = create_buffer(device_, gpu_, kBytes, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, host);
    input_data_ = static_cast<uint32_t*>(map(device_, input_.memory.memory));
    output_data_ = static_cast<uint32_t*>(map(device_, output_.memory.memory));

    VkDescriptorSetLayoutBinding bindings[2]{};
    for (uint32_t i = 0; i < 2; ++i)
      bindings[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
    VkDescriptorSetLayoutCreateInfo set_info{};
    set_info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
    set_info.bindingCount = 2;
    set_info.pBindings = bindings;
    const VkDescriptorSetLayout set_layout = VK_CREATE(vkCreateDescriptorSetLayout, device_, set_info);
    const VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(PushConstants)};
    layout_ = create_pipeline_layout(device_, &set_layout, &push);

    VkComputePipelineCreateInfo pipeline_info{};
    pipeline_info.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
    pipeline_info.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    pipeline_info.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    pipeline_info.stage.module = create_shader(device_, vulkan_compute_comp_spv);
    pipeline_info.stage.pName = "main";
    pipeline_info.layout = layout_;
    VK_CHECK(vkCreateComputePipelines, device_, VK_NULL_HANDLE, 1, &pipeline_info, nullptr, &pipeline_);

    const VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 2};
    VkDescriptorPoolCreateInfo pool_info{};
    pool_info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
    pool_info.maxSets = 1;
    pool_info.poolSizeCount = 1;
    pool_info.pPoolSizes = &size;
    const VkDescriptorPool pool = VK_CREATE(vkCreateDescriptorPool, device_, pool_info);
    VkDescriptorSetAllocateInfo allocate{};
    allocate.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
    allocate.descriptorPool = pool;
    allocate.descriptorSetCount = 1;
    allocate.pSetLayouts = &set_layout;
    VK_CHECK(vkAllocateDescriptorSets, device_, &allocate, &set_);
    const VkDescriptorBufferInfo buffers[2] = {{input_.buffer, 0, VK_WHOLE_SIZE}, {output_.buffer, 0, VK_WHOLE_SIZE}};
    VkWriteDescriptorSet write{};
    write.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
    write.dstSet = set_;
    write.descriptorCount = 2;
    write.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    write.pBufferInfo = buffers;
    vkUpdateDescriptorSets(device_, 1, &write, 0, nullptr);
    commands_ = create_commands(device_, gpu_.queue_family);
    fence_ = create_fence(device_);
  }

  // One dispatch on data made from `round`; the checksum of its results, which must be the CPU's.
  uint64_t round(uint32_t round) {
    const PushConstants parameters = record(round);
    submit_and_wait(device_, queue_, commands_.buffer, fence_);
    for (uint32_t i = 0; i < kElements; ++i)
      if (output_data_[i] != input_data_[i] * parameters.scale + parameters.add) fail("a result is not the CPU's");
    return fnv1a(output_data_, kBytes);
  }

  // The dispatch of round(), submitted with the fence that wait() waits for.
  void submit(uint32_t round) {
    record(round);
    VkSubmitInfo submit{};
    submit.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    submit.commandBufferCount = 1;
    submit.pCommandBuffers = &commands_.buffer;
    VK_CHECK(vkQueueSubmit, queue_, 1, &submit, fence_);
  }
  VkResult wait(uint64_t timeout) { return vkWaitForFences(device_, 1, &fence_, VK_TRUE, timeout); }
  // A wait for a fence that no submission signals: it can only time out.
  VkResult wait_for_nothing(uint64_t timeout) {
    const VkFence never = create_fence(device_);
    const VkResult result = vkWaitForFences(device_, 1, &never, VK_TRUE, timeout);
    vkDestroyFence(device_, never, nullptr);
    return result;
  }

 private:
  // Fills the input from `round` and records the dispatch; its parameters.
  PushConstants record(uint32_t round) {
    uint32_t x = 0x9e3779b9u * (round + 1);
    for (uint32_t i = 0; i < kElements; ++i) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      input_data_[i] = x;
    }
    const PushConstants parameters{2 * round + 3, round * 7919u, kElements, 0};
    begin(device_, commands_);
    vkCmdBindPipeline(commands_.buffer, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline_);
    vkCmdBindDescriptorSets(commands_.buffer, VK_PIPELINE_BIND_POINT_COMPUTE, layout_, 0, 1, &set_, 0, nullptr);
    vkCmdPushConstants(commands_.buffer, layout_, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof parameters, &parameters);
    vkCmdDispatch(commands_.buffer, kElements / kGroupSize, 1, 1);
    buffer_barrier(commands_.buffer, output_.buffer, {VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT},
                   {VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT});
    VK_CHECK(vkEndCommandBuffer, commands_.buffer);
    return parameters;
  }

  VkInstance instance_ = VK_NULL_HANDLE;
  Gpu gpu_;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  Buffer input_, output_;
  uint32_t* input_data_ = nullptr;
  uint32_t* output_data_ = nullptr;
  VkPipelineLayout layout_ = VK_NULL_HANDLE;
  VkPipeline pipeline_ = VK_NULL_HANDLE;
  VkDescriptorSet set_ = VK_NULL_HANDLE;
  Commands commands_;
  VkFence fence_ = VK_NULL_HANDLE;
};

int compute(const char* gate) {
  Compute compute;
  for (uint32_t round = 1; round <= 6; ++round) {
    std::printf("round %u: checksum 0x%016" PRIx64 "\n", round, compute.round(round));
    if (round != 3) continue;
    std::printf("at the gate\n");
    for (uint32_t unprinted = 100; !gate_open(gate); ++unprinted) compute.round(unprinted);
  }
  std::printf("PASS\n");
  return 0;
}

std::string result_name(VkResult result) {
  switch (result) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    default: return "VkResult " + std::to_string(result);
  }
}

int wait(uint64_t timeout, const char* gate) {
  Compute compute;
  std::printf("round 1: checksum 0x%016" PRIx64 "\n", compute.round(1));
  std::printf("at the gate\n");
  wait_for_gate(gate);
  compute.submit(2);
  const auto start = std::chrono::steady_clock::now();
  const VkResult result = compute.wait(timeout);
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  std::printf("vkWaitForFences: %s after %lld ms\n", result_name(result).c_str(), static_cast<long long>(waited.count()));
  std::fflush(stdout);
  std::_Exit(0);
}

int idle_wait(uint64_t timeout) {
  Compute compute;
  std::printf("round 1: checksum 0x%016" PRIx64 "\n", compute.round(1));
  std::printf("idle wait: %s\n", result_name(compute.wait_for_nothing(timeout)).c_str());
  std::printf("round 2: checksum 0x%016" PRIx64 "\n", compute.round(2));
  std::printf("PASS\n");
  return 0;
}

int allocate(const std::vector<uint64_t>& mib, const char* gate) {
  const VkInstance instance = create_instance("vulkan_gated", VK_API_VERSION_1_1);
  const Gpu gpu = pick_gpu(instance, VK_QUEUE_COMPUTE_BIT);
  const VkDevice device = create_device(gpu, nullptr);
  for (uint64_t size : mib) {
    VkMemoryAllocateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    info.allocationSize = size << 20;
    info.memoryTypeIndex = find_memory_type(gpu.memory, ~0u, {0, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0});
    VkDeviceMemory memory = VK_NULL_HANDLE;
    const VkResult result = vkAllocateMemory(device, &info, nullptr, &memory);
    if (result != VK_SUCCESS && result != VK_ERROR_OUT_OF_DEVICE_MEMORY) check(result, "vkAllocateMemory");
    std::printf("allocate %" PRIu64 " MiB: %s\n", size, result == VK_SUCCESS ? "VK_SUCCESS" : "VK_ERROR_OUT_OF_DEVICE_MEMORY");
  }
  std::printf("holding\n");
  wait_for_gate(gate);
  std::fflush(stdout);
  std::_Exit(0);
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: vulkan_gated compute [--gate FILE] | allocate MIB... [--gate FILE] | wait MS|forever "
               "[--gate FILE] | idle-wait MS\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a test reads the output while the program runs
  if (argc < 2) usage();
  const std::string mode = argv[1];
  const char* gate = nullptr;
  std::vector<uint64_t> numbers;  // sizes in MiB, or a timeout in milliseconds
  bool forever = false;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--gate" && i + 1 < argc) {
      gate = argv[++i];
    } else if (mode == "wait" && arg == "forever") {
      forever = true;
    } else if (mode == "allocate" || mode == "wait" || mode == "idle-wait") {
      char* end = nullptr;
      numbers.push_back(std::strtoull(argv[i], &end, 10));
      if (end == argv[i] || *end != '\0') usage();
    } else {
      usage();
    }
  }
  if (mode == "compute") return compute(gate);
  if (mode == "allocate" && !numbers.empty()) return allocate(numbers, gate);
  if (mode == "wait" && numbers.size() + forever == 1) return wait(forever ? UINT64_MAX : numbers[0] * 1000000, gate);
  if (mode == "idle-wait" && numbers.size() == 1 && gate == nullptr) return idle_wait(numbers[0] * 1000000);
  usage();
}
