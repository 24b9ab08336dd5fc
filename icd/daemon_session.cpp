#include "daemon_session.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "app_link.hpp"
#include "vulkan_wire.hpp"
#include "wire.hpp"

namespace rgpu::icd {

namespace {
// Answers to quick calls come back within tens of microseconds: looking for them a little while
// before sleeping spares a wake-up on each.
constexpr std::chrono::microseconds kAnswerSpin{60};
}  // namespace

std::unique_ptr<DaemonSession> DaemonSession::open(std::string& problem) {
  const std::string path = default_client_socket_path();
  std::string error;
  std::unique_ptr<DaemonSession> session(new DaemonSession);
  bool refused = false;
  session->fd_ = connect_unix(path, error, &refused);
  if (session->fd_ < 0) {
    problem = refused ? "refusing the RGPU client daemon at " + path + ": " + error
                      : "cannot reach the RGPU client daemon at " + path + ": " + error +
                            " (start it with `rgpu client`, or set RGPU_CLIENT_SOCKET)";
    return nullptr;
  }
  AppHelloMsg hello;
  hello.pid = static_cast<uint32_t>(::getpid());
  hello.program = program_path();
  hello.api = AppApi::Vulkan;
  const auto frame = encode_frame(static_cast<uint16_t>(AppMsg::AppHello), 0, encode(hello));
  int ring_fd = -1;
  if (!exchange_hello(session->fd_, session->decoder_, frame, session->welcome_, ring_fd, error)) {
    problem = "the RGPU client daemon at " + path + ": " + error;
    return nullptr;
  }
  // Mapped memory travels through the ring both ways (vk::vulkan_ring_layout); answers come inline.
  const size_t ring_size = session->welcome_.ring_size;
  void* ring = ring_size > 0 ? ::mmap(nullptr, ring_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0) : MAP_FAILED;
  ::close(ring_fd);
  if (ring != MAP_FAILED) {
    session->ring_ = static_cast<uint8_t*>(ring);
    session->ring_size_ = ring_size;
    const vk::VulkanRingLayout layout = vk::vulkan_ring_layout(ring_size);
    session->ring_slot_size_ = layout.outgoing_slot;
    session->slot_busy_.assign(layout.outgoing_slots, false);
  }
  return session;
}

DaemonSession::~DaemonSession() {
  if (fd_ >= 0) ::close(fd_);
  if (ring_ != nullptr) ::munmap(ring_, ring_size_);
}

VkResult DaemonSession::call(uint32_t command, std::span<const uint8_t> arguments, std::vector<uint8_t>& outputs,
                             std::string& problem) {
  WireWriter payload;
  payload.put(command).bytes(arguments.data(), arguments.size());
  return request(payload.buffer(), outputs, problem);
}

VkResult DaemonSession::lose(const std::string& why, std::string& problem) {
  if (!lost_) lost_reason_ = why;
  lost_ = true;
  problem = lost_reason_;
  answered_.notify_all();
  return VK_ERROR_DEVICE_LOST;
}

bool DaemonSession::send(std::span<const uint8_t> payload, uint64_t id, uint16_t flags, std::string& problem,
                         uint16_t type) {
  if (lost_) {
    problem = "the connection to the GPU server is lost";
    return false;
  }
  const auto frame = encode_frame(type, id, payload, flags, Compression::Never);
  iovec part{const_cast<uint8_t*>(frame.data()), frame.size()};
  if (!write_all(fd_, {&part, 1})) {
    lose("write to the RGPU client daemon failed", problem);
    return false;
  }
  return true;
}

bool DaemonSession::post(std::span<const uint8_t> head, std::span<const uint8_t> data, std::string& problem) {
  std::lock_guard lock(mutex_);
  if (lost_) {
    problem = "the connection to the GPU server is lost";
    return false;
  }
  // Through a free ring slot when there is one (the daemon sends the bytes from there); never
  // waiting for one, as the caller may hold the lock that answers need.
  const size_t slot = ring_ != nullptr && data.size() <= ring_slot_size_
                          ? static_cast<size_t>(std::find(slot_busy_.begin(), slot_busy_.end(), false) - slot_busy_.begin())
                          : slot_busy_.size();
  if (slot < slot_busy_.size()) {
    slot_busy_[slot] = true;
    std::memcpy(ring_ + slot * ring_slot_size_, data.data(), data.size());
    const RingSpec spec{slot * ring_slot_size_, data.size(), 0, 0};
    std::vector<uint8_t> payload(sizeof spec + head.size());
    std::memcpy(payload.data(), &spec, sizeof spec);
    std::memcpy(payload.data() + sizeof spec, head.data(), head.size());
    return send(payload, next_request_++, static_cast<uint16_t>(kFrameNoReply | kFrameRing), problem);
  }
  FrameHeader header;
  header.type = vk::kMsgVulkanCall;
  header.flags = kFrameNoReply;
  header.payload_len = static_cast<uint32_t>(head.size() + data.size());
  header.request_id = next_request_++;
  iovec parts[3] = {{&header, sizeof header},
                    {const_cast<uint8_t*>(head.data()), head.size()},
                    {const_cast<uint8_t*>(data.data()), data.size()}};
  if (!write_all(fd_, parts)) {
    lose("write to the RGPU client daemon failed", problem);
    return false;
  }
  return true;
}

void DaemonSession::take_turn(std::unique_lock<std::recursive_mutex>& lock, std::string& problem,
                              std::chrono::steady_clock::time_point deadline) {
  const bool forever = deadline == std::chrono::steady_clock::time_point::max();
  if (reading_) {
    if (forever) answered_.wait(lock);
    else answered_.wait_until(lock, deadline);
    return;
  }
  // This thread reads for everyone; the lock is free meanwhile, so that other threads can send.
  // It stops at its deadline, and another waiting thread takes over.
  reading_ = true;
  Frame frame;
  lock.unlock();
  const ReadResult read = read_frame_until(fd_, decoder_, frame, nullptr, deadline, kAnswerSpin);
  lock.lock();
  reading_ = false;
  if (read == ReadResult::Closed) lose("the RGPU client daemon closed the connection", problem);
  else if (read == ReadResult::Frame) dispatch(frame);
  answered_.notify_all();
}

bool DaemonSession::post(std::span<const uint8_t> payload, std::string& problem) {
  std::lock_guard lock(mutex_);
  return send(payload, next_request_++, kFrameNoReply, problem);
}

VkResult DaemonSession::request(std::span<const uint8_t> payload, std::vector<uint8_t>& outputs,
                                std::string& problem, std::optional<uint64_t> wait_limit) {
  using Clock = std::chrono::steady_clock;
  // Limits beyond a year are waits without end (UINT64_MAX is the usual one).
  constexpr uint64_t kEndless = 365ull * 24 * 3600 * 1000000000ull;
  const Clock::time_point deadline = wait_limit && *wait_limit < kEndless
                                         ? Clock::now() + std::chrono::nanoseconds(*wait_limit) + kAnswerGrace
                                         : Clock::time_point::max();
  std::unique_lock lock(mutex_);
  const uint64_t id = next_request_++;
  if (!send(payload, id, 0, problem)) return VK_ERROR_DEVICE_LOST;
  Answer answer;
  waiting_[id] = &answer;
  while (!answer.done && !lost_ && Clock::now() < deadline) take_turn(lock, problem, deadline);
  waiting_.erase(id);
  if (!answer.done && !lost_) {
    problem = "no answer from the GPU server within the wait's timeout and " + std::to_string(kAnswerGrace.count()) +
              " s more";
    return VK_TIMEOUT;
  }
  if (!answer.done) {
    problem = lost_reason_;
    return VK_ERROR_DEVICE_LOST;
  }
  outputs = std::move(answer.outputs);
  problem = std::move(answer.problem);
  return answer.result;
}

void DaemonSession::take_memory(std::span<const uint8_t> payload) {
  WireReader reader(payload, "VulkanMemory");
  const auto memory = reader.get<uint64_t>();
  const auto offset = reader.get<uint64_t>();
  if (memory_sink_) memory_sink_(memory, offset, reader.rest());
}

void DaemonSession::dispatch(Frame& frame) {
  std::string ignored;
  try {
    const auto type = frame.header.type;
    const uint64_t id = frame.header.request_id;
    if (type == static_cast<uint16_t>(AppMsg::ServerGone)) {
      lose("the connection to the GPU server is lost: " + decode_error(frame.payload).message, ignored);
      return;
    }
    if (type == static_cast<uint16_t>(AppMsg::RingRelease)) {
      const RingReleaseMsg release = decode_ring_release(frame.payload);
      const size_t slot = ring_slot_size_ != 0 ? release.offset / ring_slot_size_ : slot_busy_.size();
      if (slot < slot_busy_.size()) slot_busy_[slot] = false;
      return;
    }
    if (type == vk::kMsgVulkanMemory) {
      if (!(frame.header.flags & kFrameRing)) return take_memory(frame.payload);
      // The frame itself waits in a slot of the ring's upper half; this one says where.
      RingSpec spec;
      if (frame.payload.size() != sizeof spec) throw WireError("VulkanMemory in the ring without its RingSpec");
      std::memcpy(&spec, frame.payload.data(), sizeof spec);
      const uint64_t base = vk::vulkan_ring_layout(ring_size_).incoming_base;
      if (ring_ == nullptr || spec.out_offset < base || spec.out_offset > ring_size_ ||
          spec.out_capacity > ring_size_ - spec.out_offset)
        throw WireError("VulkanMemory at a ring range outside the ring's upper half");
      take_memory({ring_ + spec.out_offset, spec.out_capacity});
      send(encode(RingReleaseMsg{spec.out_offset, spec.out_capacity}), 0, 0, ignored,
           static_cast<uint16_t>(AppMsg::RingRelease));
      return;
    }
    if (type == static_cast<uint16_t>(MsgType::Error) && id == 0) {
      lose(decode_error(frame.payload).message, ignored);
      return;
    }
    auto it = waiting_.find(id);
    if (it == waiting_.end()) return;  // an answer nobody waits for any more
    Answer& answer = *it->second;
    answer.done = true;
    if (type == static_cast<uint16_t>(MsgType::Error)) {
      answer.result = VK_ERROR_INITIALIZATION_FAILED;
      answer.problem = "the server refused: " + decode_error(frame.payload).message;
      return;
    }
    if (type != vk::kMsgVulkanReply) {
      answer.result = VK_ERROR_DEVICE_LOST;
      answer.problem = std::string("unexpected answer from the RGPU client daemon: ") + msg_type_name(type);
      return;
    }
    WireReader reader(frame.payload, "VulkanReply");
    const auto header = reader.get<vk::ReplyHeader>();
    const auto rest = reader.rest();
    answer.result = static_cast<VkResult>(header.result);
    if (header.result < 0) answer.problem.assign(rest.begin(), rest.end());
    else answer.outputs.assign(rest.begin(), rest.end());
  } catch (const WireError& e) {
    lose(std::string("malformed answer from the RGPU client daemon: ") + e.what(), ignored);
  }
}

}  // namespace rgpu::icd
