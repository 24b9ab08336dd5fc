// The ICD's connection to the client daemon: one per VkInstance, opened with an AppHello that
// asks for a Vulkan session; the server's session lives as long as this connection.
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "app_protocol.hpp"
#include "frame.hpp"

namespace rgpu::icd {

class DaemonSession {
 public:
  // Connects and says hello; nullptr with `problem` saying why (daemon unreachable, refused, ...).
  static std::unique_ptr<DaemonSession> open(std::string& problem);
  ~DaemonSession();
  DaemonSession(const DaemonSession&) = delete;
  DaemonSession& operator=(const DaemonSession&) = delete;

  const AppWelcomeMsg& welcome() const { return welcome_; }

  // One VulkanCall and its answer: the reply's VkResult, with its outputs in `outputs`. Failures
  // of the link or refusals by the server return VK_ERROR_INITIALIZATION_FAILED (or
  // VK_ERROR_DEVICE_LOST once the server is gone) with `problem` set.
  VkResult call(uint32_t command, std::span<const uint8_t> arguments, std::vector<uint8_t>& outputs,
                std::string& problem);

 private:
  DaemonSession() = default;

  int fd_ = -1;
  FrameDecoder decoder_{kMaxFramePayload, 0};
  AppWelcomeMsg welcome_;
  std::mutex mutex_;  // one call at a time on the connection
  uint64_t next_request_ = 1;
  bool lost_ = false;
};

}  // namespace rgpu::icd
