// Vulkan data-path benchmark: upload and readback bandwidth through a mapped staging buffer and
// vkCmdCopyBuffer, the round trip of a submit and its wait (on a fence, and with vkQueueWaitIdle),
// and host memcpy of the same sizes measured in the same run, so that a run on a driver and a run
// through RGPU compare as ratios.
// Prints one table; --json FILE also writes the results as JSON.
//
//   vulkan_bench [--device N] [--quick] [--json FILE]
#include <vulkan/vulkan.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

namespace {
using Clock = std::chrono::steady_clock;

constexpr VkDeviceSize KiB = 1024, MiB = 1024 * KiB;
constexpr VkBufferUsageFlags kUsage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void check(VkResult result, const char* call) {
  if (result == VK_SUCCESS) return;
  std::fprintf(stderr, "FAILED: %s returned %d\n", call, static_cast<int>(result));
  std::exit(1);
}

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "FAILED: %s\n", why.c_str());
  std::exit(1);
}

struct Options {
  uint32_t device = 0;
  bool quick = false;
  std::string json;
};

[[noreturn]] void usage(const char* program) {
  std::fprintf(stderr, "usage: %s [--device N] [--quick] [--json FILE]\n", program);
  std::exit(2);
}

Options parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--device" && i + 1 < argc) {
      char* end = nullptr;
      const unsigned long index = std::strtoul(argv[++i], &end, 10);
      if (end == argv[i] || *end != '\0' || index > UINT32_MAX) usage(argv[0]);
      options.device = static_cast<uint32_t>(index);
    } else if (arg == "--json" && i + 1 < argc) {
      options.json = argv[++i];
    } else {
      usage(argv[0]);
    }
  }
  return options;
}

struct Plan {
  std::vector<VkDeviceSize> sizes;
  double budget;             // seconds each bandwidth figure repeats for, at least
  size_t round_trips;        // submit+wait samples, at least
  double round_trip_budget;  // seconds of them, at least
};

// --quick keeps the whole run within a few seconds on a CPU driver.
Plan plan_for(bool quick) {
  if (quick) return {{4 * KiB, 1 * MiB, 16 * MiB}, 0.02, 50, 0.05};
  return {{4 * KiB, 64 * KiB, 1 * MiB, 16 * MiB, 64 * MiB, 256 * MiB}, 0.3, 1000, 0.5};
}

struct Gpu {
  VkInstance instance = VK_NULL_HANDLE;
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  VkPhysicalDeviceProperties properties{};
  VkPhysicalDeviceMemoryProperties memory{};
  uint32_t family = 0;
  VkDevice device = VK_NULL_HANDLE;
  VkQueue queue = VK_NULL_HANDLE;
  VkCommandPool pool = VK_NULL_HANDLE;
  VkFence fence = VK_NULL_HANDLE;
};

VkInstance create_instance() {
  const VkApplicationInfo app{
      VK_STRUCTURE_TYPE_APPLICATION_INFO, nullptr, "vulkan_bench", 1, nullptr, 0, VK_API_VERSION_1_1};
  const VkInstanceCreateInfo info{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, nullptr, 0, &app, 0, nullptr, 0, nullptr};
  VkInstance instance;
  check(vkCreateInstance(&info, nullptr, &instance), "vkCreateInstance");
  return instance;
}

VkPhysicalDevice physical_device(VkInstance instance, uint32_t index) {
  uint32_t count = 0;
  check(vkEnumeratePhysicalDevices(instance, &count, nullptr), "vkEnumeratePhysicalDevices");
  std::vector<VkPhysicalDevice> devices(count);
  check(vkEnumeratePhysicalDevices(instance, &count, devices.data()), "vkEnumeratePhysicalDevices");
  if (index >= count) fail("no physical device " + std::to_string(index) + " (" + std::to_string(count) + " found)");
  return devices[index];
}

// Graphics and compute queues can copy buffers as well as transfer queues can.
uint32_t copy_queue_family(VkPhysicalDevice physical) {
  uint32_t count = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(physical, &count, nullptr);
  std::vector<VkQueueFamilyProperties> families(count);
  vkGetPhysicalDeviceQueueFamilyProperties(physical, &count, families.data());
  const VkQueueFlags copies = VK_QUEUE_GRAPHICS_BIT | VK_QUEUE_COMPUTE_BIT | VK_QUEUE_TRANSFER_BIT;
  for (uint32_t i = 0; i < count; ++i)
    if (families[i].queueFlags & copies) return i;
  fail("no queue family can copy buffers");
}

void create_device(Gpu& gpu) {
  const float priority = 1.0f;
  VkDeviceQueueCreateInfo queue{};
  queue.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
  queue.queueFamilyIndex = gpu.family;
  queue.queueCount = 1;
  queue.pQueuePriorities = &priority;
  VkDeviceCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
  info.queueCreateInfoCount = 1;
  info.pQueueCreateInfos = &queue;
  check(vkCreateDevice(gpu.physical, &info, nullptr, &gpu.device), "vkCreateDevice");
  vkGetDeviceQueue(gpu.device, gpu.family, 0, &gpu.queue);
}

Gpu open_gpu(uint32_t index) {
  Gpu gpu;
  gpu.instance = create_instance();
  gpu.physical = physical_device(gpu.instance, index);
  vkGetPhysicalDeviceProperties(gpu.physical, &gpu.properties);
  vkGetPhysicalDeviceMemoryProperties(gpu.physical, &gpu.memory);
  gpu.family = copy_queue_family(gpu.physical);
  create_device(gpu);
  VkCommandPoolCreateInfo pool{};
  pool.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
  pool.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pool.queueFamilyIndex = gpu.family;
  check(vkCreateCommandPool(gpu.device, &pool, nullptr, &gpu.pool), "vkCreateCommandPool");
  VkFenceCreateInfo fence{};
  fence.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
  check(vkCreateFence(gpu.device, &fence, nullptr, &gpu.fence), "vkCreateFence");
  return gpu;
}

void close_gpu(Gpu& gpu) {
  vkDestroyFence(gpu.device, gpu.fence, nullptr);
  vkDestroyCommandPool(gpu.device, gpu.pool, nullptr);
  vkDestroyDevice(gpu.device, nullptr);
  vkDestroyInstance(gpu.instance, nullptr);
}

// Unknown before Vulkan 1.1: then only the heap sizes limit the buffers.
VkDeviceSize max_allocation_size(const Gpu& gpu) {
  if (gpu.properties.apiVersion < VK_API_VERSION_1_1) return UINT64_MAX;
  VkPhysicalDeviceMaintenance3Properties maintenance3{};
  maintenance3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
  VkPhysicalDeviceProperties2 properties{};
  properties.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
  properties.pNext = &maintenance3;
  vkGetPhysicalDeviceProperties2(gpu.physical, &properties);
  return maintenance3.maxMemoryAllocationSize;
}

VkBuffer create_vk_buffer(VkDevice device, VkDeviceSize size) {
  VkBufferCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
  info.size = size;
  info.usage = kUsage;
  info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VkBuffer buffer;
  check(vkCreateBuffer(device, &info, nullptr, &buffer), "vkCreateBuffer");
  return buffer;
}

// memoryTypeBits depends only on a buffer's usage and flags, so a small buffer answers for every size.
uint32_t memory_type_bits(VkDevice device) {
  VkBuffer buffer = create_vk_buffer(device, 4 * KiB);
  VkMemoryRequirements requirements;
  vkGetBufferMemoryRequirements(device, buffer, &requirements);
  vkDestroyBuffer(device, buffer, nullptr);
  return requirements.memoryTypeBits;
}

// The first type in `bits` with all of `required`, preferring one with all of `wanted`, then one
// with none of `unwanted`; -1 when no type has `required`.
int memory_type(const VkPhysicalDeviceMemoryProperties& memory, uint32_t bits, VkMemoryPropertyFlags required,
                VkMemoryPropertyFlags wanted, VkMemoryPropertyFlags unwanted) {
  int best = -1, best_score = -1;
  for (uint32_t i = 0; i < memory.memoryTypeCount; ++i) {
    const VkMemoryPropertyFlags flags = memory.memoryTypes[i].propertyFlags;
    if (!(bits & (1u << i)) || (flags & required) != required) continue;
    const int score = ((flags & wanted) == wanted ? 2 : 0) + ((flags & unwanted) == 0 ? 1 : 0);
    if (score > best_score) {
      best = static_cast<int>(i);
      best_score = score;
    }
  }
  return best;
}

struct MemoryTypes {
  uint32_t upload, readback, device;
};

// Staging buffers preferably outside device-local memory: coherent for uploads (no flush), cached
// for readback (CPU reads of uncached memory are slow). The device buffer preferably in device-local
// memory the host cannot map, so that the copies cross to the device.
MemoryTypes choose_memory_types(const Gpu& gpu, uint32_t bits) {
  const VkMemoryPropertyFlags visible = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT;
  const VkMemoryPropertyFlags local = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  const int upload = memory_type(gpu.memory, bits, visible, VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, local);
  const int readback = memory_type(gpu.memory, bits, visible, VK_MEMORY_PROPERTY_HOST_CACHED_BIT, local);
  int device = memory_type(gpu.memory, bits, local, 0, visible);
  if (device < 0) device = memory_type(gpu.memory, bits, 0, 0, visible);
  if (upload < 0 || readback < 0) fail("no host-visible memory type for transfer buffers");
  return {static_cast<uint32_t>(upload), static_cast<uint32_t>(readback), static_cast<uint32_t>(device)};
}

// A size fits when it is within the allocation limit and this program's buffers take at most half
// of every heap they are in (the heap is shared with everything else on the device).
bool fits(const Gpu& gpu, const MemoryTypes& types, VkDeviceSize size, VkDeviceSize max_allocation) {
  if (size > max_allocation) return false;
  std::vector<VkDeviceSize> used(gpu.memory.memoryHeapCount, 0);
  for (uint32_t type : {types.upload, types.readback, types.device})
    used[gpu.memory.memoryTypes[type].heapIndex] += size;
  for (uint32_t heap = 0; heap < gpu.memory.memoryHeapCount; ++heap)
    if (used[heap] > gpu.memory.memoryHeaps[heap].size / 2) return false;
  return true;
}

struct Buffer {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  VkDeviceSize allocated = 0;
  bool coherent = true;
  void* mapped = nullptr;
};

Buffer create_buffer(const Gpu& gpu, VkDeviceSize size, uint32_t type, bool map) {
  Buffer b;
  b.buffer = create_vk_buffer(gpu.device, size);
  VkMemoryRequirements requirements;
  vkGetBufferMemoryRequirements(gpu.device, b.buffer, &requirements);
  VkMemoryAllocateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
  info.allocationSize = requirements.size;
  info.memoryTypeIndex = type;
  check(vkAllocateMemory(gpu.device, &info, nullptr, &b.memory), "vkAllocateMemory");
  check(vkBindBufferMemory(gpu.device, b.buffer, b.memory, 0), "vkBindBufferMemory");
  b.allocated = requirements.size;
  b.coherent = gpu.memory.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  if (map) check(vkMapMemory(gpu.device, b.memory, 0, VK_WHOLE_SIZE, 0, &b.mapped), "vkMapMemory");
  return b;
}

void destroy_buffer(const Gpu& gpu, Buffer& b) {
  if (b.mapped) vkUnmapMemory(gpu.device, b.memory);
  vkDestroyBuffer(gpu.device, b.buffer, nullptr);
  vkFreeMemory(gpu.device, b.memory, nullptr);
}

// The first `bytes` of a mapping, widened to whole non-coherent atoms as flushes and invalidations require.
VkMappedMemoryRange mapped_range(const Gpu& gpu, const Buffer& b, VkDeviceSize bytes) {
  const VkDeviceSize atom = gpu.properties.limits.nonCoherentAtomSize;
  const VkDeviceSize size = (bytes + atom - 1) / atom * atom;
  VkMappedMemoryRange range{};
  range.sType = VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE;
  range.memory = b.memory;
  range.size = size < b.allocated ? size : VK_WHOLE_SIZE;
  return range;
}

void flush(const Gpu& gpu, const Buffer& b, VkDeviceSize bytes) {
  if (b.coherent) return;
  const VkMappedMemoryRange range = mapped_range(gpu, b, bytes);
  check(vkFlushMappedMemoryRanges(gpu.device, 1, &range), "vkFlushMappedMemoryRanges");
}

void invalidate(const Gpu& gpu, const Buffer& b, VkDeviceSize bytes) {
  if (b.coherent) return;
  const VkMappedMemoryRange range = mapped_range(gpu, b, bytes);
  check(vkInvalidateMappedMemoryRanges(gpu.device, 1, &range), "vkInvalidateMappedMemoryRanges");
}

VkCommandBuffer allocate_command_buffer(const Gpu& gpu) {
  VkCommandBufferAllocateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
  info.commandPool = gpu.pool;
  info.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  info.commandBufferCount = 1;
  VkCommandBuffer cmd;
  check(vkAllocateCommandBuffers(gpu.device, &info, &cmd), "vkAllocateCommandBuffers");
  return cmd;
}

void begin(VkCommandBuffer cmd) {
  VkCommandBufferBeginInfo info{};
  info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
  check(vkBeginCommandBuffer(cmd, &info), "vkBeginCommandBuffer");
}

void end(VkCommandBuffer cmd) { check(vkEndCommandBuffer(cmd), "vkEndCommandBuffer"); }

void barrier(VkCommandBuffer cmd, VkPipelineStageFlags src_stage, VkAccessFlags src_access,
             VkPipelineStageFlags dst_stage, VkAccessFlags dst_access) {
  VkMemoryBarrier memory{};
  memory.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
  memory.srcAccessMask = src_access;
  memory.dstAccessMask = dst_access;
  vkCmdPipelineBarrier(cmd, src_stage, dst_stage, 0, 1, &memory, 0, nullptr, 0, nullptr);
}

void copy(VkCommandBuffer cmd, VkBuffer from, VkBuffer to, VkDeviceSize bytes) {
  const VkBufferCopy region{0, 0, bytes};
  vkCmdCopyBuffer(cmd, from, to, 1, &region);
}

// Host writes made before a submission are visible to it without a barrier.
void record_upload(VkCommandBuffer cmd, VkBuffer from, VkBuffer to, VkDeviceSize bytes) {
  begin(cmd);
  copy(cmd, from, to, bytes);
  end(cmd);
}

// The first barrier picks up the upload's writes to the device buffer, the second makes the copy
// visible to the host reads after the fence.
void record_readback(VkCommandBuffer cmd, VkBuffer from, VkBuffer to, VkDeviceSize bytes) {
  const VkPipelineStageFlags transfer = VK_PIPELINE_STAGE_TRANSFER_BIT;
  begin(cmd);
  barrier(cmd, transfer, VK_ACCESS_TRANSFER_WRITE_BIT, transfer, VK_ACCESS_TRANSFER_READ_BIT);
  copy(cmd, from, to, bytes);
  barrier(cmd, transfer, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
  end(cmd);
}

void record_fill(VkCommandBuffer cmd, VkBuffer buffer) {
  begin(cmd);
  vkCmdFillBuffer(cmd, buffer, 0, 4, 0);
  end(cmd);
}

void submit_and_wait(const Gpu& gpu, VkCommandBuffer cmd) {
  VkSubmitInfo submit{};
  submit.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  submit.commandBufferCount = 1;
  submit.pCommandBuffers = &cmd;
  check(vkQueueSubmit(gpu.queue, 1, &submit, gpu.fence), "vkQueueSubmit");
  check(vkWaitForFences(gpu.device, 1, &gpu.fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
  check(vkResetFences(gpu.device, 1, &gpu.fence), "vkResetFences");
}

// The same waited for with vkQueueWaitIdle instead of a fence.
void submit_and_wait_idle(const Gpu& gpu, VkCommandBuffer cmd) {
  VkSubmitInfo submit{};
  submit.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  submit.commandBufferCount = 1;
  submit.pCommandBuffers = &cmd;
  check(vkQueueSubmit(gpu.queue, 1, &submit, VK_NULL_HANDLE), "vkQueueSubmit");
  check(vkQueueWaitIdle(gpu.queue), "vkQueueWaitIdle");
}

struct Rate {
  double gbps = 0;
  int reps = 0;
};

// Repeats `run` after one unmeasured run until `budget` seconds and at least 3 runs have passed.
template <typename Fn>
Rate bandwidth(VkDeviceSize bytes, double budget, Fn run) {
  run();
  Rate rate;
  const auto start = Clock::now();
  do {
    run();
    ++rate.reps;
  } while (rate.reps < 3 || seconds_since(start) < budget);
  rate.gbps = static_cast<double>(bytes) * rate.reps / seconds_since(start) / 1e9;
  return rate;
}

struct Latency {
  double median_us = 0, mean_us = 0;
  int reps = 0;
};

Latency round_trip(const Gpu& gpu, VkCommandBuffer cmd, const Plan& plan,
                   void (*submit_and_wait)(const Gpu&, VkCommandBuffer) = ::submit_and_wait) {
  for (int i = 0; i < 10; ++i) submit_and_wait(gpu, cmd);
  std::vector<double> samples;
  const auto start = Clock::now();
  while (samples.size() < plan.round_trips || seconds_since(start) < plan.round_trip_budget) {
    const auto t = Clock::now();
    submit_and_wait(gpu, cmd);
    samples.push_back(seconds_since(t) * 1e6);
  }
  Latency latency;
  latency.reps = static_cast<int>(samples.size());
  latency.mean_us = std::accumulate(samples.begin(), samples.end(), 0.0) / samples.size();
  const auto middle = samples.begin() + samples.size() / 2;
  std::nth_element(samples.begin(), middle, samples.end());
  latency.median_us = *middle;
  return latency;
}

// Incompressible, so a transport that compresses cannot flatter the figures; seeded per size so
// that a copy that did not happen cannot pass for one with the previous size's data.
void fill_pattern(std::vector<uint8_t>& data, VkDeviceSize bytes, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull | 1;
  for (VkDeviceSize i = 0; i + 8 <= bytes; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(&data[i], &x, 8);
  }
}

// What the bandwidth measurements share: buffers of the largest size, host arrays of the same size,
// and command buffers recorded again for each size.
struct Transfer {
  Buffer upload, readback, device;
  std::vector<uint8_t> source, target;
  VkCommandBuffer to_device = VK_NULL_HANDLE, to_host = VK_NULL_HANDLE;
};

Transfer create_transfer(const Gpu& gpu, const MemoryTypes& types, VkDeviceSize largest) {
  Transfer t;
  t.upload = create_buffer(gpu, largest, types.upload, true);
  t.readback = create_buffer(gpu, largest, types.readback, true);
  t.device = create_buffer(gpu, largest, types.device, false);
  t.source.resize(largest);
  t.target.resize(largest);
  t.to_device = allocate_command_buffer(gpu);
  t.to_host = allocate_command_buffer(gpu);
  return t;
}

void destroy_transfer(const Gpu& gpu, Transfer& t) {
  const VkCommandBuffer cmds[] = {t.to_device, t.to_host};
  vkFreeCommandBuffers(gpu.device, gpu.pool, 2, cmds);
  destroy_buffer(gpu, t.upload);
  destroy_buffer(gpu, t.readback);
  destroy_buffer(gpu, t.device);
}

std::string size_text(VkDeviceSize bytes) {
  if (bytes >= MiB) return std::to_string(bytes / MiB) + " MiB";
  return std::to_string(bytes / KiB) + " KiB";
}

struct SizeResult {
  VkDeviceSize bytes;
  Rate memcpy, upload, readback;
};

SizeResult measure_size(const Gpu& gpu, Transfer& t, VkDeviceSize bytes, double budget) {
  fill_pattern(t.source, bytes, bytes);
  SizeResult r{bytes, {}, {}, {}};
  r.memcpy = bandwidth(bytes, budget, [&] { std::memcpy(t.target.data(), t.source.data(), bytes); });
  record_upload(t.to_device, t.upload.buffer, t.device.buffer, bytes);
  record_readback(t.to_host, t.device.buffer, t.readback.buffer, bytes);
  r.upload = bandwidth(bytes, budget, [&] {
    std::memcpy(t.upload.mapped, t.source.data(), bytes);
    flush(gpu, t.upload, bytes);
    submit_and_wait(gpu, t.to_device);
  });
  std::memset(t.target.data(), 0, bytes);
  r.readback = bandwidth(bytes, budget, [&] {
    submit_and_wait(gpu, t.to_host);
    invalidate(gpu, t.readback, bytes);
    std::memcpy(t.target.data(), t.readback.mapped, bytes);
  });
  if (std::memcmp(t.target.data(), t.source.data(), bytes) != 0)
    fail("readback of " + size_text(bytes) + " differs from what was uploaded");
  return r;
}

struct Row {
  std::string name;
  VkDeviceSize bytes;  // 0: no size
  double value;
  const char* unit;
  double ratio;  // vs memcpy of the same size; 0: none
  int reps;
};

// Submit+wait measured with no host-visible memory mapped, and with the transfer's two
// staging buffers mapped (a remoting driver may have to look at mapped memory on each).
struct Latencies {
  Latency unmapped, mapped, idle;  // idle: waited for with vkQueueWaitIdle, nothing mapped
  VkDeviceSize mapped_bytes = 0;
};

std::vector<Row> rows_of(const std::vector<SizeResult>& sizes, const Latencies& latencies) {
  std::vector<Row> rows;
  for (const auto& s : sizes) rows.push_back({"memcpy", s.bytes, s.memcpy.gbps, "GB/s", 0, s.memcpy.reps});
  for (const auto& s : sizes)
    rows.push_back({"upload", s.bytes, s.upload.gbps, "GB/s", s.upload.gbps / s.memcpy.gbps, s.upload.reps});
  for (const auto& s : sizes)
    rows.push_back({"readback", s.bytes, s.readback.gbps, "GB/s", s.readback.gbps / s.memcpy.gbps, s.readback.reps});
  const Latency& unmapped = latencies.unmapped;
  const Latency& mapped = latencies.mapped;
  rows.push_back({"submit+wait median", 0, unmapped.median_us, "us", 0, unmapped.reps});
  rows.push_back({"submit+wait mean", 0, unmapped.mean_us, "us", 0, unmapped.reps});
  rows.push_back({"submit+wait median, mapped", latencies.mapped_bytes, mapped.median_us, "us", 0, mapped.reps});
  rows.push_back({"submit+wait mean, mapped", latencies.mapped_bytes, mapped.mean_us, "us", 0, mapped.reps});
  rows.push_back({"submit+queue idle median", 0, latencies.idle.median_us, "us", 0, latencies.idle.reps});
  return rows;
}

std::string version_text(uint32_t version) {
  return std::to_string(VK_API_VERSION_MAJOR(version)) + "." + std::to_string(VK_API_VERSION_MINOR(version)) + "." +
         std::to_string(VK_API_VERSION_PATCH(version));
}

void print_header(const Gpu& gpu, uint32_t index, const MemoryTypes& types, const std::vector<VkDeviceSize>& skipped) {
  std::printf("device %u: %s, Vulkan %s\n", index, gpu.properties.deviceName,
              version_text(gpu.properties.apiVersion).c_str());
  std::printf("memory types: upload %u, readback %u, device %u%s\n", types.upload, types.readback, types.device,
              types.device == types.upload ? " (no separate device-local type)" : "");
  for (VkDeviceSize size : skipped)
    std::printf("skipped: %s (over the allocation limit or half a heap)\n", size_text(size).c_str());
}

void print_table(const std::vector<Row>& rows) {
  std::printf("%-20s %8s %12s %-5s %16s %8s\n", "name", "size", "value", "unit", "ratio vs memcpy", "reps");
  for (const auto& row : rows) {
    char ratio[32] = "-";
    if (row.ratio > 0) std::snprintf(ratio, sizeof ratio, "%.3g", row.ratio);
    std::printf("%-20s %8s %12.3f %-5s %16s %8d\n", row.name.c_str(), row.bytes ? size_text(row.bytes).c_str() : "-",
                row.value, row.unit, ratio, row.reps);
  }
}

std::string json_string(const char* text) {
  std::string out = "\"";
  for (const char* c = text; *c; ++c) {
    if (*c == '"' || *c == '\\') {
      out += '\\';
      out += *c;
    } else if (static_cast<unsigned char>(*c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(*c));
      out += escaped;
    } else {
      out += *c;
    }
  }
  return out + "\"";
}

void write_json(const std::string& path, const Gpu& gpu, const Options& options, const MemoryTypes& types,
                const std::vector<Row>& rows) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) fail("cannot write " + path);
  std::fprintf(f, "{\n  \"device\": %s,\n  \"device_index\": %u,\n  \"api_version\": \"%s\",\n  \"quick\": %s,\n",
               json_string(gpu.properties.deviceName).c_str(), options.device,
               version_text(gpu.properties.apiVersion).c_str(), options.quick ? "true" : "false");
  std::fprintf(f, "  \"memory_types\": {\"upload\": %u, \"readback\": %u, \"device\": %u},\n  \"results\": [\n",
               types.upload, types.readback, types.device);
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    const std::string bytes = row.bytes ? std::to_string(row.bytes) : "null";
    char ratio[32] = "null";
    if (row.ratio > 0) std::snprintf(ratio, sizeof ratio, "%.6g", row.ratio);
    std::fprintf(f,
                 "    {\"name\": %s, \"bytes\": %s, \"value\": %.6g, \"unit\": \"%s\", \"ratio_vs_memcpy\": %s, "
                 "\"reps\": %d}%s\n",
                 json_string(row.name.c_str()).c_str(), bytes.c_str(), row.value, row.unit, ratio, row.reps,
                 i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  if (std::fclose(f) != 0) fail("cannot write " + path);
}
}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  const Plan plan = plan_for(options.quick);
  Gpu gpu = open_gpu(options.device);
  const MemoryTypes types = choose_memory_types(gpu, memory_type_bits(gpu.device));
  const VkDeviceSize max_allocation = max_allocation_size(gpu);
  std::vector<VkDeviceSize> sizes, skipped;
  for (VkDeviceSize size : plan.sizes) (fits(gpu, types, size, max_allocation) ? sizes : skipped).push_back(size);
  print_header(gpu, options.device, types, skipped);

  Latencies latencies;
  Buffer target = create_buffer(gpu, 4 * KiB, types.device, false);
  VkCommandBuffer fill = allocate_command_buffer(gpu);
  record_fill(fill, target.buffer);
  latencies.unmapped = round_trip(gpu, fill, plan);
  latencies.idle = round_trip(gpu, fill, plan, submit_and_wait_idle);

  Transfer transfer = create_transfer(gpu, types, sizes.empty() ? 4 * KiB : sizes.back());
  std::vector<SizeResult> results;
  for (VkDeviceSize size : sizes) results.push_back(measure_size(gpu, transfer, size, plan.budget));
  latencies.mapped = round_trip(gpu, fill, plan);
  latencies.mapped_bytes = transfer.upload.allocated + transfer.readback.allocated;

  const std::vector<Row> rows = rows_of(results, latencies);
  print_table(rows);
  if (!options.json.empty()) write_json(options.json, gpu, options, types, rows);

  check(vkDeviceWaitIdle(gpu.device), "vkDeviceWaitIdle");
  vkFreeCommandBuffers(gpu.device, gpu.pool, 1, &fill);
  destroy_buffer(gpu, target);
  destroy_transfer(gpu, transfer);
  close_gpu(gpu);
  return 0;
}
