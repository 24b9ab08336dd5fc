#include "daemon_session.hpp"

#include <unistd.h>

#include <chrono>

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
  session->fd_ = connect_unix(path, error);
  if (session->fd_ < 0) {
    problem = "cannot reach the RGPU client daemon at " + path + ": " + error +
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
  // Nothing travels through the ring yet: device descriptions are small enough to come inline.
  ::close(ring_fd);
  return session;
}

DaemonSession::~DaemonSession() {
  if (fd_ >= 0) ::close(fd_);
}

VkResult DaemonSession::call(uint32_t command, std::span<const uint8_t> arguments, std::vector<uint8_t>& outputs,
                             std::string& problem) {
  WireWriter payload;
  payload.put(command).bytes(arguments.data(), arguments.size());
  return request(payload.buffer(), outputs, problem);
}

VkResult DaemonSession::lose(const std::string& why, std::string& problem) {
  lost_ = true;
  problem = why;
  return VK_ERROR_DEVICE_LOST;
}

bool DaemonSession::send(std::span<const uint8_t> payload, uint64_t id, uint16_t flags, std::string& problem) {
  if (lost_) {
    problem = "the connection to the GPU server is lost";
    return false;
  }
  const auto frame = encode_frame(vk::kMsgVulkanCall, id, payload, flags, Compression::Never);
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

bool DaemonSession::post(std::span<const uint8_t> payload, std::string& problem) {
  std::lock_guard lock(mutex_);
  return send(payload, next_request_++, kFrameNoReply, problem);
}

VkResult DaemonSession::request(std::span<const uint8_t> payload, std::vector<uint8_t>& outputs,
                                std::string& problem) {
  std::lock_guard lock(mutex_);
  const uint64_t id = next_request_++;
  if (!send(payload, id, 0, problem)) return VK_ERROR_DEVICE_LOST;
  for (;;) {
    Frame answer;
    if (!read_frame(fd_, decoder_, answer, nullptr, kAnswerSpin)) return lose("the RGPU client daemon closed the connection", problem);
    try {
      const auto type = answer.header.type;
      if (type == static_cast<uint16_t>(AppMsg::ServerGone))
        return lose("the GPU server is gone: " + decode_error(answer.payload).message, problem);
      if (type == static_cast<uint16_t>(MsgType::Error)) {
        ErrorMsg error = decode_error(answer.payload);
        if (answer.header.request_id == 0) return lose(error.message, problem);
        if (answer.header.request_id != id) continue;
        problem = "the server refused: " + error.message;
        return VK_ERROR_INITIALIZATION_FAILED;
      }
      if (type == vk::kMsgVulkanMemory) {
        WireReader reader(answer.payload, "VulkanMemory");
        const auto memory = reader.get<uint64_t>();
        const auto offset = reader.get<uint64_t>();
        if (memory_sink_) memory_sink_(memory, offset, reader.rest());
        continue;
      }
      if (type != vk::kMsgVulkanReply || answer.header.request_id != id) continue;
      WireReader reader(answer.payload, "VulkanReply");
      const auto header = reader.get<vk::ReplyHeader>();
      const auto rest = reader.rest();
      if (header.result < 0) problem.assign(rest.begin(), rest.end());
      else outputs.assign(rest.begin(), rest.end());
      return static_cast<VkResult>(header.result);
    } catch (const WireError& e) {
      return lose(std::string("malformed answer from the RGPU client daemon: ") + e.what(), problem);
    }
  }
}

}  // namespace rgpu::icd
