// Offscreen rendering through the system loader: a triangle and an indexed quad, flat coloured, from
// vertex and index buffers onto a cleared colour image, copied into a host-visible buffer. By
// default with a render pass and framebuffer; with --dynamic-rendering, the same image with Vulkan
// 1.3's vkCmdBeginRendering. Prints a hash of the pixels, a few pixels and how many pixels have
// each colour, nothing about the device or the mode, so that every correct driver prints the same;
// then PASS when the image looks as drawn. --ppm FILE also writes the image for people to look at.
#include <algorithm>
#include <array>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "vulkan_program.hpp"
#include "vulkan_render.frag.h"
#include "vulkan_render.vert.h"

namespace {

using namespace vulkan_program;

constexpr uint32_t kWidth = 64;
constexpr uint32_t kHeight = 64;
constexpr VkFormat kFormat = VK_FORMAT_R8G8B8A8_UNORM;
constexpr VkDeviceSize kImageBytes = kWidth * kHeight * 4;

using Color = std::array<uint8_t, 4>;
constexpr Color kClear = {32, 32, 64, 255};
constexpr Color kTriangle = {224, 64, 32, 255};
constexpr Color kQuad = {32, 192, 96, 255};

struct Vertex {
  float position[2];
  Color color;  // VK_FORMAT_R8G8B8A8_UNORM
};

// The triangle (drawn first) and then the quad in front of it, around the centre.
constexpr Vertex kVertices[] = {
    {{-0.75f, 0.75f}, kTriangle}, {{0.75f, 0.75f}, kTriangle}, {{0.0f, -0.75f}, kTriangle},
    {{-0.25f, -0.25f}, kQuad},    {{0.25f, -0.25f}, kQuad},    {{-0.25f, 0.25f}, kQuad},
    {{0.25f, 0.25f}, kQuad},
};
constexpr uint32_t kTriangleVertices = 3;
constexpr uint16_t kQuadIndices[] = {0, 1, 2, 2, 1, 3};  // from vertex kTriangleVertices on

struct Options {
  bool dynamic_rendering = false;
  std::string ppm;
};

bool parse(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--dynamic-rendering") {
      options.dynamic_rendering = true;
    } else if (arg == "--ppm" && i + 1 < argc) {
      options.ppm = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--dynamic-rendering] [--ppm FILE]\n", argv[0]);
      return false;
    }
  }
  return true;
}

uint32_t instance_version() {
  auto enumerate = reinterpret_cast<PFN_vkEnumerateInstanceVersion>(
      vkGetInstanceProcAddr(VK_NULL_HANDLE, "vkEnumerateInstanceVersion"));
  uint32_t version = VK_API_VERSION_1_0;
  if (enumerate) VK_CHECK(enumerate, &version);
  return version;
}

bool supports_dynamic_rendering(VkPhysicalDevice gpu, uint32_t instance_api) {
  VkPhysicalDeviceProperties properties{};
  vkGetPhysicalDeviceProperties(gpu, &properties);
  if (instance_api < VK_API_VERSION_1_3 || properties.apiVersion < VK_API_VERSION_1_3) return false;
  VkPhysicalDeviceDynamicRenderingFeatures dynamic{};
  dynamic.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DYNAMIC_RENDERING_FEATURES;
  VkPhysicalDeviceFeatures2 features{};
  features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
  features.pNext = &dynamic;
  vkGetPhysicalDeviceFeatures2(gpu, &features);
  return dynamic.dynamicRendering == VK_TRUE;
}

struct Target {
  VkImage image = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  VkImageView view = VK_NULL_HANDLE;
};

Target create_target(VkDevice device, const Gpu& gpu) {
  Target out;
  VkImageCreateInfo image{};
  image.sType = VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO;
  image.imageType = VK_IMAGE_TYPE_2D;
  image.format = kFormat;
  image.extent = {kWidth, kHeight, 1};
  image.mipLevels = 1;
  image.arrayLayers = 1;
  image.samples = VK_SAMPLE_COUNT_1_BIT;
  image.tiling = VK_IMAGE_TILING_OPTIMAL;
  image.usage = VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT;
  image.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  image.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
  out.image = VK_CREATE(vkCreateImage, device, image);
  VkMemoryRequirements requirements{};
  vkGetImageMemoryRequirements(device, out.image, &requirements);
  out.memory = allocate(device, gpu, requirements, {0, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0}).memory;
  VK_CHECK(vkBindImageMemory, device, out.image, out.memory, 0);
  VkImageViewCreateInfo view{};
  view.sType = VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO;
  view.image = out.image;
  view.viewType = VK_IMAGE_VIEW_TYPE_2D;
  view.format = kFormat;
  view.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
  out.view = VK_CREATE(vkCreateImageView, device, view);
  return out;
}

void destroy_target(VkDevice device, const Target& target) {
  vkDestroyImageView(device, target.view, nullptr);
  vkDestroyImage(device, target.image, nullptr);
  vkFreeMemory(device, target.memory, nullptr);
}

// The vertex and index buffers share one allocation: the indices follow the vertices.
struct Geometry {
  VkBuffer vertices = VK_NULL_HANDLE;
  VkBuffer indices = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
};

VkDeviceSize align_up(VkDeviceSize value, VkDeviceSize alignment) { return (value + alignment - 1) / alignment * alignment; }

Geometry create_geometry(VkDevice device, const Gpu& gpu) {
  Geometry out;
  out.vertices = create_buffer_object(device, sizeof kVertices, VK_BUFFER_USAGE_VERTEX_BUFFER_BIT);
  out.indices = create_buffer_object(device, sizeof kQuadIndices, VK_BUFFER_USAGE_INDEX_BUFFER_BIT);
  VkMemoryRequirements vertex_needs{};
  VkMemoryRequirements index_needs{};
  vkGetBufferMemoryRequirements(device, out.vertices, &vertex_needs);
  vkGetBufferMemoryRequirements(device, out.indices, &index_needs);
  const VkDeviceSize index_offset = align_up(vertex_needs.size, index_needs.alignment);
  VkMemoryRequirements both = vertex_needs;
  both.size = index_offset + index_needs.size;
  both.memoryTypeBits &= index_needs.memoryTypeBits;
  const Memory memory = allocate(device, gpu, both, {VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, 0, 0});
  out.memory = memory.memory;
  VK_CHECK(vkBindBufferMemory, device, out.vertices, out.memory, 0);
  VK_CHECK(vkBindBufferMemory, device, out.indices, out.memory, index_offset);

  auto* bytes = static_cast<uint8_t*>(map(device, out.memory));
  std::memcpy(bytes, kVertices, sizeof kVertices);
  std::memcpy(bytes + index_offset, kQuadIndices, sizeof kQuadIndices);
  if (!(memory.flags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)) {
    const VkMappedMemoryRange range = whole_range(out.memory);
    VK_CHECK(vkFlushMappedMemoryRanges, device, 1, &range);
  }
  vkUnmapMemory(device, out.memory);
  return out;
}

void destroy_geometry(VkDevice device, const Geometry& geometry) {
  vkDestroyBuffer(device, geometry.indices, nullptr);
  vkDestroyBuffer(device, geometry.vertices, nullptr);
  vkFreeMemory(device, geometry.memory, nullptr);
}

// Cleared on load, stored, and left ready to be copied from.
VkRenderPass create_render_pass(VkDevice device) {
  VkAttachmentDescription attachment{0,
                                     kFormat,
                                     VK_SAMPLE_COUNT_1_BIT,
                                     VK_ATTACHMENT_LOAD_OP_CLEAR,
                                     VK_ATTACHMENT_STORE_OP_STORE,
                                     VK_ATTACHMENT_LOAD_OP_DONT_CARE,
                                     VK_ATTACHMENT_STORE_OP_DONT_CARE,
                                     VK_IMAGE_LAYOUT_UNDEFINED,
                                     VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL};
  VkAttachmentReference color{0, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL};
  VkSubpassDescription subpass{};
  subpass.pipelineBindPoint = VK_PIPELINE_BIND_POINT_GRAPHICS;
  subpass.colorAttachmentCount = 1;
  subpass.pColorAttachments = &color;
  VkSubpassDependency to_copy{0,
                              VK_SUBPASS_EXTERNAL,
                              VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT,
                              VK_PIPELINE_STAGE_TRANSFER_BIT,
                              VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT,
                              VK_ACCESS_TRANSFER_READ_BIT,
                              0};
  VkRenderPassCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_RENDER_PASS_CREATE_INFO;
  info.attachmentCount = 1;
  info.pAttachments = &attachment;
  info.subpassCount = 1;
  info.pSubpasses = &subpass;
  info.dependencyCount = 1;
  info.pDependencies = &to_copy;
  return VK_CREATE(vkCreateRenderPass, device, info);
}

VkFramebuffer create_framebuffer(VkDevice device, VkRenderPass pass, VkImageView view) {
  VkFramebufferCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO;
  info.renderPass = pass;
  info.attachmentCount = 1;
  info.pAttachments = &view;
  info.width = kWidth;
  info.height = kHeight;
  info.layers = 1;
  return VK_CREATE(vkCreateFramebuffer, device, info);
}

// For the render pass, or (pass null) for dynamic rendering onto one kFormat attachment. Viewport
// and scissor are dynamic state.
VkPipeline create_pipeline(VkDevice device, VkPipelineLayout layout, VkRenderPass pass) {
  VkShaderModule vertex = create_shader(device, vulkan_render_vert_spv);
  VkShaderModule fragment = create_shader(device, vulkan_render_frag_spv);
  VkPipelineShaderStageCreateInfo stages[2]{};
  for (auto& stage : stages) {
    stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    stage.pName = "main";
  }
  stages[0].stage = VK_SHADER_STAGE_VERTEX_BIT;
  stages[0].module = vertex;
  stages[1].stage = VK_SHADER_STAGE_FRAGMENT_BIT;
  stages[1].module = fragment;

  VkVertexInputBindingDescription binding{0, sizeof(Vertex), VK_VERTEX_INPUT_RATE_VERTEX};
  VkVertexInputAttributeDescription attributes[2] = {
      {0, 0, VK_FORMAT_R32G32_SFLOAT, offsetof(Vertex, position)},
      {1, 0, VK_FORMAT_R8G8B8A8_UNORM, offsetof(Vertex, color)},
  };
  VkPipelineVertexInputStateCreateInfo input{};
  input.sType = VK_STRUCTURE_TYPE_PIPELINE_VERTEX_INPUT_STATE_CREATE_INFO;
  input.vertexBindingDescriptionCount = 1;
  input.pVertexBindingDescriptions = &binding;
  input.vertexAttributeDescriptionCount = 2;
  input.pVertexAttributeDescriptions = attributes;
  VkPipelineInputAssemblyStateCreateInfo assembly{};
  assembly.sType = VK_STRUCTURE_TYPE_PIPELINE_INPUT_ASSEMBLY_STATE_CREATE_INFO;
  assembly.topology = VK_PRIMITIVE_TOPOLOGY_TRIANGLE_LIST;
  VkPipelineViewportStateCreateInfo viewport{};
  viewport.sType = VK_STRUCTURE_TYPE_PIPELINE_VIEWPORT_STATE_CREATE_INFO;
  viewport.viewportCount = 1;
  viewport.scissorCount = 1;
  VkPipelineRasterizationStateCreateInfo raster{};
  raster.sType = VK_STRUCTURE_TYPE_PIPELINE_RASTERIZATION_STATE_CREATE_INFO;
  raster.polygonMode = VK_POLYGON_MODE_FILL;
  raster.cullMode = VK_CULL_MODE_NONE;
  raster.frontFace = VK_FRONT_FACE_COUNTER_CLOCKWISE;
  raster.lineWidth = 1.0f;
  VkPipelineMultisampleStateCreateInfo multisample{};
  multisample.sType = VK_STRUCTURE_TYPE_PIPELINE_MULTISAMPLE_STATE_CREATE_INFO;
  multisample.rasterizationSamples = VK_SAMPLE_COUNT_1_BIT;
  VkPipelineColorBlendAttachmentState blend_attachment{};
  blend_attachment.colorWriteMask =
      VK_COLOR_COMPONENT_R_BIT | VK_COLOR_COMPONENT_G_BIT | VK_COLOR_COMPONENT_B_BIT | VK_COLOR_COMPONENT_A_BIT;
  VkPipelineColorBlendStateCreateInfo blend{};
  blend.sType = VK_STRUCTURE_TYPE_PIPELINE_COLOR_BLEND_STATE_CREATE_INFO;
  blend.attachmentCount = 1;
  blend.pAttachments = &blend_attachment;
  const VkDynamicState dynamic_states[] = {VK_DYNAMIC_STATE_VIEWPORT, VK_DYNAMIC_STATE_SCISSOR};
  VkPipelineDynamicStateCreateInfo dynamic{};
  dynamic.sType = VK_STRUCTURE_TYPE_PIPELINE_DYNAMIC_STATE_CREATE_INFO;
  dynamic.dynamicStateCount = 2;
  dynamic.pDynamicStates = dynamic_states;
  VkPipelineRenderingCreateInfo rendering{};
  rendering.sType = VK_STRUCTURE_TYPE_PIPELINE_RENDERING_CREATE_INFO;
  rendering.colorAttachmentCount = 1;
  rendering.pColorAttachmentFormats = &kFormat;

  VkGraphicsPipelineCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_GRAPHICS_PIPELINE_CREATE_INFO;
  info.pNext = pass == VK_NULL_HANDLE ? &rendering : nullptr;
  info.stageCount = 2;
  info.pStages = stages;
  info.pVertexInputState = &input;
  info.pInputAssemblyState = &assembly;
  info.pViewportState = &viewport;
  info.pRasterizationState = &raster;
  info.pMultisampleState = &multisample;
  info.pColorBlendState = &blend;
  info.pDynamicState = &dynamic;
  info.layout = layout;
  info.renderPass = pass;
  info.subpass = 0;
  VkPipeline pipeline = VK_NULL_HANDLE;
  VK_CHECK(vkCreateGraphicsPipelines, device, VK_NULL_HANDLE, 1, &info, nullptr, &pipeline);
  vkDestroyShaderModule(device, fragment, nullptr);
  vkDestroyShaderModule(device, vertex, nullptr);
  return pipeline;
}

VkClearValue clear_value() {
  VkClearValue value{};
  for (int i = 0; i < 4; ++i) value.color.float32[i] = kClear[i] / 255.0f;
  return value;
}

void image_barrier(VkCommandBuffer cb, VkImage image, VkImageLayout from, VkImageLayout to, Access before,
                   Access after) {
  auto barrier = barrier_of<VkImageMemoryBarrier>(VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER, before, after);
  barrier.oldLayout = from;
  barrier.newLayout = to;
  barrier.image = image;
  barrier.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
  vkCmdPipelineBarrier(cb, before.stage, after.stage, 0, 0, nullptr, 0, nullptr, 1, &barrier);
}

// The draws run inside an occlusion query (query 0 of `queries`), which counts their samples.
void draw(VkCommandBuffer cb, VkPipeline pipeline, const Geometry& geometry, VkQueryPool queries) {
  vkCmdBeginQuery(cb, queries, 0, 0);
  vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline);
  const VkViewport viewport{0.0f, 0.0f, float(kWidth), float(kHeight), 0.0f, 1.0f};
  vkCmdSetViewport(cb, 0, 1, &viewport);
  const VkRect2D scissor{{0, 0}, {kWidth, kHeight}};
  vkCmdSetScissor(cb, 0, 1, &scissor);
  const VkDeviceSize offset = 0;
  vkCmdBindVertexBuffers(cb, 0, 1, &geometry.vertices, &offset);
  vkCmdDraw(cb, kTriangleVertices, 1, 0, 0);
  vkCmdBindIndexBuffer(cb, geometry.indices, 0, VK_INDEX_TYPE_UINT16);
  vkCmdDrawIndexed(cb, std::size(kQuadIndices), 1, 0, kTriangleVertices, 0);
  vkCmdEndQuery(cb, queries, 0);
}

void render_with_pass(VkCommandBuffer cb, VkRenderPass pass, VkFramebuffer framebuffer, VkPipeline pipeline,
                      const Geometry& geometry, VkQueryPool queries) {
  const VkClearValue clear = clear_value();
  VkRenderPassBeginInfo info{};
  info.sType = VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO;
  info.renderPass = pass;
  info.framebuffer = framebuffer;
  info.renderArea = {{0, 0}, {kWidth, kHeight}};
  info.clearValueCount = 1;
  info.pClearValues = &clear;
  vkCmdBeginRenderPass(cb, &info, VK_SUBPASS_CONTENTS_INLINE);
  draw(cb, pipeline, geometry, queries);
  vkCmdEndRenderPass(cb);
}

struct RenderingCommands {
  PFN_vkCmdBeginRendering begin = nullptr;
  PFN_vkCmdEndRendering end = nullptr;
};

RenderingCommands rendering_commands(VkDevice device) {
  RenderingCommands out;
  out.begin = reinterpret_cast<PFN_vkCmdBeginRendering>(vkGetDeviceProcAddr(device, "vkCmdBeginRendering"));
  out.end = reinterpret_cast<PFN_vkCmdEndRendering>(vkGetDeviceProcAddr(device, "vkCmdEndRendering"));
  if (!out.begin || !out.end) fail("vkGetDeviceProcAddr returned no vkCmdBeginRendering or vkCmdEndRendering");
  return out;
}

// Leaves the image as the render pass does: in TRANSFER_SRC_OPTIMAL, its writes visible to copies.
void render_dynamic(VkCommandBuffer cb, const RenderingCommands& commands, const Target& target, VkPipeline pipeline,
                    const Geometry& geometry, VkQueryPool queries) {
  image_barrier(cb, target.image, VK_IMAGE_LAYOUT_UNDEFINED, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL,
                {VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, 0},
                {VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT, VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT});
  VkRenderingAttachmentInfo color{};
  color.sType = VK_STRUCTURE_TYPE_RENDERING_ATTACHMENT_INFO;
  color.imageView = target.view;
  color.imageLayout = VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL;
  color.loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR;
  color.storeOp = VK_ATTACHMENT_STORE_OP_STORE;
  color.clearValue = clear_value();
  VkRenderingInfo info{};
  info.sType = VK_STRUCTURE_TYPE_RENDERING_INFO;
  info.renderArea = {{0, 0}, {kWidth, kHeight}};
  info.layerCount = 1;
  info.colorAttachmentCount = 1;
  info.pColorAttachments = &color;
  commands.begin(cb, &info);
  draw(cb, pipeline, geometry, queries);
  commands.end(cb);
  image_barrier(cb, target.image, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL,
                {VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT, VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT},
                {VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT});
}

void copy_to_buffer(VkCommandBuffer cb, VkImage image, VkBuffer buffer) {
  VkBufferImageCopy region{};
  region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
  region.imageExtent = {kWidth, kHeight, 1};
  vkCmdCopyImageToBuffer(cb, image, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, buffer, 1, &region);
  buffer_barrier(cb, buffer, {VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT},
                 {VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT});
}

std::vector<uint8_t> read_back(VkDevice device, const Buffer& buffer) {
  std::vector<uint8_t> pixels(kImageBytes);
  const void* data = map(device, buffer.memory.memory);
  if (!(buffer.memory.flags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)) {
    const VkMappedMemoryRange range = whole_range(buffer.memory.memory);
    VK_CHECK(vkInvalidateMappedMemoryRanges, device, 1, &range);
  }
  std::memcpy(pixels.data(), data, kImageBytes);
  vkUnmapMemory(device, buffer.memory.memory);
  return pixels;
}

Color pixel(const std::vector<uint8_t>& pixels, uint32_t x, uint32_t y) {
  Color out;
  std::memcpy(out.data(), &pixels[(y * kWidth + x) * 4], 4);
  return out;
}

std::string hex(const Color& color) {
  char text[9];
  std::snprintf(text, sizeof text, "%02x%02x%02x%02x", color[0], color[1], color[2], color[3]);
  return text;
}

// Prints the summary; true when the image has the clear colour in the corners, the quad in the
// centre and the triangle below the quad.
bool report(const std::vector<uint8_t>& pixels) {
  std::printf("render: %ux%u, hash 0x%016" PRIx64 "\n", kWidth, kHeight, fnv1a(pixels.data(), pixels.size()));
  struct Probe {
    uint32_t x, y;
    Color expected;
  };
  const Probe probes[] = {{0, 0, kClear},           {kWidth - 1, 0, kClear}, {0, kHeight - 1, kClear},
                          {kWidth - 1, kHeight - 1, kClear}, {kWidth / 2, kHeight / 2, kQuad},
                          {kWidth / 2, kHeight * 13 / 16, kTriangle}};
  bool ok = true;
  for (const Probe& probe : probes) {
    const Color color = pixel(pixels, probe.x, probe.y);
    std::printf("pixel %u,%u: %s\n", probe.x, probe.y, hex(color).c_str());
    ok &= color == probe.expected;
  }
  std::map<std::string, uint32_t> counts;
  for (uint32_t y = 0; y < kHeight; ++y)
    for (uint32_t x = 0; x < kWidth; ++x) ++counts[hex(pixel(pixels, x, y))];
  for (const auto& [color, count] : counts) std::printf("color %s: %u pixels\n", color.c_str(), count);
  return ok;
}

bool write_ppm(const std::string& path, const std::vector<uint8_t>& pixels) {
  FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return false;
  std::fprintf(file, "P6\n%u %u\n255\n", kWidth, kHeight);
  for (size_t i = 0; i < pixels.size(); i += 4) std::fwrite(&pixels[i], 1, 3, file);
  return std::fclose(file) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parse(argc, argv, options)) return 2;
  const uint32_t api = options.dynamic_rendering ? std::min(instance_version(), uint32_t{VK_API_VERSION_1_3})
                                                 : uint32_t{VK_API_VERSION_1_0};
  VkInstance instance = create_instance("vulkan_render", api);
  const Gpu gpu = pick_gpu(instance, VK_QUEUE_GRAPHICS_BIT);
  if (options.dynamic_rendering && !supports_dynamic_rendering(gpu.physical, api)) {
    std::printf("dynamic rendering: not supported\n");
    vkDestroyInstance(instance, nullptr);
    return 0;
  }
  VkPhysicalDeviceDynamicRenderingFeatures dynamic_feature{};
  dynamic_feature.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DYNAMIC_RENDERING_FEATURES;
  dynamic_feature.dynamicRendering = VK_TRUE;
  VkDevice device = create_device(gpu, options.dynamic_rendering ? &dynamic_feature : nullptr);
  VkQueue queue = VK_NULL_HANDLE;
  vkGetDeviceQueue(device, gpu.queue_family, 0, &queue);

  const Target target = create_target(device, gpu);
  const Geometry geometry = create_geometry(device, gpu);
  const Buffer readback = create_buffer(device, gpu, kImageBytes, VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                  {VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0});
  VkPipelineLayout layout = create_pipeline_layout(device, nullptr, nullptr);
  VkRenderPass pass = options.dynamic_rendering ? VK_NULL_HANDLE : create_render_pass(device);
  VkFramebuffer framebuffer = options.dynamic_rendering ? VK_NULL_HANDLE : create_framebuffer(device, pass, target.view);
  VkPipeline pipeline = create_pipeline(device, layout, pass);
  const Commands commands = create_commands(device, gpu.queue_family);
  VkFence fence = create_fence(device);
  const VkQueryPoolCreateInfo query_info{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, nullptr, 0, VK_QUERY_TYPE_OCCLUSION,
                                         1, 0};
  VkQueryPool queries = VK_NULL_HANDLE;
  VK_CHECK(vkCreateQueryPool, device, &query_info, nullptr, &queries);

  begin(device, commands);
  vkCmdResetQueryPool(commands.buffer, queries, 0, 1);
  if (options.dynamic_rendering)
    render_dynamic(commands.buffer, rendering_commands(device), target, pipeline, geometry, queries);
  else
    render_with_pass(commands.buffer, pass, framebuffer, pipeline, geometry, queries);
  copy_to_buffer(commands.buffer, target.image, readback.buffer);
  VK_CHECK(vkEndCommandBuffer, commands.buffer);
  submit_and_wait(device, queue, commands.buffer, fence);
  const std::vector<uint8_t> pixels = read_back(device, readback);
  uint64_t samples = 0;
  VK_CHECK(vkGetQueryPoolResults, device, queries, 0, 1, sizeof samples, &samples, sizeof samples,
           VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);

  VK_CHECK(vkQueueWaitIdle, queue);
  vkDestroyQueryPool(device, queries, nullptr);
  vkDestroyFence(device, fence, nullptr);
  destroy_commands(device, commands);
  vkDestroyPipeline(device, pipeline, nullptr);
  vkDestroyFramebuffer(device, framebuffer, nullptr);
  vkDestroyRenderPass(device, pass, nullptr);
  vkDestroyPipelineLayout(device, layout, nullptr);
  destroy_buffer(device, readback);
  destroy_geometry(device, geometry);
  destroy_target(device, target);
  vkDestroyDevice(device, nullptr);
  vkDestroyInstance(instance, nullptr);

  // Samples that passed, as the driver counts them (a non-precise query: any non-zero count).
  std::printf("occlusion query: %" PRIu64 " samples\n", samples);
  const bool ok = report(pixels) && samples > 0;
  if (!options.ppm.empty() && !write_ppm(options.ppm, pixels)) {
    std::fprintf(stderr, "FAILED: cannot write %s\n", options.ppm.c_str());
    return 1;
  }
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
