// Threads that wait while others work: one thread waits on a timeline semaphore and another on
// a fence, with no time limit, while the main thread goes on calling Vulkan and only then signals
// the semaphore and submits the work the fence belongs to. A driver that served one call at a
// time would never answer. Prints what each wait returned, then PASS.
#include <atomic>
#include <cstdio>
#include <thread>

#include "vulkan_program.hpp"

using namespace vulkan_program;

namespace {

// Spins until the waiting thread says it is about to wait.
void until(const std::atomic<bool>& flag) {
  while (!flag.load()) std::this_thread::yield();
}

}  // namespace

int main() {
  VkInstance instance = create_instance("vulkan_threads", VK_API_VERSION_1_2);
  const Gpu gpu = pick_gpu(instance, VK_QUEUE_COMPUTE_BIT);
  VkPhysicalDeviceVulkan12Features features12{};
  features12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
  features12.timelineSemaphore = VK_TRUE;
  VkDevice device = create_device(gpu, &features12);
  VkQueue queue = VK_NULL_HANDLE;
  vkGetDeviceQueue(device, gpu.queue_family, 0, &queue);

  const VkSemaphoreTypeCreateInfo type{VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO, nullptr,
                                       VK_SEMAPHORE_TYPE_TIMELINE, 0};
  const VkSemaphoreCreateInfo semaphore_info{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, &type, 0};
  VkSemaphore timeline = VK_NULL_HANDLE;
  VK_CHECK(vkCreateSemaphore, device, &semaphore_info, nullptr, &timeline);
  VkFence fence = create_fence(device);

  std::atomic<bool> semaphore_waiter_started{false}, fence_waiter_started{false};
  VkResult semaphore_result = VK_NOT_READY, fence_result = VK_NOT_READY;
  std::thread semaphore_waiter([&] {
    const uint64_t value = 1;
    VkSemaphoreWaitInfo wait{};
    wait.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
    wait.semaphoreCount = 1;
    wait.pSemaphores = &timeline;
    wait.pValues = &value;
    semaphore_waiter_started = true;
    semaphore_result = vkWaitSemaphores(device, &wait, UINT64_MAX);
  });
  std::thread fence_waiter([&] {
    fence_waiter_started = true;
    fence_result = vkWaitForFences(device, 1, &fence, VK_TRUE, UINT64_MAX);
  });
  until(semaphore_waiter_started);
  until(fence_waiter_started);
  // The main thread keeps calling while both threads wait.
  uint64_t counter = 0;
  for (int i = 0; i < 50; ++i) VK_CHECK(vkGetSemaphoreCounterValue, device, timeline, &counter);
  std::printf("counter before the signal: %llu\n", static_cast<unsigned long long>(counter));
  VkSemaphoreSignalInfo signal{};
  signal.sType = VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO;
  signal.semaphore = timeline;
  signal.value = 1;
  VK_CHECK(vkSignalSemaphore, device, &signal);
  VK_CHECK(vkQueueSubmit, queue, 0, nullptr, fence);
  semaphore_waiter.join();
  fence_waiter.join();
  VK_CHECK(vkGetSemaphoreCounterValue, device, timeline, &counter);
  std::printf("semaphore wait: %d, counter %llu\n", semaphore_result, static_cast<unsigned long long>(counter));
  std::printf("fence wait: %d\n", fence_result);

  VK_CHECK(vkDeviceWaitIdle, device);
  vkDestroyFence(device, fence, nullptr);
  vkDestroySemaphore(device, timeline, nullptr);
  vkDestroyDevice(device, nullptr);
  vkDestroyInstance(instance, nullptr);
  const bool ok = semaphore_result == VK_SUCCESS && fence_result == VK_SUCCESS && counter == 1;
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
