#include "vulkan_session.hpp"

#include <algorithm>
#include <stdexcept>

#include "log.hpp"
#include "messages.hpp"
#include "vulkan_instance.hpp"
#include "vulkan_wire.hpp"

namespace rgpu::vk {

namespace {
std::vector<uint32_t> ordinals_of(const std::vector<SessionGpu>& gpus) {
  std::vector<uint32_t> out;
  for (const SessionGpu& gpu : gpus) out.push_back(gpu.vulkan_ordinal);
  return out;
}

std::string call_text(uint32_t command) {
  const char* name = command_name(command);
  return name != nullptr ? name : "call " + std::to_string(command);
}

// A blocking wait runs on the session's thread in slices this long, looking at the call queue
// between them; on a thread of its own, in slices this long, looking whether the session closes.
constexpr uint64_t kInlineSliceNs = 200'000;
constexpr uint64_t kThreadSliceNs = 100'000'000;
// Drivers wake a blocked waiter tens of microseconds after the fence signals (NVIDIA's: about
// 35 µs later than a poll sees it): a wait on the session's thread polls this long first.
constexpr auto kWaitPoll = std::chrono::microseconds(50);

uint64_t time_left(uint64_t timeout_ns, std::chrono::steady_clock::time_point start) {
  const auto spent = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
  return timeout_ns > spent ? timeout_ns - spent : 0;
}
}  // namespace

VulkanSession::VulkanSession(std::vector<SessionGpu> gpus, std::shared_ptr<MemoryBudget> budget, SendFn send,
                             std::string client)
    : gpus_(std::move(gpus)), budget_(std::move(budget)), send_(std::move(send)), client_(std::move(client)) {
  replay_ = std::make_unique<Replay>(ordinals_of(gpus_), budget_, [this](uint64_t memory, uint64_t offset,
                                                                std::span<const uint8_t> bytes) {
    WireWriter w;
    w.put(memory).put(offset).bytes(bytes.data(), bytes.size());
    send_(encode_frame(kMsgVulkanMemory, 0, w.take()));
  });
  thread_ = std::thread([this] { run(); });
}

VulkanSession::~VulkanSession() { close(); }

void VulkanSession::submit(Frame frame) {
  auto call = std::make_shared<Frame>(std::move(frame));
  enqueue([this, call] { execute(*call); });
}

void VulkanSession::enqueue(std::function<void()> call) {
  {
    std::lock_guard lock(mutex_);
    if (closing_) return;
    calls_.push_back(std::move(call));
    queued_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_one();
}

void VulkanSession::run_wait(uint64_t request_id, uint32_t command, Replay::Wait wait) {
  // Most waits end within microseconds, sooner than a thread could take them over: they run here
  // until another call comes, which may be what they wait for (a timeline semaphore signalled by
  // another thread of the application), and then on a thread of their own.
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const uint64_t left = time_left(wait.timeout_ns, start);
    const uint64_t slice = std::chrono::steady_clock::now() - start < kWaitPoll ? 0 : std::min(left, kInlineSliceNs);
    const VkResult result = wait.slice(slice);
    if (result != VK_TIMEOUT || left <= slice) return end_wait(request_id, command, wait.result_of(result));
    if (abandon_waits_.load()) return;
    if (queued_.load(std::memory_order_acquire) > 0) {
      wait.timeout_ns = time_left(wait.timeout_ns, start);
      return start_wait(request_id, command, std::move(wait));
    }
  }
}

void VulkanSession::start_wait(uint64_t request_id, uint32_t command, Replay::Wait wait) {
  const uint64_t serial = next_waiter_++;
  waiters_[serial] = std::thread([this, serial, request_id, command, wait = std::move(wait)] {
    const auto start = std::chrono::steady_clock::now();
    VkResult last;
    for (;;) {
      const uint64_t left = time_left(wait.timeout_ns, start);
      last = wait.slice(std::min(left, kThreadSliceNs));
      if (last != VK_TIMEOUT || left <= kThreadSliceNs) break;
      if (abandon_waits_.load()) return;
    }
    enqueue([this, serial, request_id, command, last, wait] {
      // Back on the session's thread: the waiter has nothing left to do but return.
      waiters_.at(serial).join();
      waiters_.erase(serial);
      end_wait(request_id, command, wait.result_of(last));
    });
  });
}

void VulkanSession::end_wait(uint64_t request_id, uint32_t command, VkResult result) {
  replay_->finish_wait(result);
  if (result < 0) {
    const std::string why = call_text(command) + " returned " + result_text(result);
    return reply(request_id, result, {reinterpret_cast<const uint8_t*>(why.data()), why.size()});
  }
  reply(request_id, result, {});
}

void VulkanSession::close() {
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
  }
  abandon_waits_ = true;
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
  for (auto& [serial, waiter] : waiters_) waiter.join();
  waiters_.clear();
  if (!replay_) return;
  const auto [devices, objects] = replay_->release_all();
  if (devices > 0)
    LOG_INFO("Vulkan session of %s closed: released %zu device(s) and %zu object(s) it left", client_.c_str(), devices,
             objects);
  replay_.reset();
}

void VulkanSession::run() {
  for (;;) {
    // The next call of an application that waits on its answer comes within microseconds: look
    // for it a little while before sleeping.
    const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
    while (queued_.load(std::memory_order_acquire) == 0 && std::chrono::steady_clock::now() < spin_until)
      std::this_thread::yield();
    std::function<void()> call;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return closing_ || !calls_.empty(); });
      if (closing_) return;
      call = std::move(calls_.front());
      calls_.pop_front();
      queued_.fetch_sub(1, std::memory_order_relaxed);
    }
    call();
  }
}

void VulkanSession::reply(uint64_t request_id, int32_t result, std::span<const uint8_t> outputs) {
  WireWriter w;
  w.put(ReplyHeader{result}).bytes(outputs.data(), outputs.size());
  send_(encode_frame(kMsgVulkanReply, request_id, w.take()));
}

uint32_t VulkanSession::ordinal(uint32_t session_device) const {
  if (session_device >= gpus_.size())
    throw std::out_of_range("device " + std::to_string(session_device) + " is not one of this session's " +
                            std::to_string(gpus_.size()));
  return gpus_[session_device].vulkan_ordinal;
}

void VulkanSession::execute(const Frame& frame) {
  const uint64_t id = frame.header.request_id;
  auto refuse = [&](ErrorCode code, const std::string& message) {
    LOG_WARN("Vulkan call from %s refused: %s", client_.c_str(), message.c_str());
    send_(encode_frame(static_cast<uint16_t>(MsgType::Error), id, encode(ErrorMsg{code, message})));
  };
  WireReader reader(frame.payload, "VulkanCall");
  try {
    const uint32_t command = reader.get<uint32_t>();
    if (command == CMD_GetPhysicalDeviceImageFormatProperties) {
      const auto query = reader.get<ImageFormatQuery>();
      reader.expect_end();
      VkImageFormatProperties properties{};
      const VkResult result = Instance::get().image_format_properties(ordinal(query.device), query, properties);
      if (result < 0) {
        const std::string why = "vkGetPhysicalDeviceImageFormatProperties returned " + result_text(result);
        return reply(id, result, {reinterpret_cast<const uint8_t*>(why.data()), why.size()});
      }
      return reply(id, result, {reinterpret_cast<const uint8_t*>(&properties), sizeof properties});
    }
    if (command == CMD_GetPhysicalDeviceSparseImageFormatProperties) {
      const auto query = reader.get<SparseImageFormatQuery>();
      reader.expect_end();
      const auto properties = Instance::get().sparse_image_format_properties(ordinal(query.device), query);
      WireWriter w;
      w.put<uint32_t>(static_cast<uint32_t>(properties.size()));
      for (const auto& p : properties) w.put(p);
      return reply(id, VK_SUCCESS, w.take());
    }
    if (command != CMD_DescribePhysicalDevices) return replay(frame, command, reader);
    reader.expect_end();
  } catch (const WireError& e) {
    return refuse(ErrorCode::MalformedFrame, e.what());
  } catch (const std::exception& e) {
    return refuse(ErrorCode::Forbidden, e.what());
  }
  std::vector<PhysicalDeviceDescription> devices;
  try {
    for (const SessionGpu& gpu : gpus_) {
      devices.push_back(Instance::get().describe(gpu.vulkan_ordinal));
      devices.back().gpu_index = gpu.index;
      // A token's memory limit is the most any heap can give it.
      VkPhysicalDeviceMemoryProperties& memory = devices.back().memory;
      if (budget_->limit() != 0)
        for (uint32_t i = 0; i < memory.memoryHeapCount; ++i)
          memory.memoryHeaps[i].size = std::min<VkDeviceSize>(memory.memoryHeaps[i].size, budget_->limit());
    }
  } catch (const std::exception& e) {
    return refuse(ErrorCode::Internal, std::string("describing the Vulkan devices failed: ") + e.what());
  }
  reply(id, VK_SUCCESS, encode(devices));
}

void VulkanSession::replay(const Frame& frame, uint32_t command, WireReader& reader) {
  const uint64_t id = frame.header.request_id;
  const bool pipelined = frame.header.flags & kFrameNoReply;
  auto fail = [&](VkResult result, const std::string& why) {
    if (pipelined) {
      if (deferred_failure_.empty()) {
        deferred_failure_ = why;
        LOG_WARN("Vulkan: %s: %s", client_.c_str(), why.c_str());
      }
      return;
    }
    reply(id, result, {reinterpret_cast<const uint8_t*>(why.data()), why.size()});
  };
  if (!deferred_failure_.empty() && !pipelined)
    return fail(VK_ERROR_DEVICE_LOST, "an earlier call failed: " + deferred_failure_);
  WireWriter outputs;
  VkResult result = VK_SUCCESS;
  try {
    if (!pipelined) {
      if (Replay::Wait wait = replay_->blocking_wait(command, reader)) return run_wait(id, command, std::move(wait));
    }
    replay_->call(command, reader, outputs, result);
  } catch (const WireError& e) {
    return fail(VK_ERROR_DEVICE_LOST, call_text(command) + ": malformed call: " + e.what());
  } catch (const NotForwarded& e) {
    return fail(VK_ERROR_FEATURE_NOT_PRESENT, e.what());
  }
  if (result < 0) return fail(result, call_text(command) + " returned " + result_text(result));
  if (command == CMD_CreateDevice) LOG_INFO("Vulkan: %s created a device", client_.c_str());
  if (!pipelined) reply(id, result, outputs.buffer());
}

}  // namespace rgpu::vk
